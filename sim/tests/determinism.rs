//! Block-size invariance, seed determinism and lead independence.

use ecg_sim::{
    Device, DeviceConfig, LeadOffInterval, LeadOffMode, MainsFrequency, NoiseConfig, Rhythm,
    RhythmPlan,
};
use ecg_types::Lead;

/// A config that exercises every feature: a schedule through all rhythms, all noise
/// sources and lead-off intervals.
fn rich_config(seed: u64, sample_rate: u32, leads: Vec<Lead>) -> DeviceConfig {
    let plan = RhythmPlan::schedule(
        vec![
            (Rhythm::NormalSinus, 2.0),
            (Rhythm::Pvcs, 2.0),
            (Rhythm::AtrialFibrillation, 2.0),
            (Rhythm::Asystole, 1.5),
            (Rhythm::VentricularTachycardia, 1.5),
            (Rhythm::SinusTachycardia, 1.0),
            (Rhythm::VentricularPaced, 1.5),
        ],
        true,
    );
    let first = leads[0];
    DeviceConfig::new(seed, sample_rate, leads, plan)
        .with_noise(NoiseConfig {
            baseline_wander_mv: 0.2,
            muscle_mv: 0.05,
            muscle_bursts: true,
            mains_mv: 0.1,
            mains_hz: MainsFrequency::Hz60,
            electrode_motion_mv: 0.3,
            electrode_motion_per_min: 30.0,
        })
        .with_lead_off(LeadOffInterval::new(first, 1.0, 0.5).every(3.0))
        .with_lead_off(LeadOffInterval::all_leads(6.2, 0.3).with_mode(LeadOffMode::Saturated))
}

fn generate_in_blocks(cfg: &DeviceConfig, total: usize, block: usize) -> (Vec<Vec<f32>>, Device) {
    let mut dev = Device::new(cfg.clone()).expect("valid config");
    let n_leads = cfg.leads.len();
    let mut per_lead = vec![Vec::with_capacity(total); n_leads];
    let mut buf = Vec::new();
    let mut done = 0;
    while done < total {
        let n = block.min(total - done);
        buf.clear();
        dev.generate(n, &mut buf);
        assert_eq!(buf.len(), n * n_leads);
        for (l, lead) in per_lead.iter_mut().enumerate() {
            lead.extend_from_slice(&buf[l * n..(l + 1) * n]);
        }
        done += n;
    }
    assert_eq!(dev.position(), total as u64);
    (per_lead, dev)
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|l| l.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn block_size_does_not_change_samples_or_truth() {
    let fs = 250;
    let cfg = rich_config(42, fs, Lead::STANDARD_12.to_vec());
    let total = 11 * fs as usize; // covers every segment of the schedule
    let (one, d1) = generate_in_blocks(&cfg, total, 1);
    let (odd, d37) = generate_in_blocks(&cfg, total, 37);
    let (sec, dsec) = generate_in_blocks(&cfg, total, fs as usize);
    assert_eq!(bits(&one), bits(&odd));
    assert_eq!(bits(&one), bits(&sec));
    assert_eq!(d1.truth(), d37.truth());
    assert_eq!(d1.truth(), dsec.truth());
    // The truth is not trivially empty.
    assert!(d1.truth().beats.len() > 10);
    assert!(d1.truth().episodes.len() >= 6);
    assert!(!d1.truth().lead_off.is_empty());
    assert!(one.iter().flatten().all(|x| x.is_finite()));
}

#[test]
fn same_seed_same_output_different_seed_different_output() {
    let cfg = rich_config(7, 500, vec![Lead::II, Lead::V1]);
    let (a, da) = generate_in_blocks(&cfg, 4000, 500);
    let (b, db) = generate_in_blocks(&cfg, 4000, 500);
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(da.truth(), db.truth());

    let mut other = cfg.clone();
    other.seed = 8;
    let (c, dc) = generate_in_blocks(&other, 4000, 500);
    let differing = a[0].iter().zip(&c[0]).filter(|(x, y)| x != y).count();
    assert!(differing > 3000, "only {differing} samples differ");
    let beats_a: Vec<u64> = da.truth().beats.iter().map(|b| b.sample).collect();
    let beats_c: Vec<u64> = dc.truth().beats.iter().map(|b| b.sample).collect();
    assert_ne!(beats_a, beats_c);
}

#[test]
fn clean_seeds_differ_in_beat_timing() {
    let cfg = |seed| {
        DeviceConfig::new(
            seed,
            250,
            vec![Lead::II],
            RhythmPlan::constant(Rhythm::NormalSinus),
        )
    };
    let (_, a) = generate_in_blocks(&cfg(1), 2500, 250);
    let (_, b) = generate_in_blocks(&cfg(2), 2500, 250);
    assert_ne!(a.truth().beats, b.truth().beats);
}

#[test]
fn a_lead_does_not_depend_on_the_other_leads() {
    let fs = 360;
    let full = rich_config(3, fs, vec![Lead::II, Lead::I, Lead::V1, Lead::AVF]);
    let mut only_ii = full.clone();
    only_ii.leads = vec![Lead::II];
    only_ii.lead_off.clear();
    let mut full_no_off = full.clone();
    full_no_off.lead_off.clear();
    let (a, da) = generate_in_blocks(&full_no_off, 3000, 100);
    let (b, db) = generate_in_blocks(&only_ii, 3000, 100);
    assert_eq!(bits(&a[..1]), bits(&b));
    assert_eq!(da.truth().beats, db.truth().beats);
}

#[test]
fn enabling_noise_does_not_move_beats() {
    let clean = DeviceConfig::new(11, 250, vec![Lead::II], RhythmPlan::constant(Rhythm::Pvcs));
    let noisy = rich_config(11, 250, vec![Lead::II]);
    let mut noisy = noisy;
    noisy.plan = RhythmPlan::constant(Rhythm::Pvcs);
    let (_, a) = generate_in_blocks(&clean, 5000, 250);
    let (_, b) = generate_in_blocks(&noisy, 5000, 250);
    assert_eq!(a.truth().beats, b.truth().beats);
}

//! Ground truth: rates, variability, asystole, PVCs and fiducial placement.

use ecg_sim::{BeatKind, Device, DeviceConfig, GroundTruth, Preset, Rhythm, RhythmPlan};
use ecg_types::Lead;

const SEEDS: [u64; 4] = [1, 2, 3, 0xDEAD_BEEF];

fn run(cfg: DeviceConfig, seconds: f64) -> (Vec<f32>, Device) {
    let mut dev = Device::new(cfg).expect("valid config");
    let n = (seconds * f64::from(dev.sample_rate())) as usize;
    let mut out = Vec::new();
    dev.generate(n, &mut out);
    (out, dev)
}

fn rr_stats(truth: &GroundTruth, end: u64) -> (f64, f64) {
    let rr = truth.rr_intervals_s(0, end);
    assert!(rr.len() > 10, "too few beats: {}", rr.len());
    let mean = rr.iter().sum::<f64>() / rr.len() as f64;
    let var = rr.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rr.len() - 1) as f64;
    (60.0 / mean, var.sqrt() / mean)
}

fn check_rate(preset: Preset, lo: f64, hi: f64, kind: BeatKind) -> Vec<f64> {
    let mut cvs = Vec::new();
    for seed in SEEDS {
        let (_, dev) = run(preset.config(seed, 250, vec![Lead::II]), 60.0);
        let t = dev.truth();
        let (hr, cv) = rr_stats(t, dev.position());
        assert!(
            (lo..=hi).contains(&hr),
            "{preset} seed {seed}: mean HR {hr:.1} not in {lo}..={hi}"
        );
        let expected_beats = hr / 60.0 * 60.0;
        let n = t.beats.len() as f64;
        assert!(
            (n - expected_beats).abs() <= 2.0,
            "{preset}: {n} beats for {hr:.1} bpm"
        );
        assert!(
            t.beats.iter().all(|b| b.kind == kind),
            "{preset}: unexpected beat kind"
        );
        cvs.push(cv);
    }
    cvs
}

#[test]
fn sinus_rates_and_low_variability() {
    for (preset, lo, hi) in [
        (Preset::NormalSinus, 60.0, 90.0),
        (Preset::Bradycardia, 44.0, 50.0),
        (Preset::Tachycardia, 117.0, 129.0),
    ] {
        for cv in check_rate(preset, lo, hi, BeatKind::Normal) {
            assert!(cv < 0.08, "{preset}: sinus RR CV {cv:.3} not below 0.08");
            assert!(
                cv > 0.005,
                "{preset}: no heart-rate variability at all ({cv:.4})"
            );
        }
    }
}

#[test]
fn atrial_fibrillation_is_irregularly_irregular() {
    for cv in check_rate(
        Preset::AtrialFibrillation,
        80.0,
        130.0,
        BeatKind::AfConducted,
    ) {
        assert!(cv >= 0.15, "AF RR CV {cv:.3} below 0.15");
    }
    // Successive RR differences are large too (not just a slow rate drift).
    let (_, dev) = run(
        Preset::AtrialFibrillation.config(9, 250, vec![Lead::II]),
        60.0,
    );
    let rr = dev.truth().rr_intervals_s(0, dev.position());
    let mean = rr.iter().sum::<f64>() / rr.len() as f64;
    let rmssd =
        (rr.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>() / (rr.len() - 1) as f64).sqrt();
    assert!(
        rmssd / mean > 0.15,
        "AF normalised RMSSD {:.3}",
        rmssd / mean
    );
}

#[test]
fn ventricular_tachycardia_is_fast_and_wide() {
    check_rate(
        Preset::VentricularTachycardia,
        150.0,
        200.0,
        BeatKind::Ventricular,
    );
}

#[test]
fn pvcs_are_frequent_premature_and_followed_by_a_compensatory_pause() {
    for seed in SEEDS {
        let (_, dev) = run(Preset::Pvcs.config(seed, 250, vec![Lead::II]), 90.0);
        let t = dev.truth();
        let fs = 250.0;
        let beats = &t.beats;
        let pvcs = beats.iter().filter(|b| b.kind == BeatKind::Pvc).count();
        let frac = pvcs as f64 / beats.len() as f64;
        assert!(
            (0.07..=0.25).contains(&frac),
            "seed {seed}: PVC fraction {frac:.3}"
        );
        assert!(beats
            .iter()
            .all(|b| matches!(b.kind, BeatKind::Normal | BeatKind::Pvc)));
        let (hr, _) = rr_stats(t, dev.position());
        assert!((60.0..=90.0).contains(&hr), "seed {seed}: mean HR {hr:.1}");

        // Median normal-to-normal RR.
        let mut nn: Vec<f64> = beats
            .windows(2)
            .filter(|w| w[0].kind == BeatKind::Normal && w[1].kind == BeatKind::Normal)
            .map(|w| (w[1].sample - w[0].sample) as f64 / fs)
            .collect();
        nn.sort_by(f64::total_cmp);
        let median = nn[nn.len() / 2];
        for w in beats.windows(3) {
            if w[1].kind != BeatKind::Pvc {
                continue;
            }
            assert_eq!(w[0].kind, BeatKind::Normal, "PVCs are isolated");
            let coupling = (w[1].sample - w[0].sample) as f64 / fs;
            let pause = (w[2].sample - w[1].sample) as f64 / fs;
            assert!(
                coupling < 0.75 * median,
                "coupling {coupling:.3} vs RR {median:.3}"
            );
            assert!(pause > coupling * 1.2, "no pause after PVC");
            let total = coupling + pause;
            assert!(
                (total / (2.0 * median) - 1.0).abs() < 0.15,
                "not compensatory: {total:.3} vs 2 × {median:.3}"
            );
        }
    }
}

#[test]
fn asystole_episodes_are_flat_long_and_recurring() {
    let fs = 250u32;
    for seed in SEEDS {
        let (x, dev) = run(Preset::Asystole.config(seed, fs, vec![Lead::II]), 90.0);
        let t = dev.truth();
        let episodes: Vec<_> = t.episodes_of(Rhythm::Asystole).copied().collect();
        assert!(
            episodes.len() >= 3,
            "seed {seed}: {} asystole episodes",
            episodes.len()
        );
        assert!(
            episodes[0].start <= 20 * u64::from(fs),
            "first asystole too late"
        );
        for w in episodes.windows(2) {
            let period = (w[1].start - w[0].start) as f64 / f64::from(fs);
            assert!((25.0..=30.0).contains(&period), "recurs every {period} s");
        }
        for e in &episodes {
            let secs = (e.end - e.start) as f64 / f64::from(fs);
            assert!(secs >= 6.0, "asystole of only {secs} s");
            assert!(
                t.beats_in(e.start, e.end).is_empty(),
                "beat during asystole"
            );
            // The gap between the beats around it covers the whole episode.
            let before = t.beats_in(0, e.start).last().unwrap().sample;
            let after = t.beats_in(e.end, u64::MAX).first().unwrap().sample;
            assert!((after - before) as f64 / f64::from(fs) >= 6.0);
            // Flat once the last T wave is over, up to the end of the episode.
            let from = (before + u64::from(fs)).max(e.start) as usize;
            let flat = x[from..e.end as usize]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(flat < 1e-3, "signal {flat} mV during asystole");
        }
        // Sinus between episodes, and the episodes tile the stream.
        assert_eq!(t.episodes[0].start, 0);
        assert_eq!(t.episodes.last().unwrap().end, dev.position());
        for w in t.episodes.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert_ne!(w[0].rhythm, w[1].rhythm);
        }
        assert!(t
            .episodes
            .iter()
            .all(|e| matches!(e.rhythm, Rhythm::Asystole | Rhythm::NormalSinus)));
    }
}

#[test]
fn constant_asystole_never_beats() {
    let cfg = DeviceConfig::new(
        1,
        250,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::Asystole),
    );
    let (x, dev) = run(cfg, 20.0);
    assert!(dev.truth().beats.is_empty());
    assert!(x.iter().all(|v| *v == 0.0));
    assert_eq!(dev.truth().episodes.len(), 1);
}

#[test]
fn non_repeating_schedule_keeps_its_last_rhythm() {
    let plan = RhythmPlan::schedule(
        vec![
            (Rhythm::NormalSinus, 5.0),
            (Rhythm::AtrialFibrillation, 5.0),
        ],
        false,
    );
    let (_, dev) = run(DeviceConfig::new(4, 200, vec![Lead::I], plan), 30.0);
    let t = dev.truth();
    assert_eq!(t.episodes.len(), 2);
    assert_eq!(t.episodes[1].rhythm, Rhythm::AtrialFibrillation);
    assert_eq!((t.episodes[1].start, t.episodes[1].end), (1000, 6000));
    assert_eq!(t.rhythm_at(5999), Some(Rhythm::AtrialFibrillation));
    assert_eq!(t.rhythm_at(10), Some(Rhythm::NormalSinus));
    assert_eq!(t.rhythm_at(6000), None);
    for b in &t.beats {
        let expect = if b.sample < 1000 {
            BeatKind::Normal
        } else {
            BeatKind::AfConducted
        };
        assert_eq!(b.kind, expect, "beat at {}", b.sample);
    }
}

/// The truth fiducial sits on the largest deflection of lead II.
#[test]
fn truth_beats_land_on_the_r_peak_of_lead_ii() {
    for preset in [
        Preset::NormalSinus,
        Preset::Bradycardia,
        Preset::Tachycardia,
        Preset::AtrialFibrillation,
        Preset::Pvcs,
        Preset::VentricularTachycardia,
    ] {
        for fs in [250u32, 500] {
            let (x, dev) = run(preset.config(21, fs, vec![Lead::V1, Lead::II]), 20.0);
            let n = dev.position() as usize;
            let ii = &x[n..2 * n];
            let half = (0.1 * f64::from(fs)) as usize; // search ±100 ms
            let tol = (0.02 * f64::from(fs)) as usize; // accept ±20 ms
            let mut checked = 0;
            for b in &dev.truth().beats {
                let s = b.sample as usize;
                if s < half || s + half >= n {
                    continue;
                }
                let (argmax, _) =
                    ii[s - half..=s + half]
                        .iter()
                        .enumerate()
                        .fold((0, 0.0f32), |best, (i, v)| {
                            if v.abs() > best.1 {
                                (i, v.abs())
                            } else {
                                best
                            }
                        });
                let off = (argmax as i64 - half as i64).unsigned_abs() as usize;
                assert!(
                    off <= tol,
                    "{preset} @ {fs} Hz: |II| peaks {off} samples from beat at {s} ({:?})",
                    b.kind
                );
                assert!(
                    ii[s].abs() > 0.5,
                    "{preset}: only {} mV at the fiducial",
                    ii[s]
                );
                checked += 1;
            }
            assert!(checked > 10);
        }
    }
}

#[test]
fn r_amplitude_in_lead_ii_is_about_one_millivolt() {
    for seed in SEEDS {
        let (x, dev) = run(Preset::NormalSinus.config(seed, 500, vec![Lead::II]), 10.0);
        for b in &dev.truth().beats {
            let v = x[b.sample as usize];
            assert!((0.9..=1.6).contains(&v), "R of {v} mV");
        }
    }
}

#[test]
fn derived_limb_leads_obey_einthoven_and_goldberger() {
    let mut cfg = Preset::NoisyNormalSinus.config(5, 500, Lead::STANDARD_12.to_vec());
    cfg.plan = RhythmPlan::constant(Rhythm::AtrialFibrillation);
    let (x, dev) = run(cfg, 5.0);
    let n = dev.position() as usize;
    let lead = |i: usize| &x[i * n..(i + 1) * n];
    let (i, ii, iii, avr, avl, avf) = (lead(0), lead(1), lead(2), lead(3), lead(4), lead(5));
    for k in 0..n {
        assert!((iii[k] - (ii[k] - i[k])).abs() < 1e-5);
        assert!((avr[k] + (i[k] + ii[k]) / 2.0).abs() < 1e-5);
        assert!((avl[k] - (i[k] - ii[k] / 2.0)).abs() < 1e-5);
        assert!((avf[k] - (ii[k] - i[k] / 2.0)).abs() < 1e-5);
    }
}

#[test]
fn forgetting_truth_keeps_the_current_episode() {
    let (_, mut dev) = run(Preset::Asystole.config(1, 250, vec![Lead::II]), 40.0);
    let pos = dev.position();
    dev.forget_truth_before(u64::MAX);
    let t = dev.truth();
    assert!(t.beats.is_empty());
    assert_eq!(t.episodes.len(), 1);
    assert_eq!(t.episodes[0].end, pos);
    let mut out = Vec::new();
    dev.generate(250, &mut out);
    assert_eq!(dev.truth().episodes.last().unwrap().end, pos + 250);
}

#[test]
fn ventricular_pacing_is_metronomic_with_a_flagged_spike_before_every_beat() {
    let cvs = check_rate(Preset::VentricularPaced, 99.0, 121.0, BeatKind::Paced);
    assert!(cvs.iter().all(|&cv| cv < 0.01), "paced RR CV {cvs:?}");
    for seed in SEEDS {
        let leads = vec![Lead::I, Lead::II, Lead::V1];
        let dev = Device::new(Preset::VentricularPaced.config(seed, 250, leads)).unwrap();
        let mut src = ecg_sim::FrameSource::new(
            dev,
            ecg_types::StreamId::new("paced").unwrap(),
            ecg_types::DeviceId::new("dev").unwrap(),
            ecg_types::PatientId::new("p").unwrap(),
            0,
            250,
            1000,
        );
        let frames: Vec<_> = (0..30).map(|_| src.next_frame()).collect();
        let t = src.device().truth();
        // One pulse 60 ms (15 samples) before every beat's QRS peak.
        assert_eq!(t.pace.len(), t.beats.len(), "seed {seed}");
        for (p, b) in t.pace.iter().zip(&t.beats) {
            assert_eq!(b.sample - p, 15, "seed {seed}");
        }
        // The frames flag exactly those samples, and each shows the spike on every
        // lead: a rise of at least 1.5 mV from the sample before.
        let flagged: Vec<u64> = frames
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.pace.iter().map(move |&k| i as u64 * 250 + u64::from(k)))
            .collect();
        assert_eq!(flagged, t.pace, "seed {seed}");
        for &p in &t.pace {
            let (i, k) = ((p / 250) as usize, (p % 250) as usize);
            if k == 0 {
                continue;
            }
            for l in 0..3 {
                let s = &frames[i].samples[l * 250..(l + 1) * 250];
                assert!(s[k] - s[k - 1] >= 1500, "seed {seed} lead {l} at {p}");
            }
        }
    }
    // No other preset paces.
    for &p in Preset::all() {
        if p != Preset::VentricularPaced {
            let (_, dev) = run(p.config(1, 250, vec![Lead::II]), 20.0);
            assert!(dev.truth().pace.is_empty(), "{p}");
        }
    }
}

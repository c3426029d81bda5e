//! `FrameSource`: framing, timing, scaling and lead-off flags.

use ecg_sim::{
    Device, DeviceConfig, FrameSource, LeadOffEpisode, LeadOffInterval, LeadOffMode, Preset,
    Rhythm, RhythmPlan,
};
use ecg_types::{DeviceId, Lead, PatientId, SampleRate, StreamId};

fn source(cfg: DeviceConfig, t0_us: i64, frame_samples: usize, scale_nv: u32) -> FrameSource {
    FrameSource::new(
        Device::new(cfg).expect("valid config"),
        StreamId::new("bed-1.ecg").expect("valid id"),
        DeviceId::new("sim-0001").expect("valid id"),
        PatientId::new("p-1").expect("valid id"),
        t0_us,
        frame_samples,
        scale_nv,
    )
}

#[test]
fn frames_match_the_device_samples_and_advance_time() {
    let cfg = Preset::NoisyNormalSinus.config(2, 250, vec![Lead::I, Lead::II, Lead::V2]);
    let t0 = 1_700_000_000_000_000;
    let mut src = source(cfg.clone(), t0, 50, 1000);
    let mut reference = Device::new(cfg).unwrap();
    for seq in 0..20u64 {
        let f = src.next_frame();
        assert_eq!(f.seq, seq);
        assert_eq!(f.t0.0, t0 + seq as i64 * 200_000);
        assert_eq!(f.sample_rate.0, 250);
        assert_eq!(f.scale.0, 1000);
        assert_eq!(f.leads, vec![Lead::I, Lead::II, Lead::V2]);
        assert_eq!(f.lead_off, vec![false; 3]);
        assert_eq!(f.samples_per_lead(), 50);
        assert_eq!(f.stream.as_str(), "bed-1.ecg");
        assert_eq!(f.device.as_str(), "sim-0001");
        assert_eq!(f.patient.as_str(), "p-1");
        let mut mv = Vec::new();
        reference.generate(50, &mut mv);
        for (count, v) in f.samples.iter().zip(&mv) {
            assert_eq!(*count, (f64::from(*v) * 1000.0).round() as i32);
            assert!((f.scale.to_mv(*count) - v).abs() <= 0.0005 + 1e-6);
        }
        assert_eq!(f.end().0, t0 + (seq as i64 + 1) * 200_000);
    }
    assert_eq!(src.device().position(), 1000);
    assert_eq!(src.next_seq(), 20);
}

#[test]
fn frame_time_does_not_drift_at_awkward_rates() {
    // 360 Hz, 7-sample frames: 7/360 s is not a whole number of µs.
    let cfg = DeviceConfig::new(
        1,
        360,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::NormalSinus),
    );
    let t0 = 1_000_000;
    let mut src = source(cfg, t0, 7, 1000);
    let mut prev_end: Option<i64> = None;
    for k in 0..=360i64 {
        let f = src.next_frame();
        // Each frame's t0 is computed from the sample count, not accumulated, on the
        // one time grid (rounded to the nearest µs: `SampleRate::samples_to_us`).
        assert_eq!(f.t0.0, t0 + (k * 7 * 1_000_000 + 180) / 360);
        assert_eq!(f.t0.0, t0 + SampleRate(360).samples_to_us(k as u64 * 7));
        if let Some(e) = prev_end {
            assert!((f.t0.0 - e).abs() <= 1, "gap between frames");
        }
        prev_end = Some(f.end().0);
    }
    // Frame 360 starts 360 × 7 samples = 7 s exactly after the first.
    assert_eq!(src.next_seq(), 361);
}

#[test]
fn lead_off_sets_flags_and_flattens_the_lead() {
    let cfg = DeviceConfig::new(
        3,
        250,
        vec![Lead::I, Lead::II],
        RhythmPlan::constant(Rhythm::NormalSinus),
    )
    .with_lead_off(LeadOffInterval::new(Lead::II, 2.0, 1.0));
    let mut src = source(cfg, 0, 50, 1000);
    let mut flagged = Vec::new();
    let mut on_nonzero = 0;
    for i in 0..30 {
        let f = src.next_frame();
        assert!(!f.lead_off[0], "lead I never goes off");
        if f.lead_off[1] {
            flagged.push(i);
            assert!(f.lead_samples(1).iter().all(|&c| c == 0), "flat while off");
        } else {
            on_nonzero += f.lead_samples(1).iter().filter(|&&c| c != 0).count();
        }
    }
    assert!(on_nonzero > 500, "lead II carries signal while on");
    // Samples 500..750 are frames 10..15.
    assert_eq!(flagged, (10..15).collect::<Vec<_>>());
    assert_eq!(
        src.device().truth().lead_off,
        vec![LeadOffEpisode {
            lead: Lead::II,
            start: 500,
            end: 750
        }]
    );
}

#[test]
fn partial_overlap_flags_the_frame() {
    let cfg = DeviceConfig::new(
        3,
        200,
        vec![Lead::V1],
        RhythmPlan::constant(Rhythm::NormalSinus),
    )
    .with_lead_off(LeadOffInterval::new(Lead::V1, 0.52, 0.01).with_mode(LeadOffMode::Saturated));
    let mut src = source(cfg, 0, 100, 1000);
    let flags: Vec<bool> = (0..3).map(|_| src.next_frame().lead_off[0]).collect();
    assert_eq!(flags, vec![false, true, false]);
}

#[test]
fn saturated_lead_reads_the_rail_and_counts_clamp_to_i32() {
    let mut cfg = DeviceConfig::new(
        3,
        250,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::NormalSinus),
    )
    .with_lead_off(LeadOffInterval::new(Lead::II, 0.0, 1.0).with_mode(LeadOffMode::Saturated));
    let mut src = source(cfg.clone(), 0, 250, 1000);
    let f = src.next_frame();
    assert!(f.lead_off[0]);
    assert!(
        f.samples.iter().all(|&c| c == 5000),
        "5 mV rail at 1 µV/count"
    );

    cfg.rail_mv = 1.0e4; // 10 V at 1 nV/count overflows i32
    let mut src = source(cfg, 0, 250, 1);
    assert!(src.next_frame().samples.iter().all(|&c| c == i32::MAX));
}

#[test]
fn lead_off_preset_recurs_on_every_lead() {
    let leads = vec![Lead::II, Lead::V5];
    let mut src = source(
        Preset::LeadOffNormalSinus.config(1, 125, leads),
        0,
        125,
        1000,
    );
    let frames: Vec<_> = (0..60).map(|_| src.next_frame()).collect();
    for (sec, f) in frames.iter().enumerate() {
        let off = (10..18).contains(&sec) || (50..58).contains(&sec);
        assert_eq!(f.lead_off, vec![off, off], "second {sec}");
    }
    let t = src.device().truth();
    assert_eq!(t.lead_off.len(), 4);
    for e in &t.lead_off {
        assert!(matches!((e.start, e.end), (1250, 2250) | (6250, 7250)));
    }
    assert!(t.lead_off_at(Lead::V5, 1300));
    assert!(!t.lead_off_at(Lead::V5, 3000));
    // The heart keeps beating while the leads are off.
    assert!(!t.beats_in(1250, 2250).is_empty());
}

#[test]
fn zero_frame_size_and_scale_are_treated_as_one() {
    let cfg = DeviceConfig::new(
        3,
        250,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::NormalSinus),
    );
    let mut src = source(cfg, 0, 0, 0);
    let f = src.next_frame();
    assert_eq!(f.samples.len(), 1);
    assert_eq!(f.scale.0, 1);
}

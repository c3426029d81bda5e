//! Config validation returns typed errors, never panics.

use ecg_sim::{
    Device, DeviceConfig, LeadOffInterval, NoiseConfig, Preset, Rhythm, RhythmPlan, SimError,
};
use ecg_types::Lead;

fn nsr(rate: u32, leads: Vec<Lead>) -> DeviceConfig {
    DeviceConfig::new(1, rate, leads, RhythmPlan::constant(Rhythm::NormalSinus))
}

fn err(cfg: DeviceConfig) -> SimError {
    Device::new(cfg).expect_err("config should be rejected")
}

#[test]
fn bad_rates_and_lead_counts_are_rejected() {
    assert_eq!(err(nsr(10, vec![Lead::II])), SimError::SampleRate(10));
    assert_eq!(err(nsr(124, vec![Lead::II])), SimError::SampleRate(124));
    assert_eq!(err(nsr(1001, vec![Lead::II])), SimError::SampleRate(1001));
    assert_eq!(err(nsr(0, vec![Lead::II])), SimError::SampleRate(0));
    assert!(Device::new(nsr(125, vec![Lead::II])).is_ok());
    assert!(Device::new(nsr(1000, Lead::STANDARD_12.to_vec())).is_ok());
    assert_eq!(err(nsr(250, vec![])), SimError::NoLeads);
    assert_eq!(
        err(nsr(250, Lead::ALL[..13].to_vec())),
        SimError::TooManyLeads(13)
    );
    assert_eq!(
        err(nsr(250, vec![Lead::II, Lead::I, Lead::II])),
        SimError::DuplicateLead(Lead::II)
    );
    // Errors explain themselves.
    assert!(SimError::SampleRate(10).to_string().contains("125"));
}

#[test]
fn bad_schedules_are_rejected() {
    let mut cfg = nsr(250, vec![Lead::II]);
    cfg.plan = RhythmPlan::schedule(vec![], true);
    assert_eq!(err(cfg.clone()), SimError::EmptySchedule);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.001, 1e12] {
        cfg.plan = RhythmPlan::schedule(
            vec![(Rhythm::NormalSinus, 5.0), (Rhythm::Asystole, bad)],
            true,
        );
        assert!(
            matches!(err(cfg.clone()), SimError::SegmentDuration { index: 1, .. }),
            "{bad} s accepted"
        );
    }
}

#[test]
fn bad_noise_is_rejected() {
    type Case = (&'static str, fn(&mut NoiseConfig));
    let cases: [Case; 5] = [
        ("baseline_wander_mv", |n| n.baseline_wander_mv = -0.1),
        ("muscle_mv", |n| n.muscle_mv = f64::NAN),
        ("mains_mv", |n| n.mains_mv = f64::INFINITY),
        ("electrode_motion_mv", |n| n.electrode_motion_mv = 100.0),
        ("electrode_motion_per_min", |n| {
            n.electrode_motion_per_min = -1.0
        }),
    ];
    for (name, set) in cases {
        let mut noise = NoiseConfig::default();
        set(&mut noise);
        match err(nsr(250, vec![Lead::II]).with_noise(noise)) {
            SimError::Noise { field, .. } => assert_eq!(field, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn bad_lead_off_intervals_are_rejected() {
    let base = nsr(250, vec![Lead::II]);
    let bad = [
        LeadOffInterval::new(Lead::V1, 1.0, 1.0),
        LeadOffInterval::new(Lead::II, -1.0, 1.0),
        LeadOffInterval::new(Lead::II, f64::NAN, 1.0),
        LeadOffInterval::new(Lead::II, 1.0, 0.0),
        LeadOffInterval::new(Lead::II, 1.0, 0.001),
        LeadOffInterval::new(Lead::II, 1.0, 2.0).every(2.0),
        LeadOffInterval::new(Lead::II, 1.0, 2.0).every(f64::NAN),
    ];
    for lo in bad {
        let e = err(base
            .clone()
            .with_lead_off(LeadOffInterval::all_leads(0.0, 1.0))
            .with_lead_off(lo.clone()));
        assert!(
            matches!(e, SimError::LeadOff { index: 1, .. }),
            "{lo:?} gave {e:?}"
        );
    }
    let mut cfg = base;
    cfg.rail_mv = f32::NAN;
    assert!(matches!(err(cfg.clone()), SimError::Rail(_)));
    cfg.rail_mv = 0.0;
    assert!(matches!(err(cfg), SimError::Rail(_)));
}

#[test]
fn every_preset_is_valid_and_named() {
    let mut names = std::collections::HashSet::new();
    for &p in Preset::all() {
        for leads in [vec![Lead::I], Lead::STANDARD_12.to_vec()] {
            assert!(Device::new(p.config(9, 250, leads)).is_ok(), "{p}");
        }
        assert!(names.insert(p.name()));
        assert_eq!(p.name().parse::<Preset>(), Ok(p));
        assert_eq!(
            p.name().replace('_', "-").to_uppercase().parse::<Preset>(),
            Ok(p)
        );
    }
    assert_eq!(Preset::all().len(), 10);
    assert!("nope".parse::<Preset>().is_err());
    // A preset with a bad rate or no leads still fails cleanly at construction.
    assert_eq!(
        err(Preset::Asystole.config(1, 10, vec![Lead::II])),
        SimError::SampleRate(10)
    );
    assert_eq!(
        err(Preset::LeadOffNormalSinus.config(1, 250, vec![])),
        SimError::NoLeads
    );
}

#[test]
fn configs_round_trip_through_serde() {
    let cfg = Preset::Asystole.config(3, 250, vec![Lead::II, Lead::V1]);
    let json = serde_json::to_string(&cfg).unwrap();
    let back: DeviceConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    let noisy = Preset::NoisyNormalSinus.config(3, 250, vec![Lead::II]);
    let back: DeviceConfig = serde_json::from_str(&serde_json::to_string(&noisy).unwrap()).unwrap();
    assert_eq!(back, noisy);
    // Noise and lead-off may be omitted.
    let minimal =
        r#"{"seed":1,"sample_rate":250,"leads":["II"],"plan":{"constant":"normal_sinus"}}"#;
    let cfg: DeviceConfig = serde_json::from_str(minimal).unwrap();
    assert_eq!(cfg, nsr(250, vec![Lead::II]));
}

//! Arbitrary seeds, rates, lead sets and presets never panic and give finite samples.

use ecg_sim::{Device, Preset, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use ecg_types::Lead;
use proptest::prelude::*;
use proptest::sample::subsequence;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_valid_config_generates_finite_samples(
        seed in any::<u64>(),
        rate in MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE,
        leads in subsequence(Lead::ALL.to_vec(), 1..=12),
        preset in 0..Preset::all().len(),
        block in 1usize..400,
    ) {
        let preset = Preset::all()[preset];
        let n_leads = leads.len();
        let mut dev = Device::new(preset.config(seed, rate, leads)).unwrap();
        let total = (rate as usize * 3) / 2; // 1.5 s
        let mut out = Vec::new();
        let mut done = 0;
        while done < total {
            let n = block.min(total - done);
            dev.generate(n, &mut out);
            done += n;
        }
        prop_assert_eq!(out.len(), total * n_leads);
        prop_assert!(out.iter().all(|v| v.is_finite() && v.abs() < 20.0));
        prop_assert_eq!(dev.position(), total as u64);
        let t = dev.truth();
        prop_assert!(t.beats.windows(2).all(|w| w[0].sample < w[1].sample));
        prop_assert!(t.beats.iter().all(|b| b.sample < total as u64));
        prop_assert_eq!(t.episodes.last().map(|e| e.end), Some(total as u64));
    }
}

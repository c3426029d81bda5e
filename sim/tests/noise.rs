//! Noise sources: spectra and sizes, measured on (noisy − clean) from the same seed.

use std::f64::consts::TAU;

use ecg_sim::{Device, DeviceConfig, MainsFrequency, NoiseConfig, Preset, Rhythm, RhythmPlan};
use ecg_types::Lead;

fn lead_ii(cfg: DeviceConfig, n: usize) -> Vec<f64> {
    let mut dev = Device::new(cfg).expect("valid config");
    let mut out = Vec::new();
    dev.generate(n, &mut out);
    out.iter().map(|&v| f64::from(v)).collect()
}

/// Lead II with `noise` and the same device without it.
fn noisy_and_clean(noise: NoiseConfig, fs: u32, seconds: f64) -> (Vec<f64>, Vec<f64>) {
    let clean = DeviceConfig::new(
        17,
        fs,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::NormalSinus),
    );
    let noisy = clean.clone().with_noise(noise);
    let n = (seconds * f64::from(fs)) as usize;
    (lead_ii(noisy, n), lead_ii(clean, n))
}

/// Magnitude of the Hann-windowed DFT of `x` at `f` Hz.
fn dft_mag(x: &[f64], fs: f64, f: f64) -> f64 {
    let n = x.len() as f64;
    let (mut re, mut im) = (0.0, 0.0);
    for (k, v) in x.iter().enumerate() {
        let w = 0.5 - 0.5 * (TAU * k as f64 / n).cos();
        let ph = TAU * f * k as f64 / fs;
        re += w * v * ph.cos();
        im -= w * v * ph.sin();
    }
    (re * re + im * im).sqrt()
}

/// Fraction of the power of `x` (mean removed) between `lo` and `hi` Hz, by a DFT on a
/// 0.25 Hz grid.
fn band_fraction(x: &[f64], fs: f64, lo: f64, hi: f64) -> f64 {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let x: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let (mut inside, mut total) = (0.0, 0.0);
    let mut f = 0.25;
    while f < fs / 2.0 {
        let p = dft_mag(&x, fs, f).powi(2);
        total += p;
        if (lo..=hi).contains(&f) {
            inside += p;
        }
        f += 0.25;
    }
    inside / total
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

#[test]
fn mains_shows_a_spectral_peak_at_its_frequency() {
    for (hz, fs) in [
        (MainsFrequency::Hz50, 500u32),
        (MainsFrequency::Hz60, 500),
        (MainsFrequency::Hz60, 125),
    ] {
        let noise = NoiseConfig {
            mains_mv: 0.05,
            mains_hz: hz,
            ..NoiseConfig::default()
        };
        let (noisy, clean) = noisy_and_clean(noise, fs, 4.0);
        let f = f64::from(hz.hz());
        let fsf = f64::from(fs);
        let peak = dft_mag(&noisy, fsf, f);
        for df in [-7.0, -4.0, 4.0] {
            let side = dft_mag(&noisy, fsf, f + df);
            assert!(
                peak > 20.0 * side,
                "{f} Hz at {fs} Hz: peak {peak:.3} vs {side:.3} at {df:+}"
            );
        }
        // The clean signal has no such peak.
        assert!(peak > 20.0 * dft_mag(&clean, fsf, f));
        let amp = rms(&diff(&noisy, &clean)) * 2f64.sqrt();
        assert!((0.025..=0.06).contains(&amp), "mains amplitude {amp:.3} mV");
    }
}

#[test]
fn baseline_wander_is_low_frequency() {
    let noise = NoiseConfig {
        baseline_wander_mv: 0.25,
        ..NoiseConfig::default()
    };
    let (noisy, clean) = noisy_and_clean(noise, 200, 30.0);
    let d = diff(&noisy, &clean);
    let frac = band_fraction(&d, 200.0, 0.0, 1.0);
    assert!(frac > 0.95, "only {frac:.3} of wander power below 1 Hz");
    let r = rms(&d);
    assert!((0.08..=0.5).contains(&r), "wander RMS {r:.3} mV");
    // The noisy signal has much more low-frequency power than the clean one.
    let low = |x: &[f64]| {
        [0.25, 0.5, 0.75]
            .iter()
            .map(|&f| dft_mag(x, 200.0, f).powi(2))
            .sum::<f64>()
    };
    assert!(low(&noisy) > 5.0 * low(&clean));
}

#[test]
fn muscle_noise_is_band_limited_and_scaled() {
    let noise = NoiseConfig {
        muscle_mv: 0.05,
        ..NoiseConfig::default()
    };
    let (noisy, clean) = noisy_and_clean(noise, 500, 4.0);
    let d = diff(&noisy, &clean);
    let r = rms(&d);
    assert!((0.04..=0.06).contains(&r), "muscle RMS {r:.4} mV");
    let frac = band_fraction(&d, 500.0, 12.0, 150.0);
    assert!(frac > 0.85, "only {frac:.3} of EMG power in 12–150 Hz");
}

#[test]
fn bursty_muscle_noise_varies_in_level() {
    let noise = NoiseConfig {
        muscle_mv: 0.1,
        muscle_bursts: true,
        ..NoiseConfig::default()
    };
    let (noisy, clean) = noisy_and_clean(noise, 250, 30.0);
    let d = diff(&noisy, &clean);
    let levels: Vec<f64> = d.chunks(125).map(rms).collect();
    let max = levels.iter().copied().fold(0.0, f64::max);
    let min = levels.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(max > 3.0 * min, "bursts not visible: {min:.3}..{max:.3}");
    assert!(max > 0.06 && min < 0.04);
}

#[test]
fn electrode_motion_makes_large_slow_transients() {
    let noise = NoiseConfig {
        electrode_motion_mv: 0.5,
        electrode_motion_per_min: 12.0,
        ..NoiseConfig::default()
    };
    let (noisy, clean) = noisy_and_clean(noise, 250, 30.0);
    let d = diff(&noisy, &clean);
    let peak = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(peak > 0.25, "largest transient {peak:.3} mV");
    assert!(band_fraction(&d, 250.0, 0.0, 5.0) > 0.9);
}

#[test]
fn noise_off_by_default() {
    assert!(NoiseConfig::default().is_silent());
    let cfg = DeviceConfig::new(
        1,
        250,
        vec![Lead::II],
        RhythmPlan::constant(Rhythm::Asystole),
    );
    assert!(lead_ii(cfg, 1000).iter().all(|v| *v == 0.0));
}

#[test]
fn noisy_preset_is_noisy_but_bounded() {
    let cfg = Preset::NoisyNormalSinus.config(3, 250, vec![Lead::II]);
    let clean = Preset::NormalSinus.config(3, 250, vec![Lead::II]);
    let d = diff(&lead_ii(cfg, 7500), &lead_ii(clean, 7500));
    let r = rms(&d);
    assert!((0.05..=0.5).contains(&r), "noise RMS {r:.3}");
    assert!(d.iter().all(|v| v.abs() < 3.0));
}

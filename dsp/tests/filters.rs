//! FIR design and streaming: frequency responses against each preset's specification
//! at 250/360/500/1000 Hz, FFT overlap-save and direct form against a naive
//! convolution, block-size invariance, delay compensation.
//!
//! `cargo test -p ecg-dsp --test filters -- --nocapture` prints the measured figures
//! quoted in docs/dsp.md.
#![allow(clippy::unwrap_used)]

use ecg_dsp::fir::{
    group_delay, magnitude, magnitude_db, presets, Band, Engine, FirFilter, FirSpec,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RATES: [f64; 4] = [250.0, 360.0, 500.0, 1000.0];

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Naive causal convolution in f64, input before sample 0 equal to x[0].
fn naive(taps: &[f64], x: &[f32]) -> Vec<f64> {
    let x0 = f64::from(x[0]);
    (0..x.len())
        .map(|n| {
            taps.iter()
                .enumerate()
                .map(|(i, &h)| h * n.checked_sub(i).map_or(x0, |k| f64::from(x[k])))
                .sum()
        })
        .collect()
}

/// Runs `f` over lead-major `x` (channels × n) cut into per-lead blocks of `block`.
fn run(f: &mut FirFilter, x: &[f32], channels: usize, block: usize) -> Vec<Vec<f32>> {
    let n = x.len() / channels;
    let mut outs = vec![Vec::new(); channels];
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let e = (i + block).min(n);
        buf.clear();
        for c in 0..channels {
            buf.extend_from_slice(&x[c * n + i..c * n + e]);
        }
        out.clear();
        f.process(&buf, &mut out);
        let k = out.len() / channels;
        for (c, o) in outs.iter_mut().enumerate() {
            o.extend_from_slice(&out[c * k..(c + 1) * k]);
        }
        i = e;
    }
    outs
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn fft_and_direct_match_naive_convolution() {
    let fs = 500.0;
    let short = FirSpec {
        band: Band::LowPass { cutoff_hz: 40.0 },
        transition_hz: 30.0,
        atten_db: 40.0,
    }
    .design(fs)
    .unwrap();
    let long = presets::monitoring(fs).design(fs).unwrap();
    let x = noise(3 * 6000, 7);
    for (name, taps) in [("short", &short), ("long", &long)] {
        let per = x.len() / 3;
        let refs: Vec<Vec<f64>> = (0..3)
            .map(|c| naive(taps, &x[c * per..(c + 1) * per]))
            .collect();
        for engine in [
            Engine::Direct,
            Engine::Fft { fft_len: 0 },
            Engine::Fft { fft_len: 3000 },
        ] {
            if matches!(engine, Engine::Fft { fft_len: 3000 }) && taps.len() > 3000 {
                continue;
            }
            let mut f = FirFilter::with_options(taps, 3, engine, false);
            let outs = run(&mut f, &x, 3, 250);
            for (c, (o, r)) in outs.iter().zip(&refs).enumerate() {
                // FFT engine returns whole blocks only: compare what came out.
                assert!(o.len() + f.block_len() > per && o.len() <= per);
                let err = max_abs_diff(o, &r[..o.len()]);
                eprintln!(
                    "{name} {engine:?} channel {c}: {} taps, max |error| {err:.2e}",
                    taps.len()
                );
                assert!(err < 2e-5, "{name} {engine:?} channel {c}: {err}");
            }
        }
    }
    // Auto picks direct form for the short filter and FFT for the long one.
    assert!(!FirFilter::new(&short, 1).is_fft());
    assert!(FirFilter::new(&long, 1).is_fft());
}

#[test]
fn output_does_not_depend_on_block_size() {
    let fs = 500.0;
    let taps = presets::monitoring(fs).design(fs).unwrap();
    let notch = presets::mains_notch(50.0, fs).unwrap().design(fs).unwrap();
    let x = noise(3 * 12_000, 11);
    for (taps, engine) in [
        (&taps, Engine::Auto),
        (&notch, Engine::Direct),
        (&notch, Engine::Fft { fft_len: 0 }),
    ] {
        for compensate in [false, true] {
            let reference = run(
                &mut FirFilter::with_options(taps, 3, engine, compensate),
                &x,
                3,
                12_000,
            );
            for block in [1, 37, 500] {
                let mut f = FirFilter::with_options(taps, 3, engine, compensate);
                let outs = run(&mut f, &x, 3, block);
                for (o, r) in outs.iter().zip(&reference) {
                    let n = o.len().min(r.len());
                    assert!(n > 8000);
                    assert_eq!(&o[..n], &r[..n], "block {block} {engine:?} differs");
                }
            }
        }
    }
}

#[test]
fn delay_compensation_aligns_output_with_input() {
    let fs = 360.0;
    let taps = presets::monitoring(fs).design(fs).unwrap();
    let d = group_delay(taps.len());
    assert_eq!(d.fract(), 0.0);
    let n = 20_000;
    // 10 Hz sinusoid (pass band) plus a DC offset (rejected).
    let x: Vec<f32> = (0..n)
        .map(|i| 1.5 + (2.0 * std::f64::consts::PI * 10.0 * i as f64 / fs).sin() as f32)
        .collect();
    let mut causal = FirFilter::new(&taps, 1);
    let mut aligned = FirFilter::with_options(&taps, 1, Engine::Auto, true);
    assert_eq!(aligned.group_delay_samples(), 0.0);
    assert_eq!(causal.group_delay_samples(), d);
    let yc = run(&mut causal, &x, 1, 100).remove(0);
    let ya = run(&mut aligned, &x, 1, 100).remove(0);
    let d = d as usize;
    for k in 0..ya.len().min(yc.len() - d) {
        assert_eq!(ya[k], yc[k + d]);
    }
    // Aligned output reproduces the sinusoid at the input's own sample times.
    let err = (d..ya.len())
        .map(|k| (f64::from(ya[k]) - (f64::from(x[k]) - 1.5)).abs())
        .fold(0.0, f64::max);
    assert!(err < 0.01, "aligned error {err}");
}

struct Figures {
    taps: usize,
    ripple_db: f64,
    stop_db: f64,
}

/// Largest |dB| over `pass`, largest dB over `stop` (both lists of Hz).
fn measure(taps: &[f64], fs: f64, pass: &[f64], stop: &[f64]) -> Figures {
    let ripple_db = pass
        .iter()
        .map(|&f| magnitude_db(taps, f, fs).abs())
        .fold(0.0, f64::max);
    let stop_db = stop
        .iter()
        .map(|&f| magnitude_db(taps, f, fs))
        .fold(-400.0, f64::max);
    Figures {
        taps: taps.len(),
        ripple_db,
        stop_db,
    }
}

fn grid(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = ((hi - lo) / step).floor() as usize;
    (0..=n)
        .map(|i| lo + i as f64 * step)
        .filter(|&f| f <= hi)
        .collect()
}

/// The frequency in `[lo, hi]` where the (monotone there) magnitude crosses `level`.
fn crossing(taps: &[f64], fs: f64, level: f64, mut lo: f64, mut hi: f64) -> f64 {
    let rising = magnitude(taps, lo, fs) < magnitude(taps, hi, fs);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if (magnitude(taps, mid, fs) < level) == rising {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

const SPEC_RIPPLE_DB: f64 = 0.1;
const SPEC_STOP_DB: f64 = -40.0;

#[test]
fn baseline_removal_meets_spec() {
    for fs in RATES {
        let taps = presets::baseline_removal().design(fs).unwrap();
        let mut pass = grid(0.8, 5.0, 0.01);
        pass.extend(grid(5.0, fs / 2.0, 0.25));
        let m = measure(&taps, fs, &pass, &grid(0.0, 0.2, 0.005));
        let f3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), 0.2, 0.8);
        let f6 = crossing(&taps, fs, 0.5, 0.2, 0.8);
        eprintln!(
            "baseline fs {fs}: {} taps, delay {} samples ({:.3} s), ripple ±{:.3} dB ≥0.8 Hz, \
             stop {:.1} dB ≤0.2 Hz, -3 dB {f3:.3} Hz, -6 dB {f6:.3} Hz",
            m.taps,
            group_delay(m.taps),
            group_delay(m.taps) / fs,
            m.ripple_db,
            m.stop_db
        );
        assert!(m.ripple_db <= SPEC_RIPPLE_DB, "fs {fs}");
        assert!(m.stop_db <= SPEC_STOP_DB, "fs {fs}");
        assert!((f6 - 0.5).abs() < 0.01, "fs {fs}: -6 dB at {f6}");
        assert!(f3 > 0.5 && f3 < 0.65, "fs {fs}: -3 dB at {f3}");
        assert!(magnitude(&taps, 0.0, fs) < 1e-9);
    }
}

#[test]
fn monitoring_band_pass_meets_spec() {
    for fs in RATES {
        let spec = presets::monitoring(fs);
        let taps = spec.design(fs).unwrap();
        let hi = presets::clamp_high(40.0, fs);
        let mut pass = grid(0.8, 5.0, 0.01);
        pass.extend(grid(5.0, hi - 0.3, 0.01));
        let mut stop = grid(0.0, 0.2, 0.005);
        stop.extend(grid(hi + 0.3, fs / 2.0, 0.01));
        let m = measure(&taps, fs, &pass, &stop);
        let lo3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), 0.2, 0.8);
        let hi3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), hi - 0.3, hi + 0.3);
        let hi6 = crossing(&taps, fs, 0.5, hi - 0.3, hi + 0.3);
        eprintln!(
            "monitoring fs {fs}: {} taps, delay {} samples, ripple ±{:.3} dB on 0.8–{:.1} Hz, \
             stop {:.1} dB, -3 dB {lo3:.3} / {hi3:.2} Hz, -6 dB high {hi6:.2} Hz",
            m.taps,
            group_delay(m.taps),
            m.ripple_db,
            hi - 0.3,
            m.stop_db
        );
        assert!(m.ripple_db <= SPEC_RIPPLE_DB, "fs {fs}");
        assert!(m.stop_db <= SPEC_STOP_DB, "fs {fs}");
        assert!((hi6 - hi).abs() < 0.02);
        assert!(lo3 > 0.5 && lo3 < 0.65 && hi3 < hi && hi3 > hi - 0.1);
    }
}

#[test]
fn diagnostic_band_pass_meets_spec() {
    for fs in RATES {
        let taps = presets::diagnostic(fs).design(fs).unwrap();
        let hi = presets::clamp_high(150.0, fs);
        let mut pass = grid(0.1, 2.0, 0.002);
        pass.extend(grid(2.0, hi - 0.05, 0.02));
        let stop = grid(hi + 0.05, fs / 2.0, 0.02);
        let mut m = measure(&taps, fs, &pass, &stop);
        m.stop_db = m.stop_db.max(magnitude_db(&taps, 0.0, fs));
        let lo3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), 0.0, 0.1);
        eprintln!(
            "diagnostic fs {fs}: {} taps ({:.1} s delay), band 0.05–{hi} Hz, ripple ±{:.3} dB, \
             stop {:.1} dB (DC and ≥{:.2} Hz), -3 dB low {lo3:.4} Hz",
            m.taps,
            group_delay(m.taps) / fs,
            m.ripple_db,
            m.stop_db,
            hi + 0.05
        );
        assert!(m.ripple_db <= SPEC_RIPPLE_DB, "fs {fs}");
        assert!(m.stop_db <= SPEC_STOP_DB, "fs {fs}");
    }
}

#[test]
fn mains_notch_meets_spec() {
    for fs in RATES {
        for mains in [50.0, 60.0] {
            let taps = presets::mains_notch(mains, fs).unwrap().design(fs).unwrap();
            let mut pass = grid(0.0, mains - 5.0, 0.05);
            pass.extend(grid(mains + 5.0, fs / 2.0, 0.05));
            let m = measure(&taps, fs, &pass, &grid(mains - 1.0, mains + 1.0, 0.01));
            let depth = magnitude_db(&taps, mains, fs);
            let lo3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), mains - 5.0, mains - 1.0);
            let hi3 = crossing(&taps, fs, 10f64.powf(-3.0 / 20.0), mains + 1.0, mains + 5.0);
            eprintln!(
                "notch {mains} Hz fs {fs}: {} taps, delay {} samples, depth {depth:.1} dB, \
                 ≤{:.1} dB over ±1 Hz, ripple ±{:.3} dB outside ±5 Hz, -3 dB {lo3:.2}–{hi3:.2} Hz",
                m.taps,
                group_delay(m.taps),
                m.stop_db,
                m.ripple_db
            );
            assert!(m.ripple_db <= SPEC_RIPPLE_DB);
            assert!(m.stop_db <= SPEC_STOP_DB);
            assert!(depth <= -40.0);
        }
    }
    assert!(presets::mains_notch(50.0, 100.0).is_none());
    assert!(presets::mains_notch(60.0, 128.0).is_none());
}

/// The streaming filter (FFT path, f32) realises the designed response: steady-state
/// amplitudes of sinusoids match |H(f)|.
#[test]
fn streaming_response_matches_design() {
    let fs = 500.0;
    let taps = presets::monitoring(fs).design(fs).unwrap();
    for f0 in [0.1, 1.0, 10.0, 39.0, 50.0, 100.0] {
        let n = 20_000;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f0 * i as f64 / fs).sin() as f32)
            .collect();
        let mut f = FirFilter::new(&taps, 1);
        let y = run(&mut f, &x, 1, 500).remove(0);
        let tail = &y[taps.len() + 1000..];
        let amp = tail.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let want = magnitude(&taps, f0, fs);
        assert!(
            (f64::from(amp) - want).abs() < 2e-3,
            "{f0} Hz: measured {amp}, designed {want}"
        );
    }
}

#[test]
fn dc_offset_causes_no_start_transient() {
    let fs = 250.0;
    let taps = presets::baseline_removal().design(fs).unwrap();
    let x = vec![-2.0f32; 5000];
    let mut f = FirFilter::new(&taps, 1);
    let y = run(&mut f, &x, 1, 37).remove(0);
    assert!(!y.is_empty());
    assert!(y.iter().all(|v| v.abs() < 1e-4), "{:?}", &y[..4]);
}

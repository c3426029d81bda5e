//! Model windows: boundaries and timing, lead order and derivation, missing-lead
//! error, block-size invariance, content against an offline resample, and the state
//! memory of a 12-lead 500 Hz stream.
//!
//! `cargo test -p ecg-dsp --test window -- --nocapture` prints the memory figures.
#![allow(clippy::unwrap_used)]

use ecg_dsp::fir::{presets, FirFilter};
use ecg_dsp::resample::{resample_offline, Resampler};
use ecg_dsp::window::{ModelWindow, WindowError, WindowSpec, Windower};
use ecg_types::Lead;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn spec(window_s: f32, hop_s: f32, rate: u32, leads: &[Lead]) -> WindowSpec {
    WindowSpec {
        window_s,
        hop_s,
        target_rate_hz: rate,
        leads: leads.to_vec(),
    }
}

/// Feeds lead-major `x` (`leads × n`) in per-lead blocks of `block`.
fn feed(w: &mut Windower, x: &[f32], leads: usize, block: usize) -> Vec<ModelWindow> {
    let n = x.len() / leads;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut i = 0;
    while i < n {
        let e = (i + block).min(n);
        buf.clear();
        for c in 0..leads {
            buf.extend_from_slice(&x[c * n + i..c * n + e]);
        }
        w.push(&buf, &mut out);
        i = e;
    }
    out
}

#[test]
fn window_boundaries_and_timing() {
    let s = spec(2.0, 0.5, 500, &[Lead::II]);
    let mut w = Windower::new(&s, 500, &[Lead::II]).unwrap();
    assert_eq!((w.window_len(), w.hop_len()), (1000, 250));
    let n = 3210;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let out = feed(&mut w, &x[..999], 1, 100);
    assert!(out.is_empty(), "no half-filled window at stream start");
    let out = feed(&mut w, &x[999..], 1, 100);
    assert_eq!(out.len(), (n - 1000) / 250 + 1);
    for (k, win) in out.iter().enumerate() {
        let start = 250 * k as u64;
        assert_eq!(win.start_sample, start);
        assert_eq!(win.source_start_sample(), start as f64);
        assert!((win.start_s() - start as f64 / 500.0).abs() < 1e-12);
        assert_eq!(win.samples_mv.len(), 1000);
        assert!(win
            .samples_mv
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (start + i as u64) as f32));
    }
    // Hop longer than the window.
    let mut w = Windower::new(&spec(1.0, 1.5, 100, &[Lead::I]), 100, &[Lead::I]).unwrap();
    let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let out = feed(&mut w, &x, 1, 7);
    let starts: Vec<u64> = out.iter().map(|w| w.start_sample).collect();
    assert_eq!(starts, vec![0, 150, 300, 450, 600, 750, 900]);
    assert_eq!(out[2].samples_mv[0], 300.0);
}

/// Windows far apart (a hop many times the window: the samples between them are
/// never stored) hold exactly the signal's samples, for any block size and first
/// window end, and a record shorter than a window still gives its padded window.
#[test]
fn sparse_windows_hold_the_signal() {
    let src = [Lead::I, Lead::II];
    let model = [Lead::II, Lead::III];
    let s = spec(1.0, 7.5, 100, &model);
    let n = 100 * 60 + 37;
    let x: Vec<f32> = (0..2 * n)
        .map(|i| (i as f32 * 0.37).sin() + i as f32 * 1e-3)
        .collect();
    for first_end in [100u64, 100 + 7, 250, 1999] {
        let expected: Vec<(u64, Vec<f32>)> = (0..)
            .map(|k| first_end + 750 * k)
            .take_while(|&e| e <= n as u64)
            .map(|e| {
                let (a, b) = ((e - 100) as usize, e as usize);
                let mut v = x[n + a..n + b].to_vec();
                v.extend((a..b).map(|t| -x[t] + x[n + t]));
                (e - 100, v)
            })
            .collect();
        for block in [1, 13, 100, 499, 3000, n] {
            let mut w = Windower::new(&s, 100, &src)
                .unwrap()
                .with_first_end(first_end);
            let got: Vec<(u64, Vec<f32>)> = feed(&mut w, &x, 2, block)
                .into_iter()
                .map(|w| (w.start_sample, w.samples_mv))
                .collect();
            assert_eq!(got, expected, "first end {first_end}, block {block}");
        }
    }
    // Shorter than a window, with the first window moved far out: padded window of
    // what exists.
    let mut w = Windower::new(&s, 100, &src).unwrap().with_first_end(5000);
    let short = [1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0];
    let mut out = feed(&mut w, &short, 2, 2);
    w.finish(&short[..0], &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].start_sample, 0);
    assert_eq!(&out[0].samples_mv[..3], &[10.0, 20.0, 30.0]);
    assert_eq!(&out[0].samples_mv[100..103], &[9.0, 18.0, 27.0]);
    assert!(out[0].samples_mv[3..100].iter().all(|&v| v == 0.0));
}

#[test]
fn leads_in_model_order_and_derived() {
    let src = [Lead::II, Lead::V1, Lead::I];
    let model = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
    ];
    let mut w = Windower::new(&spec(1.0, 1.0, 250, &model), 250, &src).unwrap();
    let n = 500;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..3 * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let (ii, v1, i) = (&x[..n], &x[n..2 * n], &x[2 * n..]);
    let out = feed(&mut w, &x, 3, 64);
    assert_eq!(out.len(), 2);
    for win in &out {
        let s = win.start_sample as usize;
        let lane = |l: usize| &win.samples_mv[l * 250..(l + 1) * 250];
        for t in 0..250 {
            let (a, b) = (i[s + t], ii[s + t]);
            let want = [
                a,
                b,
                b - a,
                -0.5 * a - 0.5 * b,
                a - 0.5 * b,
                b - 0.5 * a,
                v1[s + t],
            ];
            for (l, wv) in want.iter().enumerate() {
                assert!((lane(l)[t] - wv).abs() < 1e-6, "lead {l} sample {t}");
            }
        }
    }
}

#[test]
fn missing_lead_is_an_error() {
    let e = Windower::new(
        &spec(10.0, 5.0, 500, &[Lead::I, Lead::V2]),
        500,
        &[Lead::I, Lead::II],
    );
    assert_eq!(e.err(), Some(WindowError::MissingLead(Lead::V2)));
    let e = Windower::new(&spec(10.0, 5.0, 500, &[Lead::III]), 500, &[Lead::II]);
    assert_eq!(e.err(), Some(WindowError::MissingLead(Lead::III)));
    assert_eq!(
        WindowError::MissingLead(Lead::V2).to_string(),
        "the stream has no lead V2 and cannot derive it"
    );
    let e = Windower::new(&spec(0.0, 5.0, 500, &[Lead::I]), 500, &[Lead::I]);
    assert!(matches!(e, Err(WindowError::InvalidSpec(_))));
    let e = Windower::new(&spec(1.0, 1.0, 0, &[Lead::I]), 500, &[Lead::I]);
    assert!(matches!(e, Err(WindowError::InvalidSpec(_))));
}

#[test]
fn resampled_windows_match_offline_and_block_size() {
    let src = [Lead::I, Lead::II];
    let s = spec(2.5, 1.0, 500, &[Lead::II, Lead::I]);
    let n = 360 * 9 + 11;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x: Vec<f32> = (0..2 * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let reference = feed(&mut Windower::new(&s, 360, &src).unwrap(), &x, 2, n);
    let off_i = resample_offline(360, 500, &x[..n]);
    let off_ii = resample_offline(360, 500, &x[n..]);
    let produced = Resampler::new(360, 500, 1).outputs_for(n as u64) as usize;
    assert_eq!(off_i.len(), produced);
    assert_eq!(reference.len(), (produced - 1250) / 500 + 1);
    for win in &reference {
        let s0 = win.start_sample as usize;
        assert!((win.source_start_sample() - s0 as f64 * 0.72).abs() < 1e-9);
        for (l, off) in [&off_ii, &off_i].iter().enumerate() {
            let lane = &win.samples_mv[l * 1250..(l + 1) * 1250];
            let err = lane
                .iter()
                .zip(&off[s0..s0 + 1250])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "window {s0} lead {l}: {err}");
        }
    }
    for block in [1, 37, 360] {
        let w = feed(&mut Windower::new(&s, 360, &src).unwrap(), &x, 2, block);
        assert_eq!(w, reference, "block {block}");
    }
}

/// State per 12-lead 500 Hz stream of each stage of this crate (the QRS detector and
/// `StreamDsp` do not report theirs yet).
#[test]
fn state_memory_12_lead_500_hz() {
    let fs = 500.0;
    let leads = Lead::STANDARD_12;
    let block = vec![0.1f32; 12 * 500];
    let mut out = Vec::new();
    let mut report = |name: &str, f: &mut FirFilter| {
        out.clear();
        f.process(&block, &mut out);
        eprintln!(
            "{name}: {} taps, {} (block {}), per-stream state {} B ({:.1} KiB), \
             scratch {} B, shared {} B",
            f.num_taps(),
            if f.is_fft() { "fft" } else { "direct" },
            f.block_len(),
            f.state_bytes(),
            f.state_bytes() as f64 / 1024.0,
            f.scratch_bytes(),
            f.shared_bytes()
        );
        f.state_bytes()
    };
    let mon = report(
        "monitoring band-pass",
        &mut FirFilter::new(&presets::monitoring(fs).design(fs).unwrap(), 12),
    );
    let base = report(
        "baseline high-pass",
        &mut FirFilter::new(&presets::baseline_removal().design(fs).unwrap(), 12),
    );
    let notch = report(
        "50 Hz notch",
        &mut FirFilter::new(
            &presets::mains_notch(50.0, fs).unwrap().design(fs).unwrap(),
            12,
        ),
    );
    for (a, b) in [(500, 400), (250, 500)] {
        let r = Resampler::new(a, b, 12);
        eprintln!(
            "resampler {a}->{b}: state {} B, shared {} B",
            r.state_bytes(),
            r.shared_bytes()
        );
        assert!(r.state_bytes() < 12 * 1024);
    }
    let s = spec(10.0, 5.0, 400, &leads);
    let mut w = Windower::new(&s, 500, &leads).unwrap();
    let mut wins = Vec::new();
    w.push(&block, &mut wins);
    eprintln!(
        "windower 12 leads 500->400 Hz, 10 s: state {} B, of which window ring {} B",
        w.state_bytes(),
        w.window_bytes()
    );
    assert_eq!(w.window_bytes(), 12 * 4000 * 4);
    assert!(notch < mon && base <= mon);
}

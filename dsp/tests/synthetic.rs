//! Detection and stream behaviour on synthetic ECG with known beats, and
//! block-size invariance on synthetic and real data.

mod common;

use ecg_dsp::{DspConfig, DspEvent, QrsDetector, StreamDsp};
use ecg_types::{Condition, FindingStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Gaussian PQRST beats at `beats` (sample indices) plus baseline wander and noise.
fn synth(fs: f64, n: usize, beats: &[u64], noise_mv: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / fs;
            (0.3 * (2.0 * std::f64::consts::PI * 0.25 * t).sin()) as f32
                + rng.random_range(-noise_mv..=noise_mv)
        })
        .collect();
    add_beats(&mut x, fs, beats, 1.0);
    x
}

/// Adds `scale` × the synthetic beat (Gaussian P, Q, R, S and T waves; 1.2 mV R) at
/// each of `beats` (sample indices) to `x`.
fn add_beats(x: &mut [f32], fs: f64, beats: &[u64], scale: f64) {
    // (offset s, width s, amplitude mV)
    let waves = [
        (-0.20, 0.025, 0.15),
        (-0.03, 0.010, -0.15),
        (0.0, 0.012, 1.2),
        (0.03, 0.010, -0.3),
        (0.30, 0.060, 0.35),
    ];
    let n = x.len();
    for &b in beats {
        let bt = b as f64 / fs;
        let lo = ((bt - 0.4) * fs).max(0.0) as usize;
        let hi = (((bt + 0.6) * fs) as usize).min(n);
        for (i, v) in x.iter_mut().enumerate().take(hi).skip(lo) {
            let t = i as f64 / fs - bt;
            for &(o, w, a) in &waves {
                let z = (t - o) / w;
                *v += (scale * a * (-0.5 * z * z).exp()) as f32;
            }
        }
    }
}

fn beat_times(fs: f64, dur_s: f64, mut rr: impl FnMut(usize) -> f64) -> Vec<u64> {
    let mut t = 0.5;
    let mut out = Vec::new();
    let mut k = 0;
    while t < dur_s - 0.7 {
        out.push((t * fs).round() as u64);
        t += rr(k);
        k += 1;
    }
    out
}

fn detect(x: &[f32], fs: f64, block: usize) -> Vec<u64> {
    let mut d = QrsDetector::new(fs);
    let mut out = Vec::new();
    for c in x.chunks(block.max(1)) {
        d.push(c, &mut out);
    }
    d.finish(&mut out);
    out
}

#[test]
fn detects_synthetic_beats_at_any_rate() {
    for fs in [125.0, 250.0, 300.0, 360.0, 500.0, 1000.0] {
        for (seed, hr) in [(1u64, 45.0), (2, 75.0), (3, 150.0)] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let jitter: Vec<f64> = (0..1000).map(|_| rng.random_range(-0.03..0.03)).collect();
            let beats = beat_times(fs, 60.0, |k| 60.0 / hr + jitter[k]);
            let x = synth(fs, (60.0 * fs) as usize, &beats, 0.05, seed);
            let det = detect(&x, fs, 64);
            let c = ecg_dsp::score::match_beats(&beats, &det, (0.05 * fs) as u64);
            let (tp, fn_, fp) = (c.tp, c.fn_, c.fp);
            assert_eq!(
                (fn_, fp),
                (0, 0),
                "fs {fs} hr {hr}: tp {tp} fn {fn_} fp {fp}"
            );
            // Placed on the R peak (within 10 ms).
            for (&b, &d) in beats.iter().zip(&det) {
                assert!(
                    b.abs_diff(d) as f64 <= 0.01 * fs + 1.0,
                    "fs {fs}: {b} vs {d}"
                );
            }
        }
    }
}

#[test]
fn beats_come_out_in_order_within_latency() {
    let fs = 360.0;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let beats = beat_times(fs, 120.0, |_| rng.random_range(0.4..1.4));
    let x = synth(fs, (120.0 * fs) as usize, &beats, 0.1, 9);
    let mut d = QrsDetector::new(fs);
    let lat = d.latency_samples() as u64;
    assert!(lat as f64 / fs < 2.5, "latency {lat}");
    let mut out = Vec::new();
    let mut last = None;
    for (i, &v) in x.iter().enumerate() {
        let before = out.len();
        d.push(&[v], &mut out);
        for &b in &out[before..] {
            assert!(i as u64 - b <= lat, "beat {b} out at {i}, latency {lat}");
            assert!(last.is_none_or(|l| b > l));
            last = Some(b);
        }
    }
}

/// Early beats smaller than the normal ones (0.6 of their size, at 0.45 of the RR
/// interval: atrial premature beats conducted with a smaller QRS) are beats in clean
/// signal: the early-noise rule, which takes such candidates for artefacts, only
/// applies among large noise peaks.
#[test]
fn small_early_beats_in_clean_signal_are_kept() {
    for fs in [250.0, 360.0, 500.0] {
        let normal = beat_times(fs, 90.0, |_| 1.1);
        let n = (90.0 * fs) as usize;
        let mut x = synth(fs, n, &normal, 0.02, 11);
        // A premature beat after every third beat.
        let small: Vec<u64> = normal
            .iter()
            .step_by(3)
            .map(|&b| b + (0.45 * 1.1 * fs) as u64)
            .filter(|&b| b as usize + ((0.6 * fs) as usize) < n)
            .collect();
        add_beats(&mut x, fs, &small, 0.6);
        let mut all: Vec<u64> = normal.iter().chain(&small).copied().collect();
        all.sort_unstable();
        let det = detect(&x, fs, 100);
        let c = ecg_dsp::score::match_beats(&all, &det, (0.05 * fs) as u64);
        assert_eq!(
            (c.fn_, c.fp),
            (0, 0),
            "fs {fs}: tp {} fn {} fp {}",
            c.tp,
            c.fn_,
            c.fp
        );
    }
}

/// Among large noise peaks, an early candidate clearly smaller than the QRS is not a
/// beat (the early-noise rule): sinus rhythm with motion-like bumps of 0.25-0.4 of
/// the QRS between the beats (rejected, they make the noise level) and, after every
/// other beat at 0.45 of the RR interval, a QRS-shaped artefact of 0.55 of its size.
#[test]
fn small_early_artefacts_among_noise_are_not_beats() {
    for fs in [250.0, 360.0, 500.0] {
        let beats = beat_times(fs, 90.0, |_| 1.0);
        let n = (90.0 * fs) as usize;
        let mut x = synth(fs, n, &beats, 0.02, 21);
        // Bumps: 12 ms Gaussians at random points away from the beats.
        add_bumps(&mut x, fs, &beats, (0.3, 89.0), 0.012, 21, |rng, _| {
            rng.random_range(0.25..0.4) * 1.2
        });
        let artefacts: Vec<u64> = beats
            .iter()
            .skip(10)
            .step_by(2)
            .map(|&b| b + (0.45 * fs) as u64)
            .filter(|&b| (b as usize) + ((0.6 * fs) as usize) < n)
            .collect();
        add_beats(&mut x, fs, &artefacts, 0.55);
        let det = detect(&x, fs, 100);
        let tol = (0.05 * fs) as u64;
        let c = ecg_dsp::score::match_beats(&beats, &det, tol);
        let on_artefacts = ecg_dsp::score::match_beats(&artefacts, &det, tol).tp;
        // Without the rule every artefact is a beat, and some 30 bumps more (72 false
        // beats at 250 Hz); with it 5 or 6 of the 40 artefacts remain.
        assert!(
            on_artefacts * 4 <= artefacts.len(),
            "fs {fs}: {on_artefacts} of {} artefacts taken for beats",
            artefacts.len()
        );
        assert!(
            c.fn_ == 0 && c.fp <= 10,
            "fs {fs}: tp {} fn {} fp {}",
            c.tp,
            c.fn_,
            c.fp
        );
    }
}

#[test]
fn qrs_block_size_invariance_synthetic() {
    let fs = 250.0;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let beats = beat_times(fs, 90.0, |_| rng.random_range(0.45..1.2));
    let x = synth(fs, (90.0 * fs) as usize, &beats, 0.15, 5);
    let a = detect(&x, fs, 1);
    assert_eq!(a, detect(&x, fs, 37));
    assert_eq!(a, detect(&x, fs, 250));
}

fn run_stream(x: &[f32], fs: u32, block: usize, lead_off: impl Fn(usize) -> bool) -> Vec<DspEvent> {
    run_stream_cfg(&DspConfig::default(), x, fs, block, lead_off)
}

fn run_stream_cfg(
    cfg: &DspConfig,
    x: &[f32],
    fs: u32,
    block: usize,
    lead_off: impl Fn(usize) -> bool,
) -> Vec<DspEvent> {
    // Two leads: lead 1 is lead 0 negated (ignored by the analysis).
    let mut s = StreamDsp::new(cfg, fs, 2);
    let mut out = Vec::new();
    let mut i = 0;
    for c in x.chunks(block) {
        let mut buf = c.to_vec();
        buf.extend(c.iter().map(|v| -v));
        s.push(&buf, &[lead_off(i), false], &mut out);
        i += c.len();
    }
    out
}

fn windows(ev: &[DspEvent]) -> Vec<&ecg_dsp::RhythmWindow> {
    ev.iter()
        .filter_map(|e| match e {
            DspEvent::Window(w) => Some(w),
            DspEvent::Pause { .. } => None,
        })
        .collect()
}

fn call(w: &ecg_dsp::RhythmWindow, c: Condition) -> FindingStatus {
    w.calls
        .iter()
        .find(|x| x.0 == c)
        .map(|x| x.1)
        .expect("call present")
}

#[test]
fn stream_rhythm_calls() {
    let fs = 250u32;
    let f = f64::from(fs);
    let dur = 60.0;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let cases: Vec<(&str, Vec<u64>)> = vec![
        (
            "normal",
            beat_times(f, dur, |k| 0.8 + 0.03 * ((k as f64) * 1.3).sin()),
        ),
        ("brady", beat_times(f, dur, |_| 1.4)),
        ("tachy", beat_times(f, dur, |_| 0.42)),
        ("af", beat_times(f, dur, |_| rng.random_range(0.4..0.95))),
        (
            "ectopic",
            beat_times(f, dur, |k| match k % 9 {
                4 => 0.5,
                5 => 1.1,
                _ => 0.8,
            }),
        ),
    ];
    for (name, beats) in cases {
        let x = synth(f, (dur * f) as usize, &beats, 0.03, 3);
        let ev = run_stream(&x, fs, 100, |_| false);
        let ws = windows(&ev);
        assert_eq!(ws.len(), 10, "{name}: 10 s windows every 5 s over 60 s");
        assert_eq!((ws[0].start_sample, ws[0].end_sample), (0, 2500));
        assert_eq!(ws[1].start_sample, 1250);
        for w in &ws {
            assert!(w.quality_ok, "{name}: {}", w.quality_reason);
            assert_eq!(w.filtered_mv.len(), 2500);
            let (b, t, a) = (
                call(w, Condition::Bradycardia),
                call(w, Condition::Tachycardia),
                call(w, Condition::AtrialFibrillation),
            );
            let want = match name {
                "brady" => (
                    FindingStatus::Present,
                    FindingStatus::Absent,
                    FindingStatus::Absent,
                ),
                "tachy" => (
                    FindingStatus::Absent,
                    FindingStatus::Present,
                    FindingStatus::Absent,
                ),
                "af" => (
                    FindingStatus::Absent,
                    FindingStatus::Absent,
                    FindingStatus::Present,
                ),
                _ => (
                    FindingStatus::Absent,
                    FindingStatus::Absent,
                    FindingStatus::Absent,
                ),
            };
            assert_eq!(
                (b, t, a),
                want,
                "{name}: window {} hr {} irr {}",
                w.start_sample,
                w.heart_rate_bpm,
                w.irregularity
            );
        }
        assert!(
            !ev.iter().any(|e| matches!(e, DspEvent::Pause { .. })),
            "{name}"
        );
    }
}

#[test]
fn pause_and_asystole_once_each_and_lead_off_suppresses() {
    let fs = 250u32;
    let f = f64::from(fs);
    // Beats every 0.8 s, none between 20 s and 26 s.
    let beats: Vec<u64> = beat_times(f, 40.0, |_| 0.8)
        .into_iter()
        .filter(|&b| !(20.0 * f..26.0 * f).contains(&(b as f64)))
        .collect();
    let x = synth(f, (40.0 * f) as usize, &beats, 0.03, 4);
    let ev = run_stream(&x, fs, 50, |_| false);
    let pauses: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            DspEvent::Pause {
                start_sample,
                length_s,
                asystole,
            } => Some((*start_sample, *length_s, *asystole)),
            DspEvent::Window(_) => None,
        })
        .collect();
    assert_eq!(pauses.len(), 2, "{pauses:?}");
    let last_before = *beats.iter().rfind(|&&b| (b as f64) < 20.0 * f).unwrap();
    assert!(pauses[0].0.abs_diff(last_before) < 5 && !pauses[0].2 && pauses[0].1 >= 3.0);
    assert!(pauses[1].2 && pauses[1].1 >= 4.0 && pauses[1].1 < 4.1);
    // The same with lead 0 off during the gap: no pause, windows indeterminate.
    let ev = run_stream(&x, fs, 50, |i| (19.0 * f..27.0 * f).contains(&(i as f64)));
    assert!(!ev.iter().any(|e| matches!(e, DspEvent::Pause { .. })));
    let ws = windows(&ev);
    let w = ws.iter().find(|w| w.start_sample == 15 * 250).unwrap();
    assert!(!w.quality_ok && w.quality_reason.contains("lead 0 off"));
    assert_eq!(
        call(w, Condition::AtrialFibrillation),
        FindingStatus::Indeterminate
    );
}

#[test]
fn flat_and_noisy_signal_is_indeterminate() {
    let fs = 500u32;
    let ev = run_stream(&vec![0.2f32; 30 * 500], fs, 500, |_| false);
    let ws = windows(&ev);
    assert_eq!(ws.len(), 4, "the window ending at 30 s needs the latency");
    assert!(ws
        .iter()
        .all(|w| !w.quality_ok && w.quality_reason.contains("flat")));
    assert!(ws.iter().all(|w| w
        .calls
        .iter()
        .all(|c| c.1 == FindingStatus::Indeterminate && c.2.is_none())));
    // Strong broadband noise.
    let f = 500.0;
    let beats = beat_times(f, 30.0, |_| 0.8);
    let x = synth(f, 30 * 500, &beats, 1.0, 8);
    let ws_ev = run_stream(&x, fs, 500, |_| false);
    assert!(
        windows(&ws_ev).iter().all(|w| !w.quality_ok),
        "noise accepted"
    );
    // Saturation.
    let x: Vec<f32> = synth(f, 30 * 500, &beats, 0.02, 8)
        .iter()
        .map(|v| (v * 10.0).clamp(-6.0, 6.0))
        .collect();
    let ev = run_stream(&x, fs, 500, |_| false);
    assert!(windows(&ev)
        .iter()
        .all(|w| w.quality_reason.contains("saturation")));
}

#[test]
fn stream_block_size_invariance_synthetic() {
    let fs = 360u32;
    let f = 360.0;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let beats: Vec<u64> = beat_times(f, 60.0, |_| rng.random_range(0.5..1.1))
        .into_iter()
        .filter(|&b| !(30.0 * f..35.0 * f).contains(&(b as f64)))
        .collect();
    let x = synth(f, 60 * 360, &beats, 0.1, 21);
    let off = |i: usize| (45 * 360..46 * 360).contains(&i);
    let a = run_stream(&x, fs, 1, off);
    assert!(a.iter().any(|e| matches!(e, DspEvent::Pause { .. })));
    assert_eq!(a, run_stream(&x, fs, 37, off));
    assert_eq!(a, run_stream(&x, fs, 360, off));
}

#[test]
fn block_size_invariance_on_mitdb() {
    let dir = match common::data_dir() {
        Ok(d) => d.join("mitdb"),
        Err(why) => {
            println!("skipping: {why}");
            return;
        }
    };
    let rec = match ecg_ingest::wfdb::read_record(&dir.join("208")) {
        Ok(r) => r,
        Err(e) => {
            println!("skipping: {e}");
            return;
        }
    };
    let x: Vec<f32> = rec.physical(0).into_iter().take(5 * 60 * 360).collect();
    let a = detect(&x, rec.fs, 1);
    assert!(a.len() > 400);
    assert_eq!(a, detect(&x, rec.fs, 37));
    assert_eq!(a, detect(&x, rec.fs, 360));
    let e = run_stream(&x, 360, 1, |_| false);
    assert!(windows(&e).len() > 50);
    assert_eq!(e, run_stream(&x, 360, 37, |_| false));
    assert_eq!(e, run_stream(&x, 360, 360, |_| false));
}

#[test]
fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
    let c: DspConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, DspConfig::default());
    assert_eq!(
        (c.hop_s, c.window_s, c.pause_s, c.asystole_s),
        (5.0, 10.0, 3.0, 4.0)
    );
    let c: DspConfig =
        serde_json::from_str(r#"{"brady_bpm": 40, "af": {"min_intervals": 8}}"#).unwrap();
    assert_eq!(
        (c.brady_bpm, c.af.min_intervals, c.tachy_bpm),
        (40.0, 8, 120.0)
    );
    assert!(serde_json::from_str::<DspConfig>(r#"{"bogus": 1}"#).is_err());
}

/// Beats of two leads through `PairedQrs`, in blocks of `block`, flushed.
fn detect_pair(x0: &[f32], x1: &[f32], fs: f64, block: usize, off1: bool) -> Vec<u64> {
    let mut d = ecg_dsp::PairedQrs::new(fs);
    let mut out = Vec::new();
    for (a, b) in x0.chunks(block.max(1)).zip(x1.chunks(block.max(1))) {
        d.push(a, b, off1, &mut out);
    }
    d.finish(&mut out);
    out.retain(|&t| (t as usize) < x0.len());
    out
}

/// Motion-like bumps added to `x`: Gaussians of `width_s` (within ±5 widths) every
/// 0.25–0.45 s within `span` (s), away from `beats`; `amp(rng, k)` gives the k-th
/// bump's amplitude (mV, k from 1), drawn before the next gap.
fn add_bumps(
    x: &mut [f32],
    fs: f64,
    beats: &[u64],
    span: (f64, f64),
    width_s: f64,
    seed: u64,
    mut amp: impl FnMut(&mut ChaCha8Rng, usize) -> f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = x.len();
    let w = width_s * fs;
    let mut t = span.0;
    let mut k_bump = 0;
    while t < span.1 {
        let k = (t * fs) as u64;
        if beats.iter().all(|&b| b.abs_diff(k) as f64 > 0.12 * fs) {
            k_bump += 1;
            let a = amp(&mut rng, k_bump);
            let lo = (k as f64 - 5.0 * w).max(0.0) as usize;
            let hi = ((k as f64 + 5.0 * w) as usize + 1).min(n);
            for (i, v) in x.iter_mut().enumerate().take(hi).skip(lo) {
                let z = (i as f64 - k as f64) / w;
                if z.abs() < 5.0 {
                    *v += (a * (-0.5 * z * z).exp()) as f32;
                }
            }
        }
        t += rng.random_range(0.25..0.45);
    }
}

/// Lead 0 with motion-like bumps (most rejected, every fourth beat-sized), lead 1
/// clean; the two leads' beats as in the test below.
fn motion_on_lead_0(fs: f64) -> (Vec<u64>, Vec<f32>, Vec<f32>) {
    let beats = beat_times(fs, 120.0, |_| 0.8);
    let n = (120.0 * fs) as usize;
    let mut x0 = synth(fs, n, &beats, 0.02, 3);
    // 20 ms bumps of 0.4-0.7 mV, every fourth one 1.0-1.3 mV (about the R wave).
    add_bumps(&mut x0, fs, &beats, (5.0, 115.0), 0.02, 4, |rng, k| {
        if k % 4 == 0 {
            rng.random_range(1.0..1.3)
        } else {
            rng.random_range(0.4..0.7)
        }
    });
    let mut x1 = synth(fs, n, &beats, 0.02, 9);
    x1.iter_mut().for_each(|v| *v *= 0.7);
    (beats, x0, x1)
}

#[test]
fn two_leads_follow_the_cleaner_lead_through_motion() {
    for fs in [250.0, 360.0, 500.0] {
        let (beats, x0, x1) = motion_on_lead_0(fs);
        let tol = (0.05 * fs) as u64;
        let one = ecg_dsp::score::match_beats(&beats, &detect(&x0, fs, 100), tol);
        let two = ecg_dsp::score::match_beats(&beats, &detect_pair(&x0, &x1, fs, 100, false), tol);
        // Lead 0 alone takes 17-22 bumps for beats; following lead 1 where lead 0's
        // noise ratio is high leaves 2-9.
        assert!(
            one.fp >= 15,
            "fs {fs}: the bumps should fool lead 0 ({one:?})"
        );
        assert!(
            two.fn_ == 0 && two.fp * 2 <= one.fp,
            "fs {fs}: {one:?} -> {two:?}"
        );
        // The same beats whatever the blocks.
        let a = detect_pair(&x0, &x1, fs, 1, false);
        assert_eq!(a, detect_pair(&x0, &x1, fs, 37, false));
        assert_eq!(a, detect_pair(&x0, &x1, fs, 250, false));
        // A lead flagged off is never followed.
        assert_eq!(detect_pair(&x0, &x1, fs, 100, true), detect(&x0, fs, 100));
    }
}

#[test]
fn two_clean_leads_give_lead_zeros_beats() {
    for fs in [250.0, 360.0, 500.0] {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let beats = beat_times(fs, 90.0, |_| rng.random_range(0.5..1.1));
        let n = (90.0 * fs) as usize;
        let x0 = synth(fs, n, &beats, 0.05, 8);
        let mut x1 = synth(fs, n, &beats, 0.05, 11);
        x1.iter_mut().for_each(|v| *v *= 0.5);
        assert_eq!(detect_pair(&x0, &x1, fs, 100, false), detect(&x0, fs, 100));
    }
}

#[test]
fn a_lead_that_misses_beats_is_not_followed() {
    // Lead 1 shows every other beat only (as lead 1 of a bigeminy record may): its
    // noise ratio is low, but with fewer than 4/5 of lead 0's beats it is not the
    // cleaner lead.
    for fs in [250.0, 360.0, 500.0] {
        let (beats, x0, _) = motion_on_lead_0(fs);
        let half: Vec<u64> = beats.iter().copied().step_by(2).collect();
        let x1 = synth(fs, x0.len(), &half, 0.02, 9);
        let tol = (0.05 * fs) as u64;
        let one = ecg_dsp::score::match_beats(&beats, &detect(&x0, fs, 100), tol);
        let two = ecg_dsp::score::match_beats(&beats, &detect_pair(&x0, &x1, fs, 100, false), tol);
        assert!(
            two.fn_ == 0 && two.fp <= one.fp,
            "fs {fs}: {one:?} -> {two:?}"
        );
    }
}

#[test]
fn a_lead_that_falls_silent_is_no_evidence() {
    for fs in [250.0, 360.0, 500.0] {
        let (beats, x0, x1) = motion_on_lead_0(fs);
        let tol = (0.05 * fs) as u64;
        let cut = (60.0 * fs) as usize;
        let after = |v: &[u64], from_s: f64| -> Vec<u64> {
            v.iter()
                .copied()
                .filter(|&t| t as f64 >= from_s * fs)
                .collect()
        };
        // Lead 1 goes flat at 60 s, unflagged, while lead 0 stays noisy: from 2 s
        // later (the nearest-beat look-back) lead 0's beats stand again.
        let mut flat1 = x1.clone();
        flat1[cut..].fill(0.0);
        let one = detect(&x0, fs, 100);
        let two = detect_pair(&x0, &flat1, fs, 100, false);
        let m = ecg_dsp::score::match_beats(&after(&beats, 62.5), &after(&two, 62.5), tol);
        let m1 = ecg_dsp::score::match_beats(&after(&beats, 62.5), &after(&one, 62.5), tol);
        assert!(
            m.fn_ <= m1.fn_,
            "fs {fs}: {m:?} against lead 0 alone {m1:?}"
        );
        // Lead 0 goes flat at 60 s: lead 1's beats stand in for it only within the
        // look-back of lead 0's last (noisy) beat, not for good.
        let mut flat0 = x0.clone();
        flat0[cut..].fill(0.0);
        let two = detect_pair(&flat0, &x1, fs, 100, false);
        assert!(
            after(&two, 62.0).is_empty(),
            "fs {fs}: {:?}",
            after(&two, 62.0)
        );
    }
}

/// A recording that stops before its next beat is due gets no beat searched back
/// after its last one: `finish` flushes the detector with the last sample, and a
/// small bump after the last beat (below the threshold, above the search-back's
/// share of it) used to be taken as the "missed" beat once the flushed stretch had
/// gone 1.5 RR without one. Where the recording lasts past the due time, the same
/// bump is still searched back (the rule only stops at the recording's end).
#[test]
fn no_beat_is_searched_back_past_a_recordings_end() {
    for fs in [250.0, 360.0, 500.0] {
        let beats = beat_times(fs, 10.7, |_| 1.0);
        let last = *beats.last().unwrap();
        let bump_at = last + (0.6 * fs) as u64;
        let record = |len_s: f64| {
            let n = (last as f64 + len_s * fs) as usize;
            let mut x = synth(fs, n, &beats, 0.01, 5);
            add_bumps(
                &mut x,
                fs,
                &[],
                (bump_at as f64 / fs, bump_at as f64 / fs + 0.01),
                0.012,
                1,
                |_, _| 0.3,
            );
            x
        };
        let after = |found: &[u64]| {
            found
                .iter()
                .filter(|&&b| b > last + (0.1 * fs) as u64)
                .count()
        };
        // Ends 1.2 s after the last beat (the next was due at 1.0 s, missed at 1.5 s).
        let short = record(1.2);
        let found = detect(&short, fs, 100);
        assert_eq!(after(&found), 0, "fs {fs}: {found:?}");
        let c = ecg_dsp::score::match_beats(&beats, &found, (0.05 * fs) as u64);
        assert_eq!((c.fn_, c.fp), (0, 0), "fs {fs}");
        // Flushed by hand, without `finish`, the bump is taken (what `finish` stops).
        let mut d = QrsDetector::new(fs);
        let mut old = Vec::new();
        d.push(&short, &mut old);
        d.push(
            &vec![*short.last().unwrap(); d.latency_samples() + 1],
            &mut old,
        );
        assert_eq!(after(&old), 1, "fs {fs}: {old:?}");
        // Lasting 2.5 s after the last beat, the recording covers the due time: the
        // bump is searched back as before.
        assert_eq!(after(&detect(&record(2.5), fs, 100)), 1, "fs {fs}");
    }
}

//! Atrial activity aligned to the beats: P waves against fibrillatory waves.
//!
//! What a rhythm model with global pooling cannot easily compute: whether the stretch
//! before each QRS holds the same wave beat after beat. Sinus P waves are time-locked
//! to the QRS that follows, so they survive averaging over the beats; fibrillatory
//! waves and noise are not, and average out. From one window of the raw lead (mV, the
//! model's rate) and the beats the streaming QRS detector found in it,
//! [`atrial_features`] gives six values ([`ATRIAL_FEATURE_NAMES`]):
//!
//! 1. `ln_p_amp`: ln(RMS of the beat-synchronous P-region template / QRS amplitude +
//!    0.001);
//! 2. `p_sync`: share of the P-region energy that survives averaging, corrected for the
//!    1/m floor of m beats (≈ 0 for waves not locked to the QRS, ≈ 1 for identical P
//!    waves);
//! 3. `p_corr`: mean correlation of each beat's P region with the template of the
//!    others (P-wave consistency);
//! 4. `p_share`: share of the window's RR intervals whose beat has a template-like P
//!    wave (correlation ≥ 0.5; premature and unusable beats count as without);
//! 5. `pr_sd`: spread of the per-beat P-peak position over the P region's length (PR
//!    variability; ≈ 0.29 for random positions);
//! 6. `ln_f_tq`: ln(RMS of the 4-9 Hz atrial band between each T wave's end and the
//!    next QRS / QRS amplitude + 0.001).
//!
//! The P region of a beat runs from `64 ms + L` to 64 ms before its R peak, L = 0.45 ×
//! the median RR − 64 ms, clamped to 80-240 ms; beats after an RR shorter than 0.8 ×
//! the median (premature beats) are left out. A window with fewer than four beats, less
//! than 3 s of signal or no QRS amplitude gets [`FALLBACK`] ("no P-wave evidence"); one
//! with fewer than three usable P regions gets it for the P-wave values.
//!
//! Every value is a ratio, a correlation or a position: a DC offset and a gain change
//! leave it unchanged up to rounding (tested). The signal is band-passed zero-phase
//! (forward and backward, second-order Butterworth sections at each edge), and the beat
//! times are moved to the largest |1-25 Hz signal| within 64 ms, so the features do not
//! depend on where the detector put its fiducial point.
//!
//! Where they were chosen: a study on the CinC 2017 records outside `af-cnn`'s held-out
//! part, out of fold (`models/af-cnn/MODEL_CARD.md`, "Atrial activity beside the
//! waveform").

use crate::filter::{run_chain, Biquad, BUTTERWORTH_Q};

/// Values per window of [`atrial_features`].
pub const ATRIAL_FEATURES: usize = 6;

/// Names of the [`atrial_features`] values, in order.
pub const ATRIAL_FEATURE_NAMES: [&str; ATRIAL_FEATURES] = [
    "ln_p_amp", "p_sync", "p_corr", "p_share", "pr_sd", "ln_f_tq",
];

/// Floor inside the two logarithms.
const LN_FLOOR: f64 = 1e-3;

/// The values of a window without P-wave evidence: no template, no sync, no
/// consistency, no share, the spread of random positions, no f-wave energy.
pub const FALLBACK: [f32; ATRIAL_FEATURES] = [-6.907_755, 0.0, 0.0, 0.0, 0.289, -6.907_755];

/// Fewest beats a window needs (three RR intervals).
const MIN_BEATS: usize = 4;
/// Fewest usable P regions for the P-wave values.
const MIN_P_REGIONS: usize = 3;
/// Shortest signal judged (s).
const MIN_SIGNAL_S: f64 = 3.0;
/// The P region ends this long before the R peak (s).
const P_END_S: f64 = 0.064;
/// P region length: this share of the median RR, less [`P_END_S`], within the limits.
const P_SHARE_OF_RR: f64 = 0.45;
const P_MIN_S: f64 = 0.08;
const P_MAX_S: f64 = 0.24;
/// A beat after an RR interval shorter than this share of the median is premature.
const PREMATURE: f64 = 0.8;
/// Half width of the QRS amplitude's span around the R peak (s).
const QRS_HALF_S: f64 = 0.048;
/// Beat times move to the largest |signal| within this (s).
const REFINE_S: f64 = 0.064;
/// Beats closer than this after refinement are one (s).
const REFRACTORY_S: f64 = 0.2;
/// T wave end after the R peak: this × √RR (s), Bazett-like.
const T_END_PER_SQRT_RR: f64 = 0.42;
/// Shortest TQ stretch used (s).
const MIN_TQ_S: f64 = 0.064;
/// Correlation at which a beat's P region counts as template-like.
const P_LIKE: f64 = 0.5;
/// Padding of the zero-phase filters (s).
const PAD_S: f64 = 0.5;
/// Highest low-pass corner, as a share of the sampling rate.
const MAX_CORNER_OF_FS: f64 = 0.45;

/// The six atrial-activity values of one window: `x` the raw lead (mV) at `fs` Hz,
/// `beats_s` the times of its beats from its first sample (s), in ascending order (a
/// beat not after the one before, by more than 0.2 s once refined, is dropped).
/// Trailing zeros (the padding of a record shorter than the window) are not signal.
pub fn atrial_features(x: &[f32], fs: f64, beats_s: &[f32]) -> [f32; ATRIAL_FEATURES] {
    let n = x.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
    if (n as f64) < MIN_SIGNAL_S * fs || beats_s.len() < MIN_BEATS {
        return FALLBACK;
    }
    let sec = |s: f64| (s * fs).round() as usize;
    let x0 = centred(&x[..n]);
    let a = zero_phase(&x0, 1.0, 25.0, fs);
    let r = refined_beats(&a, fs, beats_s);
    if r.len() < MIN_BEATS {
        return FALLBACK;
    }
    let h = sec(QRS_HALF_S);
    let amp = median(
        r.iter()
            .map(|&k| {
                let s = &a[k.saturating_sub(h)..(k + h + 1).min(n)];
                max(s) - min(s)
            })
            .collect(),
    );
    if amp <= 1e-6 {
        return FALLBACK;
    }
    let rr: Vec<usize> = r.windows(2).map(|p| p[1] - p[0]).collect();
    let med = median(rr.iter().map(|&v| v as f64).collect());
    let off = sec(P_END_S);
    let len = ((P_SHARE_OF_RR * med).round() as usize)
        .saturating_sub(off)
        .clamp(sec(P_MIN_S), sec(P_MAX_S));

    // f waves: the 4-9 Hz band between each T wave's end and the next QRS.
    let b = zero_phase(&x0, 4.0, 9.0, fs);
    let (mut sq, mut count) = (0.0, 0usize);
    for (i, &d) in rr.iter().enumerate() {
        let start = r[i] + sec(T_END_PER_SQRT_RR * (d as f64 / fs).sqrt());
        let end = r[i + 1].saturating_sub(off);
        if end >= start + sec(MIN_TQ_S) {
            sq += b[start..end].iter().map(|v| v * v).sum::<f64>();
            count += end - start;
        }
    }
    let f_tq = if count > 0 {
        (sq / count as f64).sqrt() / amp
    } else {
        0.0
    };
    let ln_f_tq = (f_tq + LN_FLOOR).ln() as f32;

    // P regions of the beats after a not-premature interval, each detrended.
    let regions: Vec<Vec<f64>> = (1..r.len())
        .filter(|&i| rr[i - 1] as f64 >= PREMATURE * med && r[i] >= off + len)
        .map(|i| detrended(&a[r[i] - off - len..r[i] - off]))
        .collect();
    let m = regions.len();
    if m < MIN_P_REGIONS {
        let mut out = FALLBACK;
        out[5] = ln_f_tq;
        return out;
    }
    let mf = m as f64;
    let template: Vec<f64> = (0..len)
        .map(|t| regions.iter().map(|s| s[t]).sum::<f64>() / mf)
        .collect();
    let e_t = mean_square(&template);
    let e_b = regions.iter().map(|s| mean_square(s)).sum::<f64>() / mf;
    if e_b <= 0.0 {
        // Perfectly flat P regions: no P-wave evidence either (not a "consistent" one).
        let mut out = FALLBACK;
        out[5] = ln_f_tq;
        return out;
    }
    let p_amp = e_t.sqrt() / amp;
    let p_sync = (mf * e_t / e_b - 1.0) / (mf - 1.0);
    let corr: Vec<f64> = regions
        .iter()
        .map(|s| {
            let others: Vec<f64> = template
                .iter()
                .zip(s)
                .map(|(t, v)| (mf * t - v) / (mf - 1.0))
                .collect();
            pearson(s, &others)
        })
        .collect();
    let p_corr = corr.iter().sum::<f64>() / mf;
    let p_share = corr.iter().filter(|&&c| c >= P_LIKE).count() as f64 / rr.len() as f64;
    // The template's largest deflection gives the P wave's sign; each beat's peak of
    // that sign is its P wave's position.
    let sign = if template[argmax(template.iter().map(|v| v.abs()))] >= 0.0 {
        1.0
    } else {
        -1.0
    };
    let pos: Vec<f64> = regions
        .iter()
        .map(|s| argmax(s.iter().map(|v| sign * v)) as f64)
        .collect();
    let pos_mean = pos.iter().sum::<f64>() / mf;
    let pr_sd = (pos.iter().map(|p| (p - pos_mean).powi(2)).sum::<f64>() / mf).sqrt() / len as f64;
    [
        (p_amp + LN_FLOOR).ln() as f32,
        p_sync as f32,
        p_corr as f32,
        p_share as f32,
        pr_sd as f32,
        ln_f_tq,
    ]
}

/// The beats as sample indices, each moved to the largest |a| within [`REFINE_S`];
/// one that lands within [`REFRACTORY_S`] of the one before is dropped.
fn refined_beats(a: &[f64], fs: f64, beats_s: &[f32]) -> Vec<usize> {
    let n = a.len();
    let w = (REFINE_S * fs).round() as usize;
    let refractory = (REFRACTORY_S * fs).round() as usize;
    let mut out: Vec<usize> = Vec::with_capacity(beats_s.len());
    for &t in beats_s {
        let k = (f64::from(t) * fs).round();
        if !(0.0..n as f64).contains(&k) {
            continue;
        }
        let k = k as usize;
        let lo = k.saturating_sub(w);
        let hi = (k + w + 1).min(n);
        let r = lo + argmax(a[lo..hi].iter().map(|v| v.abs()));
        if out.last().is_none_or(|&p| r > p + refractory) {
            out.push(r);
        }
    }
    out
}

/// `x` less its median, in f64.
fn centred(x: &[f32]) -> Vec<f64> {
    let m = median(x.iter().map(|&v| f64::from(v)).collect());
    x.iter().map(|&v| f64::from(v) - m).collect()
}

/// Band-pass `lo`-`hi` Hz (a second-order Butterworth high-pass and low-pass), run
/// forward and then backward (zero phase) over `x` extended at both ends by its odd
/// reflection ([`PAD_S`]), from rest. The low-pass corner stays below 0.45 × `fs` (at
/// low rates the 25 Hz corner would sit at Nyquist, where the section is unstable).
fn zero_phase(x: &[f64], lo: f64, hi: f64, fs: f64) -> Vec<f64> {
    let hi = hi.min(MAX_CORNER_OF_FS * fs);
    let n = x.len();
    let p = ((PAD_S * fs).round() as usize).min(n.saturating_sub(1));
    let mut ext = Vec::with_capacity(n + 2 * p);
    ext.extend((1..=p).rev().map(|i| 2.0 * x[0] - x[i]));
    ext.extend_from_slice(x);
    ext.extend((1..=p).map(|i| 2.0 * x[n - 1] - x[n - 1 - i]));
    let pass = |v: &mut Vec<f64>| {
        let mut chain = [
            Biquad::high_pass(lo, fs, BUTTERWORTH_Q),
            Biquad::low_pass(hi, fs, BUTTERWORTH_Q),
        ];
        for s in v.iter_mut() {
            *s = run_chain(&mut chain, *s);
        }
    };
    pass(&mut ext);
    ext.reverse();
    pass(&mut ext);
    ext.reverse();
    ext[p..p + n].to_vec()
}

/// `s` less its least-squares line.
fn detrended(s: &[f64]) -> Vec<f64> {
    let len = s.len() as f64;
    let centre = (len - 1.0) / 2.0;
    let mean = s.iter().sum::<f64>() / len;
    let (num, den) = s.iter().enumerate().fold((0.0, 0.0), |(nu, de), (i, v)| {
        let t = i as f64 - centre;
        (nu + v * t, de + t * t)
    });
    let slope = if den > 0.0 { num / den } else { 0.0 };
    s.iter()
        .enumerate()
        .map(|(i, v)| v - mean - slope * (i as f64 - centre))
        .collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let len = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / len, b.iter().sum::<f64>() / len);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    let den = (aa * bb).sqrt();
    if den > 0.0 {
        ab / den
    } else {
        0.0
    }
}

fn mean_square(s: &[f64]) -> f64 {
    s.iter().map(|v| v * v).sum::<f64>() / s.len() as f64
}

/// Index of the first largest value (0 for none).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn max(s: &[f64]) -> f64 {
    s.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn min(s: &[f64]) -> f64 {
    s.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Median (the mean of the two middle values for an even count; 0 for none), by
/// selection rather than a full sort.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let k = v.len() / 2;
    let mid = *v.select_nth_unstable_by(k, f64::total_cmp).1;
    if v.len() % 2 == 1 {
        mid
    } else {
        // Below the k-th value after the selection: the largest is the other middle.
        let lower = v[..k].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + mid) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: f64 = 125.0;

    /// A synthetic 30 s lead: QRS spikes at `beats` (s), each with a P wave 160 ms
    /// before it when `p_waves`, else 6 Hz "fibrillatory" waves throughout; a little
    /// deterministic noise.
    fn lead(beats: &[f64], p_waves: bool) -> Vec<f32> {
        let n = (30.0 * FS) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / FS;
                let mut v = 0.0;
                for &b in beats {
                    let d = t - b;
                    v += 1.2 * (-(d / 0.012).powi(2)).exp();
                    if p_waves {
                        v += 0.12 * (-((d + 0.16) / 0.025).powi(2)).exp();
                    }
                }
                if !p_waves {
                    v += 0.06 * (2.0 * std::f64::consts::PI * 6.1 * t + (0.3 * t).sin()).sin();
                }
                v += 0.004 * ((i * 7919 % 101) as f64 / 50.0 - 1.0);
                v as f32
            })
            .collect()
    }

    fn regular(rr: f64) -> Vec<f64> {
        (0..)
            .map(|k| 0.4 + k as f64 * rr)
            .take_while(|&t| t < 29.6)
            .collect()
    }

    /// Irregular beats, deterministic: RR 0.45-1.05 s.
    fn irregular() -> Vec<f64> {
        let mut t = 0.4;
        let mut out = Vec::new();
        let mut k = 1u64;
        while t < 29.6 {
            out.push(t);
            k = k * 48271 % 2_147_483_647;
            t += 0.45 + 0.6 * (k % 1000) as f64 / 1000.0;
        }
        out
    }

    fn times(b: &[f64]) -> Vec<f32> {
        b.iter().map(|&t| t as f32).collect()
    }

    /// The lowest rate a manifest allows (50 Hz, where the 25 Hz corner would be at
    /// Nyquist) and a high one give finite values that still tell P waves from f waves.
    #[test]
    fn low_and_high_rates_give_finite_values() {
        let sinus = regular(0.8);
        let af = irregular();
        for fs in [50.0, 1000.0] {
            let at = |beats: &[f64], p: bool| {
                let x = lead(beats, p);
                // Resample the 125 Hz synthetic lead by linear interpolation.
                let n = (30.0 * fs) as usize;
                let y: Vec<f32> = (0..n)
                    .map(|i| {
                        let t = i as f64 * FS / fs;
                        let k = (t.floor() as usize).min(x.len() - 2);
                        let w = (t - k as f64) as f32;
                        x[k] * (1.0 - w) + x[k + 1] * w
                    })
                    .collect();
                atrial_features(&y, fs, &times(beats))
            };
            let (p, f) = (at(&sinus, true), at(&af, false));
            assert!(
                p.iter().chain(&f).all(|v| v.is_finite()),
                "{fs} Hz: {p:?} {f:?}"
            );
            assert!(p[1] > f[1] + 0.3, "{fs} Hz p_sync: {p:?} vs {f:?}");
        }
    }

    #[test]
    fn the_median_by_selection_is_the_sorted_one() {
        let mut k = 7u64;
        for n in [1usize, 2, 3, 4, 5, 10, 11, 100, 3750] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    k = k * 48271 % 2_147_483_647;
                    (k % 1000) as f64 / 7.0
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let want = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            assert_eq!(median(v), want, "n = {n}");
        }
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn sinus_p_waves_and_fibrillatory_waves_are_told_apart() {
        let sinus = regular(0.8);
        let af = irregular();
        let p = atrial_features(&lead(&sinus, true), FS, &times(&sinus));
        let f = atrial_features(&lead(&af, false), FS, &times(&af));
        // The P wave survives averaging; the f waves do not.
        assert!(p[1] > 0.9, "p_sync with P waves {p:?}");
        assert!(f[1] < 0.3, "p_sync with f waves {f:?}");
        assert!(p[0] > f[0] + 0.5, "ln_p_amp {p:?} vs {f:?}");
        assert!(p[2] > 0.9 && f[2] < 0.5, "p_corr {p:?} vs {f:?}");
        assert!(p[3] > 0.9, "p_share {p:?}");
        assert!(p[4] < 0.1, "pr_sd {p:?}");
        // Atrial-band energy in the TQ stretches: the f waves (and, in sinus rhythm,
        // the P wave, which lies there too).
        assert!(f[5] > -4.0 && p[5] > -4.0, "ln_f_tq {p:?} vs {f:?}");
        let flat: Vec<f32> = lead(&sinus, false)
            .iter()
            .zip(lead(&[], false))
            .map(|(a, b)| a - b)
            .collect();
        let q = atrial_features(&flat, FS, &times(&sinus));
        // (The zero-phase band-pass smears each QRS over ±0.1 s, so the stretch, which
        // ends 64 ms before the next R, is never free of it: the margin is modest.)
        assert!(q[5] < f[5] - 0.3, "no atrial waves: ln_f_tq {q:?} vs {f:?}");
    }

    #[test]
    fn a_dc_offset_and_a_gain_change_nothing() {
        let beats = irregular();
        let x = lead(&beats, true);
        let base = atrial_features(&x, FS, &times(&beats));
        for (offset, gain) in [(0.7f32, 1.0f32), (-1.0, 1.0), (0.0, 3.0), (0.0, 0.3)] {
            let y: Vec<f32> = x.iter().map(|v| v * gain + offset).collect();
            let got = atrial_features(&y, FS, &times(&beats));
            for (g, b) in got.iter().zip(&base) {
                assert!(
                    (g - b).abs() < 1e-3,
                    "offset {offset} gain {gain}: {got:?} vs {base:?}"
                );
            }
        }
    }

    #[test]
    fn beat_times_off_by_a_few_samples_are_refined() {
        let beats = regular(0.9);
        let x = lead(&beats, true);
        let exact = atrial_features(&x, FS, &times(&beats));
        let late: Vec<f32> = beats.iter().map(|&t| (t + 0.03) as f32).collect();
        assert_eq!(atrial_features(&x, FS, &late), exact);
    }

    #[test]
    fn too_little_to_judge_gives_the_fallback() {
        let beats = regular(0.8);
        let x = lead(&beats, true);
        assert_eq!(atrial_features(&x, FS, &times(&beats[..3])), FALLBACK);
        assert_eq!(atrial_features(&[0.0; 3750], FS, &times(&beats)), FALLBACK);
        // 2.5 s of signal, then the zero padding of a short record.
        let mut short = x.clone();
        short[(2.5 * FS) as usize..].fill(0.0);
        assert_eq!(atrial_features(&short, FS, &times(&beats)), FALLBACK);
        // Beats outside the signal are ignored.
        let outside: Vec<f32> = (0..10).map(|k| 40.0 + k as f32).collect();
        assert_eq!(atrial_features(&x, FS, &outside), FALLBACK);
        assert!(
            (f64::from(FALLBACK[0]) - LN_FLOOR.ln()).abs() < 1e-6 && FALLBACK[5] == FALLBACK[0],
            "the fallback's logarithms are of 0"
        );
    }

    #[test]
    fn premature_beats_have_no_p_region_of_their_own() {
        // Every third beat 0.45 s early (a premature beat with its own P wave).
        let mut beats = Vec::new();
        let mut t = 0.4;
        let mut k = 0;
        while t < 29.6 {
            beats.push(t);
            t += if k % 3 == 2 { 0.45 } else { 0.85 };
            k += 1;
        }
        let f = atrial_features(&lead(&beats, true), FS, &times(&beats));
        // The premature beats' P regions are not judged, so at most 2/3 of the
        // intervals count as having a P wave; the others' P waves are all alike.
        assert!(f[3] <= 0.7 && f[3] > 0.5, "p_share {f:?}");
        assert!(f[1] > 0.9, "p_sync {f:?}");
    }
}

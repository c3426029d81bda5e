//! Rhythm analysis from beat times: RR series, heart rate, SDNN, RMSSD and
//! atrial-fibrillation (AF) irregularity features.
//!
//! All functions take RR intervals in seconds and never panic; with too few
//! intervals they return 0 (documented per function).

use serde::{Deserialize, Serialize};

/// Length of the [`af_features`] vector. Stable: the AF model's input contract.
pub const AF_FEATURES: usize = 8;

/// Names of the [`af_features`] entries, in order.
pub const AF_FEATURE_NAMES: [&str; AF_FEATURES] = [
    "mean_rr_s",
    "nrmssd",
    "cv",
    "nmad_drr",
    "frac_dev20",
    "tpr",
    "sd1_sd2",
    "cosen",
];

/// RR intervals (s) between consecutive beats at sample indices `beats`.
pub fn rr_intervals(beats: &[u64], fs: f64) -> Vec<f32> {
    beats
        .windows(2)
        .map(|w| (w[1].saturating_sub(w[0]) as f64 / fs) as f32)
        .collect()
}

fn mean(x: &[f32]) -> f32 {
    if x.is_empty() {
        0.0
    } else {
        x.iter().map(|&v| f64::from(v)).sum::<f64>() as f32 / x.len() as f32
    }
}

fn median(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let mut s = x.to_vec();
    s.sort_unstable_by(f32::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// Mean heart rate (bpm) = 60 / mean RR; 0 without intervals.
pub fn heart_rate_bpm(rr_s: &[f32]) -> f32 {
    let m = mean(rr_s);
    if m > 0.0 {
        60.0 / m
    } else {
        0.0
    }
}

/// Standard deviation of the RR intervals (s, population); 0 with fewer than 2.
pub fn sdnn(rr_s: &[f32]) -> f32 {
    if rr_s.len() < 2 {
        return 0.0;
    }
    let m = mean(rr_s);
    let v = rr_s.iter().map(|&r| (r - m) * (r - m)).sum::<f32>() / rr_s.len() as f32;
    v.sqrt()
}

/// Root mean square of successive RR differences (s); 0 with fewer than 2.
pub fn rmssd(rr_s: &[f32]) -> f32 {
    if rr_s.len() < 2 {
        return 0.0;
    }
    let s: f32 = rr_s.windows(2).map(|w| (w[1] - w[0]) * (w[1] - w[0])).sum();
    (s / (rr_s.len() - 1) as f32).sqrt()
}

/// Robust irregularity: median |ΔRR| / median RR. Sinus rhythm (also with sinus
/// arrhythmia or isolated ectopic beats, which spoil at most 2–3 differences) stays
/// below ≈0.05; AF is typically 0.1–0.3. 0 with fewer than 2 intervals.
pub fn irregularity(rr_s: &[f32]) -> f32 {
    if rr_s.len() < 2 {
        return 0.0;
    }
    let d: Vec<f32> = rr_s.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let m = median(rr_s);
    if m > 0.0 {
        median(&d) / m
    } else {
        0.0
    }
}

/// Tolerance r (s) of the sample entropy in [`af_features`] (Lake & Moorman 2011).
pub const COSEN_R_S: f32 = 0.03;

/// AF feature vector of an RR series (s). Stable contract for the AF model:
///
/// 0. `mean_rr_s`: mean RR (s).
/// 1. `nrmssd`: RMSSD / mean RR.
/// 2. `cv`: SDNN / mean RR.
/// 3. `nmad_drr`: median |ΔRR| / median RR ([`irregularity`]; robust to ectopics).
/// 4. `frac_dev20`: fraction of intervals more than 20 % away from the median RR
///    (an isolated ectopic moves 2 of them; AF moves many).
/// 5. `tpr`: turning-point ratio, local extrema of the RR series / (n − 2) (≈ 2/3
///    for a random series, lower for smooth sinus arrhythmia).
/// 6. `sd1_sd2`: Poincaré SD1/SD2 ratio (≈1 for AF, < 0.5 for sinus rhythm).
/// 7. `cosen`: coefficient of sample entropy, `SampEn(m=1, r=30 ms) + ln(2r) −
///    ln(mean RR)`, with SampEn = ln((B + 1)/(A + 1)) (B, A: template matches of
///    length 1 and 2, +1 so it is defined for short series).
///
/// With fewer than 2 intervals every entry is 0; entries needing more (tpr needs
/// 3) are 0 when undefined. Non-finite or non-positive intervals are ignored.
pub fn af_features(rr_s: &[f32]) -> [f32; AF_FEATURES] {
    let rr: Vec<f32> = rr_s
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let mut f = [0.0f32; AF_FEATURES];
    if rr.len() < 2 {
        return f;
    }
    let m = mean(&rr);
    let med = median(&rr);
    f[0] = m;
    f[1] = rmssd(&rr) / m;
    f[2] = sdnn(&rr) / m;
    f[3] = irregularity(&rr);
    f[4] = rr.iter().filter(|&&r| (r - med).abs() > 0.2 * med).count() as f32 / rr.len() as f32;
    if rr.len() >= 3 {
        let tp = rr
            .windows(3)
            .filter(|w| (w[1] > w[0] && w[1] > w[2]) || (w[1] < w[0] && w[1] < w[2]))
            .count();
        f[5] = tp as f32 / (rr.len() - 2) as f32;
    }
    // Poincaré: SD1² = var(ΔRR)/2, SD2² = 2 SDNN² − SD1².
    let d: Vec<f32> = rr.windows(2).map(|w| w[1] - w[0]).collect();
    let dm = mean(&d);
    let var_d = d.iter().map(|&v| (v - dm) * (v - dm)).sum::<f32>() / d.len() as f32;
    let sd1sq = var_d / 2.0;
    let s = sdnn(&rr);
    let sd2sq = (2.0 * s * s - sd1sq).max(0.0);
    f[6] = if sd2sq > 1e-12 {
        (sd1sq / sd2sq).sqrt()
    } else if sd1sq > 1e-12 {
        10.0
    } else {
        0.0
    };
    // Sample entropy, m = 1, r = 30 ms.
    let (mut a, mut b) = (0u32, 0u32);
    let n = rr.len();
    for i in 0..n - 1 {
        for j in (i + 1)..n - 1 {
            if (rr[i] - rr[j]).abs() <= COSEN_R_S {
                b += 1;
                if (rr[i + 1] - rr[j + 1]).abs() <= COSEN_R_S {
                    a += 1;
                }
            }
        }
    }
    let sampen = ((f64::from(b) + 1.0) / (f64::from(a) + 1.0)).ln() as f32;
    f[7] = sampen + (2.0 * COSEN_R_S).ln() - m.ln();
    f
}

/// Thresholds of the [`rr_irregular`] rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrregularityThresholds {
    /// Fewest RR intervals needed to call a rhythm irregular.
    pub min_intervals: usize,
    /// Smallest median |ΔRR| / median RR ([`irregularity`]) for an irregular rhythm.
    pub min_nmad_drr: f32,
    /// Smallest RMSSD / mean RR for an irregular rhythm.
    pub min_nrmssd: f32,
    /// Smallest turning-point ratio (rejects smooth, slowly varying rhythms).
    pub min_tpr: f32,
    /// Prematurity (fraction of the median RR) that marks a beat as ectopic when it
    /// is followed by a compensatory pause; the two intervals around such beats are
    /// left out before the rule is applied, so frequent isolated PVCs or PACs in an
    /// otherwise regular rhythm do not look like AF. 0 turns the filter off.
    pub ectopic_prematurity: f32,
}

impl Default for IrregularityThresholds {
    fn default() -> Self {
        Self {
            min_intervals: 6,
            min_nmad_drr: 0.08,
            min_nrmssd: 0.10,
            min_tpr: 0.35,
            ectopic_prematurity: 0.15,
        }
    }
}

/// Irregularly irregular RR series (AF-like) under the default thresholds.
pub fn rr_irregular(rr_s: &[f32]) -> bool {
    rr_irregular_with(rr_s, &IrregularityThresholds::default())
}

/// Irregularly irregular RR series: after leaving out the intervals around
/// premature beats ([`without_ectopic_pairs`]), at least `min_intervals` intervals and
/// median-based irregularity, normalised RMSSD and turning-point ratio all at or
/// above their thresholds.
pub fn rr_irregular_with(rr_s: &[f32], t: &IrregularityThresholds) -> bool {
    let rr: Vec<f32> = rr_s
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let rr = without_ectopic_pairs(&rr, t.ectopic_prematurity);
    if rr.len() < t.min_intervals.max(2) {
        return false;
    }
    let f = af_features(&rr);
    f[3] >= t.min_nmad_drr && f[1] >= t.min_nrmssd && f[5] >= t.min_tpr
}

/// The RR series without the coupling and compensatory intervals of premature
/// beats: an interval shorter than `(1 − p)` × median followed by one longer than
/// `(1 + p)` × median. Returns the series unchanged when `p` is 0.
pub fn without_ectopic_pairs(rr: &[f32], p: f32) -> Vec<f32> {
    if p <= 0.0 || rr.len() < 3 {
        return rr.to_vec();
    }
    let med = median(rr);
    let mut keep = vec![true; rr.len()];
    for i in 0..rr.len() - 1 {
        if rr[i] < (1.0 - p) * med && rr[i + 1] > (1.0 + p) * med {
            keep[i] = false;
            keep[i + 1] = false;
        }
    }
    rr.iter()
        .zip(keep)
        .filter_map(|(&r, k)| k.then_some(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_isolated_pvcs_are_not_af() {
        // 75 bpm with a PVC every fourth beat: coupling 0.5 s, compensatory 1.1 s.
        let mut rr = Vec::new();
        for i in 0..40 {
            if i % 4 == 3 {
                rr.extend([0.5, 1.1]);
            } else {
                rr.push(0.8 + 0.01 * ((i % 3) as f32 - 1.0));
            }
        }
        let off = IrregularityThresholds {
            ectopic_prematurity: 0.0,
            ..IrregularityThresholds::default()
        };
        assert!(
            rr_irregular_with(&rr, &off),
            "without the filter PVCs look irregular"
        );
        assert!(!rr_irregular(&rr), "with it they do not");
        assert_eq!(without_ectopic_pairs(&rr, 0.15).len(), rr.len() - 20);
    }
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn sinus(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        // 70 bpm with respiratory sinus arrhythmia (±5 %, 4 s period) and jitter.
        let mut t = 0.0f32;
        (0..n)
            .map(|_| {
                let rr = 0.857 * (1.0 + 0.05 * (2.0 * std::f32::consts::PI * t / 4.0).sin())
                    + rng.random_range(-0.01..0.01);
                t += rr;
                rr
            })
            .collect()
    }

    #[test]
    fn basic_statistics() {
        let rr = [1.0, 1.0, 1.0, 1.0];
        assert_eq!(heart_rate_bpm(&rr), 60.0);
        assert_eq!(sdnn(&rr), 0.0);
        assert_eq!(rmssd(&rr), 0.0);
        assert!((rmssd(&[0.8, 1.0, 0.8]) - 0.2).abs() < 1e-6);
        assert!((sdnn(&[0.9, 1.1]) - 0.1).abs() < 1e-6);
        assert_eq!(rr_intervals(&[0, 360, 720], 360.0), vec![1.0, 1.0]);
        assert_eq!(af_features(&[]), [0.0; AF_FEATURES]);
        assert_eq!(af_features(&[1.0]), [0.0; AF_FEATURES]);
        assert!(af_features(&[1.0, f32::NAN, 1.0, 1.0])
            .iter()
            .all(|v| v.is_finite()));
    }

    #[test]
    fn af_is_irregular_and_sinus_with_ectopics_is_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let s = sinus(12, &mut rng);
            assert!(!rr_irregular(&s), "sinus {s:?}");
            // One premature beat with compensatory pause.
            let mut e = s.clone();
            e[5] *= 0.6;
            e[6] *= 1.4;
            assert!(!rr_irregular(&e), "ectopic {e:?}");
            // AF: independent intervals, mean 0.7 s, ±35 %.
            let af: Vec<f32> = (0..14)
                .map(|_| 0.7 * rng.random_range(0.65..1.35))
                .collect();
            let fa = af_features(&af);
            let fs = af_features(&s);
            assert!(fa[3] > fs[3] && fa[4] >= fs[4]);
            let _ = af_features(&e);
        }
        let mut hits = 0;
        for _ in 0..200 {
            let af: Vec<f32> = (0..14)
                .map(|_| 0.7 * rng.random_range(0.65..1.35))
                .collect();
            hits += usize::from(rr_irregular(&af));
        }
        assert!(hits > 180, "{hits}/200 AF series flagged");
        assert!(!rr_irregular(&[0.5, 1.0, 0.5]), "too few intervals");
    }
}

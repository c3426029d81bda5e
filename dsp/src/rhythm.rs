//! Rhythm analysis from beat times: RR series, heart rate, SDNN, RMSSD and
//! atrial-fibrillation (AF) irregularity features.
//!
//! All functions take RR intervals in seconds and never panic; with too few
//! intervals they return 0 (documented per function).

use std::collections::VecDeque;

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

/// Median of `x` (the mean of the middle two for an even count); 0 when empty.
pub fn median(x: &[f32]) -> f32 {
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

/// Normal-to-normal intervals the PVC classifier's reference RR is the median of.
const REF_RR_LEN: usize = 8;

/// Most beats [`PvcConfig::learn_beats`] may ask for (each is compared with every
/// other).
pub const MAX_LEARN_BEATS: usize = 32;

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
    /// Smallest [`alternation_ratio`] (median |RR(n) − RR(n−2)| over median
    /// |RR(n) − RR(n−1)|) for an irregular rhythm. Independent intervals, as in AF,
    /// give about 1; a rhythm that alternates — bigeminy, a ventricular tachycardia
    /// whose intervals alternate short and long — has every other interval nearly
    /// equal and gives near 0: it is irregular, but regularly so, and not AF.
    /// 0 turns the test off.
    pub min_alternation_ratio: f32,
}

impl Default for IrregularityThresholds {
    fn default() -> Self {
        Self {
            min_intervals: 6,
            min_nmad_drr: 0.08,
            min_nrmssd: 0.10,
            min_tpr: 0.35,
            ectopic_prematurity: 0.15,
            // Chosen on the CinC 2017 train split (30 s windows every 10 s, lead 0's
            // streamed beats; `eval/examples/rr_pattern.rs`): of the windows of AF
            // records the rule calls irregular, 0.15 / 0.2 / 0.25 / 0.3 keep 98.7 /
            // 98.3 / 97.9 / 97.5 %; 0.2 is the largest that keeps 98 %. Independent
            // intervals (uniform ±35 %, simulated) fall below 0.2 by chance in about
            // 2 % of series of 6 (the rule's minimum), 0.6 % of series of 10 (a 10 s
            // rhythm window) and 0.02 % of series of 20.
            min_alternation_ratio: 0.2,
        }
    }
}

/// Irregularly irregular RR series (AF-like) under the default thresholds.
pub fn rr_irregular(rr_s: &[f32]) -> bool {
    rr_irregular_with(rr_s, &IrregularityThresholds::default())
}

/// Irregularly irregular RR series: after leaving out the intervals around
/// premature beats ([`without_ectopic_pairs`]), at least `min_intervals` intervals and
/// median-based irregularity, normalised RMSSD, turning-point ratio and
/// [`alternation_ratio`] all at or above their thresholds.
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
    f[3] >= t.min_nmad_drr
        && f[1] >= t.min_nrmssd
        && f[5] >= t.min_tpr
        && (t.min_alternation_ratio <= 0.0 || alternation_ratio(&rr) >= t.min_alternation_ratio)
}

/// Median |RR(n) − RR(n−2)| over median |RR(n) − RR(n−1)|: about 1 for independent
/// intervals (AF), near 0 for a series that alternates between two lengths
/// (bigeminy, alternating runs), whose every other interval is nearly the same.
/// 1 when there are fewer than three intervals or the median successive difference
/// is 0. Expects finite, positive intervals (as [`rr_irregular_with`] passes them).
pub fn alternation_ratio(rr: &[f32]) -> f32 {
    if rr.len() < 3 {
        return 1.0;
    }
    let d1 = median_lag_difference(rr, 1);
    if d1.is_nan() || d1 <= 0.0 {
        return 1.0;
    }
    median_lag_difference(rr, 2) / d1
}

/// Median |RR(n) − RR(n−k)| over the series (0 when it has no pair `k` apart).
pub fn median_lag_difference(rr: &[f32], k: usize) -> f32 {
    let d: Vec<f32> = rr.windows(k + 1).map(|w| (w[k] - w[0]).abs()).collect();
    median(&d)
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

/// Settings of the PVC (premature ventricular contraction) detector
/// [`PvcClassifier`] and of the frequent-PVC call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PvcConfig {
    /// Beat segment before the beat's fiducial point (ms).
    pub pre_ms: f32,
    /// Beat segment after the fiducial point (ms).
    pub post_ms: f32,
    /// Largest alignment shift searched when comparing a beat with the template (ms).
    pub max_lag_ms: f32,
    /// A beat whose best correlation with the running normal-beat template is below
    /// this has a different morphology.
    pub max_corr: f32,
    /// Below this correlation a beat differs so much that it is a PVC even without
    /// being premature, if it is also wide.
    pub max_corr_not_premature: f32,
    /// A beat is premature when its RR interval is shorter than `(1 − prematurity)`
    /// times the reference RR (median of the last 8 normal-to-normal intervals).
    pub prematurity: f32,
    /// A beat is wide when its share of 5–15 Hz energy is below this fraction of the
    /// template's.
    pub wide_ratio: f32,
    /// Correlation above which a normal beat updates the template.
    pub template_update_corr: f32,
    /// After this many consecutive beats unlike the template, the template restarts
    /// from the latest beat (the dominant morphology changed).
    pub relearn_after: usize,
    /// A stream's first template is the beat, among its first this many, most like
    /// the others (their medoid), and its reference RR the intervals between those
    /// of them like it; until then every beat counts as normal. A stream often opens
    /// on an artefact (electrodes settling, fingers finding a handheld's pads), and a
    /// template learnt from it calls every true beat after it a PVC until it gives
    /// way. 1: the first beat; at most 32. A stream that opens in bigeminy (V N V N V)
    /// can take a PVC for its first template, as the first-beat rule could.
    pub learn_beats: usize,
    /// Frequent PVCs: at least this many PVCs per minute over the last `span_s`.
    pub frequent_per_min: f32,
    /// Look-back of the frequent-PVC rate (s).
    pub span_s: f32,
    /// Fewest PVCs in the look-back for a frequent-PVC call.
    pub min_count: usize,
}

impl Default for PvcConfig {
    fn default() -> Self {
        Self {
            pre_ms: 100.0,
            post_ms: 150.0,
            max_lag_ms: 40.0,
            max_corr: 0.8,
            max_corr_not_premature: 0.5,
            prematurity: 0.1,
            wide_ratio: 0.7,
            template_update_corr: 0.9,
            relearn_after: 4,
            learn_beats: 5,
            frequent_per_min: 6.0,
            span_s: 60.0,
            min_count: 3,
        }
    }
}

/// What [`PvcClassifier::classify`] found about one beat.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BeatMorphology {
    /// Best correlation with the template (1 when there is no template yet).
    pub corr: f32,
    /// RR before the beat over the reference RR (0 when unknown).
    pub rr_ratio: f32,
    /// Share of 5–15 Hz energy relative to the template's (1 = same).
    pub width_ratio: f32,
    /// A wide QRS: `width_ratio` below [`PvcConfig::wide_ratio`] (false with no
    /// template yet).
    pub wide: bool,
    /// Classified as a PVC.
    pub pvc: bool,
}

/// Streaming PVC classifier: compares each beat's filtered-lead segment with a
/// running template of normal beats (best Pearson correlation within ± `max_lag_ms`)
/// and its RR interval with the reference RR. A beat is a PVC when its morphology
/// differs (`corr < max_corr`) and it is premature or wide, or when it differs very
/// much (`corr < max_corr_not_premature`) and is wide. Beats must be given in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PvcClassifier {
    cfg: PvcConfig,
    fs: f64,
    pre: usize,
    post: usize,
    lag: usize,
    template: Vec<f32>,
    tmpl_share: f32,
    candidate: Vec<f32>,
    candidate_share: f32,
    mismatch_run: usize,
    /// Consecutive beats unlike the template, alike each other, each on time against
    /// the interval before it.
    steady_run: usize,
    rr_ref: VecDeque<f32>,
    last_beat: Option<u64>,
    last_normal: bool,
    /// The interval before the last beat, whatever the beats (s).
    last_rr: Option<f32>,
    /// The first beats (`learn_beats`): their sample, their filtered segment with the
    /// alignment margins, their 5–15 Hz share; emptied once the template is learnt.
    learning: Vec<(u64, Vec<f32>, f32)>,
}

fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let ma = a[..n].iter().sum::<f32>() / n as f32;
    let mb = b[..n].iter().sum::<f32>() / n as f32;
    let (mut sab, mut saa, mut sbb) = (0.0f32, 0.0f32, 0.0f32);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa <= 1e-12 || sbb <= 1e-12 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// `max` over `k` in `0..shifts` of `pearson(a, &b[k..k + a.len()])`, each
/// correlation bit-identical to [`pearson`]'s (same operations in the same order),
/// four shifts at a time so that their accumulations overlap.
fn max_pearson(a: &[f32], b: &[f32], shifts: usize) -> f32 {
    let n = a.len();
    let mut best = f32::NEG_INFINITY;
    let mut k = 0;
    if n >= 2 && b.len() + 1 >= n + shifts {
        // The initial value of `Iterator::sum` for f32.
        let zero: f32 = std::iter::empty::<f32>().sum();
        let ma = a.iter().sum::<f32>() / n as f32;
        let mut saa = 0.0f32;
        for &v in a {
            let x = v - ma;
            saa += x * x;
        }
        while k + 4 <= shifts {
            let mut mb = [zero; 4];
            for (j, m) in mb.iter_mut().enumerate() {
                for &v in &b[k + j..k + j + n] {
                    *m += v;
                }
                *m /= n as f32;
            }
            let (mut sab, mut sbb) = ([0.0f32; 4], [0.0f32; 4]);
            for (i, &va) in a.iter().enumerate() {
                let x = va - ma;
                for j in 0..4 {
                    let y = b[k + j + i] - mb[j];
                    sab[j] += x * y;
                    sbb[j] += y * y;
                }
            }
            for j in 0..4 {
                let c = if saa <= 1e-12 || sbb[j] <= 1e-12 {
                    0.0
                } else {
                    sab[j] / (saa * sbb[j]).sqrt()
                };
                best = best.max(c);
            }
            k += 4;
        }
    }
    for k in k..shifts {
        best = best.max(pearson(a, &b[k..k + n]));
    }
    best
}

impl PvcClassifier {
    /// A classifier for `fs` Hz.
    pub fn new(cfg: &PvcConfig, fs: f64) -> Self {
        let s = |ms: f32| ((f64::from(ms) / 1000.0 * fs).round().max(1.0)) as usize;
        Self {
            cfg: cfg.clone(),
            fs,
            pre: s(cfg.pre_ms),
            post: s(cfg.post_ms),
            lag: s(cfg.max_lag_ms),
            template: Vec::new(),
            tmpl_share: 0.0,
            candidate: Vec::new(),
            candidate_share: 0.0,
            mismatch_run: 0,
            steady_run: 0,
            rr_ref: VecDeque::new(),
            last_beat: None,
            last_normal: false,
            last_rr: None,
            learning: Vec::new(),
        }
    }

    /// Heap and inline bytes of this state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<f32>()
                * (self.template.capacity() + self.candidate.capacity() + self.rr_ref.capacity())
            + self
                .learning
                .iter()
                .map(|l| std::mem::size_of_val(l) + 4 * l.1.capacity())
                .sum::<usize>()
    }

    /// Samples needed before the beat (segment plus alignment search).
    pub fn samples_before(&self) -> usize {
        self.pre + self.lag
    }

    /// Samples needed after the beat (segment plus alignment search).
    pub fn samples_after(&self) -> usize {
        self.post + self.lag
    }

    /// A normal-to-normal interval into the reference RR, which keeps the last
    /// [`REF_RR_LEN`].
    fn push_ref(&mut self, rr: f32) {
        if self.rr_ref.len() == REF_RR_LEN {
            self.rr_ref.pop_front();
        }
        self.rr_ref.push_back(rr);
    }

    /// The first template and reference RR from the first `learn_beats` beats (see
    /// [`PvcConfig::learn_beats`]); each beat counts as normal meanwhile. Returns, once
    /// learnt, whether the last of those beats is like the template.
    fn learn(&mut self, beat: u64, padded: &[f32], share: f32) -> Option<bool> {
        self.learning.push((beat, padded.to_vec(), share));
        if self.learning.len() < self.cfg.learn_beats.clamp(1, MAX_LEARN_BEATS) {
            return None;
        }
        let (lag, len) = (self.lag, self.pre + self.post + 1);
        let shifts = 2 * lag + 1;
        let seg = |i: usize| &self.learning[i].1[lag..lag + len];
        let n = self.learning.len();
        // like[i][j]: beat i's segment against beat j, aligned within the lag.
        let like: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| max_pearson(seg(i), &self.learning[j].1, shifts))
                    .collect()
            })
            .collect();
        let medoid = (0..n)
            .max_by(|&a, &b| {
                let sa: f32 = like[a].iter().sum();
                let sb: f32 = like[b].iter().sum();
                sa.total_cmp(&sb).then(b.cmp(&a))
            })
            .unwrap_or(0);
        self.template = seg(medoid).to_vec();
        self.tmpl_share = self.learning[medoid].2;
        let max_corr = self.cfg.max_corr;
        let alike = |i: usize| like[medoid][i] >= max_corr;
        self.rr_ref.clear();
        for i in 1..n {
            if alike(i - 1) && alike(i) {
                let rr = (self.learning[i].0.saturating_sub(self.learning[i - 1].0) as f64
                    / self.fs) as f32;
                self.push_ref(rr);
            }
        }
        let last_alike = alike(n - 1);
        self.learning = Vec::new();
        Some(last_alike)
    }

    /// Classifies the beat at sample `beat`. `filtered` and `qrs_band` hold the
    /// filtered lead and its 5–15 Hz band from `beat − samples_before()` to
    /// `beat + samples_after()` (inclusive); when shorter (signal missing) only the
    /// RR interval is updated and the beat counts as normal.
    pub fn classify(&mut self, beat: u64, filtered: &[f32], qrs_band: &[f32]) -> BeatMorphology {
        let need = self.pre + self.post + 2 * self.lag + 1;
        let rr = self
            .last_beat
            .map(|p| (beat.saturating_sub(p) as f64 / self.fs) as f32);
        let ref_rr = median(&self.rr_ref.iter().copied().collect::<Vec<_>>());
        let rr_ratio = match rr {
            Some(r) if ref_rr > 0.0 => r / ref_rr,
            _ => 0.0,
        };
        let mut m = BeatMorphology {
            corr: 1.0,
            rr_ratio,
            width_ratio: 1.0,
            wide: false,
            pvc: false,
        };
        let mut learnt = None;
        if filtered.len() >= need && qrs_band.len() >= need {
            let len = self.pre + self.post + 1;
            let seg = &filtered[self.lag..self.lag + len];
            let share = {
                let q: f32 = qrs_band[self.lag..self.lag + len]
                    .iter()
                    .map(|v| v * v)
                    .sum();
                let f: f32 = seg.iter().map(|v| v * v).sum();
                if f > 1e-12 {
                    q / f
                } else {
                    0.0
                }
            };
            if self.template.len() == len {
                m.corr = max_pearson(&self.template, filtered, 2 * self.lag + 1);
                m.width_ratio = if self.tmpl_share > 1e-9 {
                    share / self.tmpl_share
                } else {
                    1.0
                };
                let c = &self.cfg;
                let premature = rr_ratio > 0.0 && rr_ratio < 1.0 - c.prematurity;
                m.wide = m.width_ratio < c.wide_ratio;
                m.pvc = (m.corr < c.max_corr && (premature || m.wide))
                    || (m.corr < c.max_corr_not_premature && m.wide);
                if m.corr >= c.template_update_corr {
                    for (t, &v) in self.template.iter_mut().zip(seg) {
                        *t = 0.9 * *t + 0.1 * v;
                    }
                    self.tmpl_share = 0.9 * self.tmpl_share + 0.1 * share;
                }
                if m.corr < c.max_corr {
                    // Relearn when the dominant morphology changed: `relearn_after`
                    // consecutive beats unlike the template but alike each other and
                    // not premature. A run of such beats each on time against the
                    // interval before it but premature against the reference RR is a
                    // faster rhythm (a ventricular run): it stays unlike the template,
                    // unless it lasts three times as long. That also breaks the
                    // deadlock of a template and a reference RR both learnt from
                    // something else (an artefact, a rhythm long gone): the reference
                    // follows normal beats only, so it would never move again.
                    let steady = match (rr, self.last_rr) {
                        (Some(r), Some(before)) => r >= (1.0 - c.prematurity) * before,
                        _ => !premature,
                    };
                    // Aligned as the template comparison is (within the same lag):
                    // unaligned, a beat placed a sample or two off its predecessor
                    // (sharp QRS, ±10 ms placement) rarely reaches the bar, and a
                    // template learnt from an artefact never gave way.
                    let like_last = self.candidate.len() == len
                        && max_pearson(&self.candidate, filtered, 2 * self.lag + 1)
                            >= c.template_update_corr;
                    self.mismatch_run = if like_last && !premature {
                        self.mismatch_run + 1
                    } else {
                        usize::from(!premature)
                    };
                    self.steady_run = if like_last && steady {
                        self.steady_run + 1
                    } else {
                        usize::from(steady)
                    };
                    self.candidate = seg.to_vec();
                    self.candidate_share = share;
                    let after = c.relearn_after.max(1);
                    if self.mismatch_run >= after || self.steady_run >= 3 * after {
                        // A run that came early against the reference RR shows the
                        // reference was wrong too: it starts again from the run's own
                        // interval.
                        if self.mismatch_run < after {
                            self.rr_ref.clear();
                            self.rr_ref.extend(rr);
                        }
                        self.template = self.candidate.clone();
                        self.tmpl_share = self.candidate_share;
                        self.mismatch_run = 0;
                        self.steady_run = 0;
                        m.pvc = false;
                    }
                } else {
                    self.mismatch_run = 0;
                    self.steady_run = 0;
                }
            } else {
                learnt = self.learn(beat, &filtered[..need], share);
            }
        }
        // Reference RR from normal-to-normal intervals (the beat that completes the
        // learning has put its own in already, if it is one).
        if let Some(r) = rr.filter(|_| learnt.is_none()) {
            if !m.pvc && self.last_normal {
                self.push_ref(r);
            }
        }
        self.last_beat = Some(beat);
        self.last_normal = learnt.unwrap_or(!m.pvc);
        self.last_rr = rr;
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternating_rhythms_are_not_af() {
        // Intervals that alternate short and long with jitter: irregular by the other
        // indices, but every other interval nearly the same (bigeminy whose pairs are,
        // at most in part, coupling/compensatory pairs; a VT alternating 0.50/0.60 s,
        // as in MIT-BIH 223).
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let off = IrregularityThresholds {
            min_alternation_ratio: 0.0,
            ..IrregularityThresholds::default()
        };
        for (short, long) in [(0.50f32, 0.60f32), (0.62, 0.80), (0.45, 0.62)] {
            let rr: Vec<f32> = (0..40)
                .map(|i| {
                    let base = if i % 2 == 0 { short } else { long };
                    base * rng.random_range(0.98..1.02)
                })
                .collect();
            assert!(
                rr_irregular_with(&rr, &off),
                "irregular by the other indices"
            );
            assert!(alternation_ratio(&rr) < 0.2, "{}", alternation_ratio(&rr));
            assert!(!rr_irregular(&rr), "{short}/{long} alternating is not AF");
        }
        // Independent intervals: the ratio is about 1.
        let af: Vec<f32> = (0..40)
            .map(|_| 0.7 * rng.random_range(0.65..1.35))
            .collect();
        assert!(alternation_ratio(&af) > 0.5, "{}", alternation_ratio(&af));
        assert_eq!(alternation_ratio(&[0.8, 0.6]), 1.0);
        assert_eq!(alternation_ratio(&[0.8, 0.8, 0.8, 0.8]), 1.0);
    }

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
    fn max_pearson_is_bit_identical_to_pearson() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (n, shifts) in [(2, 1), (5, 3), (60, 17), (101, 51), (150, 4)] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n + shifts)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let naive = (0..shifts)
                .map(|k| pearson(&a, &b[k..k + n]))
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max_pearson(&a, &b, shifts).to_bits(), naive.to_bits());
        }
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

//! Signal quality of one analysis window, used to gate every rhythm call: a window
//! of bad signal yields "indeterminate", never a rhythm call.
//!
//! Per-sample work ([`QualityFilters`], [`CurveLengthDetector`]) runs in
//! [`crate::stream::StreamDsp`] sample by sample, so the verdict does not depend on
//! how the stream is cut into blocks. At window close, [`QualityIndices::from_sums`]
//! derives the indices from the window's filtered samples, running [`BandSums`] and
//! beats ([`QualityIndices::compute`] does the same from stored per-sample values), and
//! [`QualityConfig::verdict`] turns them into a [`QualityVerdict`].
//!
//! Indices (after Li, Clifford & Mark 2008, Behar et al. 2013, Clifford et al. 2012):
//! - **lead off**: any sample of the window flagged lead-off by the device;
//! - **flat line**: fraction of the window's 1 s segments whose filtered
//!   peak-to-peak is below `flat_mv`;
//! - **saturation**: fraction of raw samples at or beyond ± `saturation_mv`;
//! - **kurtosis** of the filtered (0.5–40 Hz) signal: clean ECG is peaky (> 5),
//!   Gaussian noise is 3, sinusoidal interference 1.5;
//! - **pSQI**: power of the QRS band (5–15 Hz) over power 5–40 Hz;
//! - **basSQI**: 1 − power below 1 Hz over power below 40 Hz (baseline wander);
//! - **hf noise**: RMS above 40 Hz (mains notched) over the filtered robust
//!   peak-to-peak amplitude;
//! - **bSQI**: agreement of the main QRS detector with the curve-length detector
//!   [`CurveLengthDetector`] (its own feature and thresholds), beats matched
//!   within `match_ms`: matched / (n₁ + n₂ − matched);
//! - **beat rate**: more than `max_plausible_bpm` detected beats per minute is noise.
//!
//! Hard failures (lead off, flat, saturation, implausible rate) fail the window
//! outright. The soft indices (kurtosis, pSQI, basSQI, hf noise, bSQI) vote: the
//! window fails when `max_soft_failures` (2) or more are past their thresholds, or
//! when bSQI alone is below `min_bsqi_alone` (the detectors disagree badly). No
//! single soft index is trusted alone: clean records with wide or paced beats have
//! low kurtosis, some leads have a low QRS-band ratio or strong T waves below 1 Hz.
//! The reason names every failing index. The score (reported, not used for the
//! verdict) is the mean of 0–1 sub-scores, each 1 at or beyond its threshold and
//! falling linearly to 0 at its "bad" end; 0 on a hard failure.
//!
//! The thresholds were picked on MIT-BIH (the QRS tuning half), noise-stress
//! mixtures made from it and the CinC 2017 records outside the AF model's held-out
//! split, and checked on the rest (`docs/accuracy-af.md`). The literature's
//! "kurtosis > 5" alone would fail about a quarter of clean MIT-BIH windows.

use serde::{Deserialize, Serialize};

use crate::filter::{
    run_chain as run, settle_chain as settle, Biquad, BUTTERWORTH4_Q, BUTTERWORTH_Q,
};

pub use crate::curve_length::CurveLengthDetector;

/// Thresholds of the signal-quality verdict. Calibrated on MIT-BIH, the MIT-BIH
/// noise stress test records and CinC 2017 (`docs/accuracy-af.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// A 1 s segment whose filtered peak-to-peak is below this is flat (mV).
    pub flat_mv: f32,
    /// Largest tolerated fraction of flat 1 s segments in a window.
    pub max_flat_frac: f32,
    /// Raw samples at or beyond ± this are saturated (mV); 0 turns this absolute
    /// rail off (device rails are rarely known: the plateau test below does not
    /// need them).
    pub saturation_mv: f32,
    /// Clipping plateau: a run of at least this long (ms) of identical raw values
    /// at the window's maximum or minimum is saturation.
    pub clip_run_ms: f32,
    /// Largest tolerated fraction of saturated (rail or plateau) samples.
    pub max_saturated_frac: f32,
    /// Highest plausible heart rate (bpm) from the detected beats; more is noise.
    pub max_plausible_bpm: f32,
    /// Smallest kurtosis of the filtered signal of a good window (clean ECG > 5).
    pub min_kurtosis: f32,
    /// Smallest QRS-band power ratio pSQI = P(5–15 Hz) / P(5–40 Hz).
    pub min_psqi: f32,
    /// Smallest basSQI = 1 − P(< 1 Hz) / P(< 40 Hz).
    pub min_bassqi: f32,
    /// Largest ratio of high-frequency (> 40 Hz, mains removed) RMS to the filtered
    /// signal's robust (0.5–99.5 percentile) peak-to-peak amplitude.
    pub max_hf_ratio: f32,
    /// Smallest agreement bSQI between the two beat detectors.
    pub min_bsqi: f32,
    /// Match window of the two detectors' beats (ms).
    pub match_ms: f32,
    /// A window whose detector agreement is below this fails on that alone.
    pub min_bsqi_alone: f32,
    /// A window with this many soft indices past their thresholds fails.
    pub max_soft_failures: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            flat_mv: 0.05,
            max_flat_frac: 0.3,
            saturation_mv: 0.0,
            clip_run_ms: 20.0,
            max_saturated_frac: 0.01,
            max_plausible_bpm: 300.0,
            min_kurtosis: 3.5,
            min_psqi: 0.3,
            min_bassqi: 0.6,
            max_hf_ratio: 0.025,
            min_bsqi: 0.9,
            match_ms: 150.0,
            min_bsqi_alone: 0.7,
            max_soft_failures: 2,
        }
    }
}

/// The quality indices of one window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityIndices {
    /// Any sample flagged lead-off.
    pub lead_off: bool,
    /// Fraction of flat 1 s segments.
    pub flat_frac: f32,
    /// Fraction of saturated raw samples.
    pub saturated_frac: f32,
    /// Kurtosis of the filtered signal.
    pub kurtosis: f32,
    /// P(5–15 Hz) / P(5–40 Hz).
    pub psqi: f32,
    /// 1 − P(< 1 Hz) / P(< 40 Hz).
    pub bassqi: f32,
    /// High-frequency RMS / robust peak-to-peak.
    pub hf_ratio: f32,
    /// Two-detector agreement (1 when neither detector found a beat).
    pub bsqi: f32,
    /// Beats per minute of the main detector.
    pub beat_rate_bpm: f32,
}

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityVerdict {
    /// Good enough for rhythm calls.
    pub ok: bool,
    /// 0 (unusable) … 1 (clean): the mean soft sub-score, 0 on a hard failure.
    pub score: f32,
    /// Why not (empty when `ok`).
    pub reason: String,
    /// The indices behind the verdict.
    pub indices: QualityIndices,
}

/// Per-sample outputs of [`QualityFilters`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualitySample {
    /// 5–15 Hz band (QRS band).
    pub qrs: f32,
    /// 5–40 Hz band.
    pub wide: f32,
    /// Below 1 Hz (baseline).
    pub base: f32,
    /// Below 40 Hz.
    pub lp40: f32,
    /// Above 40 Hz, mains notched.
    pub hf: f32,
}

const BW_Q: f64 = BUTTERWORTH_Q;
const BW4_Q: [f64; 2] = BUTTERWORTH4_Q;

/// Design frequency of a band edge: within (0, 0.45 fs] so that every section is
/// stable at any rate.
fn edge(f0: f64, fs: f64) -> f64 {
    f0.clamp(1e-3, 0.45 * fs)
}

/// The band filters behind pSQI, basSQI and the hf index, run on the raw signal.
/// The first sample settles the state (no start transient from a DC offset).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityFilters {
    hp5: Vec<Biquad>,
    lp15: Vec<Biquad>,
    lp40w: Vec<Biquad>,
    lp1: Vec<Biquad>,
    lp40: Vec<Biquad>,
    hf: Vec<Biquad>,
    started: bool,
}

impl QualityFilters {
    /// Filters for `fs` Hz with a mains notch at `mains_hz` on the hf band (0: none).
    pub fn new(fs: f64, mains_hz: f64) -> Self {
        let fs = crate::usable_rate(fs);
        let top = 40.0f64.min(0.4 * fs);
        let e = |f0: f64| edge(f0, fs);
        let mut hf: Vec<Biquad> = BW4_Q
            .iter()
            .map(|&q| Biquad::high_pass(e(top), fs, q))
            .collect();
        if mains_hz > 0.0 && mains_hz < 0.5 * fs {
            hf.push(Biquad::notch(e(mains_hz), fs, 2.0));
        }
        Self {
            hp5: vec![Biquad::high_pass(e(5.0), fs, BW_Q)],
            lp15: vec![Biquad::low_pass(e(15.0f64.min(0.4 * fs)), fs, BW_Q)],
            lp40w: vec![Biquad::low_pass(e(top), fs, BW_Q)],
            lp1: BW4_Q
                .iter()
                .map(|&q| Biquad::low_pass(e(1.0), fs, q))
                .collect(),
            lp40: vec![Biquad::low_pass(e(top), fs, BW_Q)],
            hf,
            started: false,
        }
    }

    /// Filters one raw sample (mV).
    pub fn step(&mut self, x: f32) -> QualitySample {
        let x = f64::from(x);
        if !self.started {
            self.started = true;
            for c in [&mut self.hp5, &mut self.lp1, &mut self.lp40, &mut self.hf] {
                settle(c, x);
            }
            settle(&mut self.lp15, 0.0);
            settle(&mut self.lp40w, 0.0);
        }
        let h5 = run(&mut self.hp5, x);
        QualitySample {
            qrs: run(&mut self.lp15, h5) as f32,
            wide: run(&mut self.lp40w, h5) as f32,
            base: run(&mut self.lp1, x) as f32,
            lp40: run(&mut self.lp40, x) as f32,
            hf: run(&mut self.hf, x) as f32,
        }
    }
}

/// Kurtosis (m₄ / m₂², 3 for Gaussian noise) of `x`; 0 for fewer than 4 samples or
/// a constant signal.
pub fn kurtosis(x: &[f32]) -> f32 {
    if x.len() < 4 {
        return 0.0;
    }
    let n = x.len() as f64;
    let m = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0f64, 0.0f64);
    for &v in x {
        let d = f64::from(v) - m;
        let d2 = d * d;
        m2 += d2;
        m4 += d2 * d2;
    }
    m2 /= n;
    m4 /= n;
    if m2 <= 1e-18 {
        0.0
    } else {
        (m4 / (m2 * m2)) as f32
    }
}

fn energy(x: impl Iterator<Item = f32>) -> f64 {
    x.map(|v| f64::from(v) * f64::from(v)).sum()
}

fn variance(x: impl Iterator<Item = f32> + Clone) -> f64 {
    let (n, s) = x
        .clone()
        .fold((0usize, 0.0f64), |(n, s), v| (n + 1, s + f64::from(v)));
    if n == 0 {
        return 0.0;
    }
    let m = s / n as f64;
    x.map(|v| (f64::from(v) - m).powi(2)).sum::<f64>() / n as f64
}

/// Agreement of two beat lists (sample indices, increasing): matched /
/// (n₁ + n₂ − matched), beats matched one to one within `tol` samples. 1 when both
/// are empty.
pub fn bsqi(a: &[u64], b: &[u64], tol: u64) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut m) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        if a[i].abs_diff(b[j]) <= tol {
            m += 1;
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    m as f32 / (a.len() + b.len() - m) as f32
}

/// Fraction of `raw` samples that are saturated: at or beyond ± `saturation_mv`
/// (when that is positive), or on a plateau of at least `clip_run_ms` of identical
/// values at the window's maximum or minimum (a clipping amplifier).
pub fn saturated_fraction(raw: &[f32], fs: f64, cfg: &QualityConfig) -> f32 {
    if raw.is_empty() {
        return 0.0;
    }
    let (lo, hi) = raw
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let min_run = ((f64::from(cfg.clip_run_ms) / 1000.0 * fs).round() as usize).max(2);
    let rail = cfg.saturation_mv > 0.0;
    let mut sat = 0usize;
    let mut i = 0;
    while i < raw.len() {
        let v = raw[i];
        let mut j = i + 1;
        while j < raw.len() && raw[j] == v {
            j += 1;
        }
        let run = j - i;
        let at_edge = (v == hi || v == lo) && hi > lo;
        if (at_edge && run >= min_run) || (rail && v.abs() >= cfg.saturation_mv) {
            sat += run;
        }
        i = j;
    }
    sat as f32 / raw.len() as f32
}

/// [`bsqi`] for a window `[start, end)`: `a` holds the main detector's beats in the
/// window, `b` the second detector's beats within `tol` of it; beats of `b` outside
/// the window count only when matched (so a beat near the edge that the detectors
/// place on opposite sides of it is not a disagreement).
pub fn bsqi_in(a: &[u64], b: &[u64], tol: u64, start: u64, end: u64) -> f32 {
    let (mut i, mut j, mut m, mut nb) = (0, 0, 0usize, 0usize);
    let inside = |v: u64| v >= start && v < end;
    while i < a.len() && j < b.len() {
        if a[i].abs_diff(b[j]) <= tol {
            m += 1;
            nb += 1;
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            nb += usize::from(inside(b[j]));
            j += 1;
        }
    }
    nb += b[j..].iter().filter(|&&v| inside(v)).count();
    if a.is_empty() && nb == 0 {
        return 1.0;
    }
    m as f32 / (a.len() + nb - m) as f32
}

/// What [`QualityIndices::compute`] needs of a window.
#[derive(Debug, Clone, Copy)]
pub struct WindowSignals<'a> {
    /// Sampling rate (Hz).
    pub fs: f64,
    /// Raw samples (mV).
    pub raw: &'a [f32],
    /// Monitor-filtered samples (mV).
    pub filtered: &'a [f32],
    /// [`QualityFilters`] outputs.
    pub bands: &'a [QualitySample],
    /// Any sample flagged lead-off.
    pub lead_off: bool,
    /// Beats of the main detector in the window.
    pub beats: &'a [u64],
    /// Beats of the [`CurveLengthDetector`] within `match_ms` of the window.
    pub beats2: &'a [u64],
    /// First sample of the window (absolute).
    pub start: u64,
    /// bSQI leaves out beats before this sample (the second detector's learning
    /// second at the start of a stream, [`CurveLengthDetector::learning_samples`]).
    pub settled_from: u64,
}

impl QualityIndices {
    /// The indices of one window, with `cfg`'s flat, saturation and match settings.
    pub fn compute(w: &WindowSignals<'_>, cfg: &QualityConfig) -> Self {
        let n = w.filtered.len();
        let mut q = QualityIndices {
            lead_off: w.lead_off,
            ..QualityIndices::default()
        };
        if n == 0 {
            q.flat_frac = 1.0;
            return q;
        }
        q.flat_frac = flat_fraction(w.filtered, w.fs, cfg.flat_mv);
        q.saturated_frac = saturated_fraction(w.raw, w.fs, cfg);
        q.kurtosis = kurtosis(w.filtered);
        let e_qrs = energy(w.bands.iter().map(|s| s.qrs));
        let e_wide = energy(w.bands.iter().map(|s| s.wide));
        q.psqi = if e_wide > 1e-12 {
            (e_qrs / e_wide) as f32
        } else {
            0.0
        };
        let v_base = variance(w.bands.iter().map(|s| s.base));
        let v_all = variance(w.bands.iter().map(|s| s.lp40));
        q.bassqi = if v_all > 1e-12 {
            (1.0 - v_base / v_all).max(0.0) as f32
        } else {
            0.0
        };
        let mut f = w.filtered.to_vec();
        f.sort_unstable_by(f32::total_cmp);
        let k = f.len() / 200;
        let robust = (f[f.len() - 1 - k] - f[k]).max(1e-6);
        let hf_rms = (energy(w.bands.iter().map(|s| s.hf)) / w.bands.len().max(1) as f64).sqrt();
        q.hf_ratio = hf_rms as f32 / robust;
        let tol = (f64::from(cfg.match_ms) / 1000.0 * w.fs).round() as u64;
        let from = w.start.max(w.settled_from);
        let a: Vec<u64> = w.beats.iter().copied().filter(|&b| b >= from).collect();
        let b: Vec<u64> = w.beats2.iter().copied().filter(|&b| b >= from).collect();
        q.bsqi = bsqi_in(&a, &b, tol, from, w.start + n as u64);
        q.beat_rate_bpm = 60.0 * w.beats.len() as f32 * w.fs as f32 / n as f32;
        q
    }
}

/// Linear sub-score: 1 at or beyond `good`, 0 at or beyond `bad`.
fn ramp(v: f32, bad: f32, good: f32) -> f32 {
    if !v.is_finite() {
        return 0.0;
    }
    if (good - bad).abs() < 1e-9 {
        return if v >= good { 1.0 } else { 0.0 };
    }
    ((v - bad) / (good - bad)).clamp(0.0, 1.0)
}

impl QualityConfig {
    /// The verdict on a window with indices `q`. See the module documentation.
    pub fn verdict(&self, q: &QualityIndices) -> QualityVerdict {
        let hard = if q.lead_off {
            Some("lead 0 off".to_owned())
        } else if q.flat_frac > self.max_flat_frac {
            Some(format!(
                "flat line ({:.0} % of 1 s segments below {} mV)",
                100.0 * q.flat_frac,
                self.flat_mv
            ))
        } else if q.saturated_frac > self.max_saturated_frac {
            Some(format!(
                "saturation ({:.1} % of samples clipped)",
                100.0 * q.saturated_frac
            ))
        } else if q.beat_rate_bpm > self.max_plausible_bpm {
            Some(format!(
                "implausible beat rate ({:.0} bpm)",
                q.beat_rate_bpm
            ))
        } else {
            None
        };
        if let Some(reason) = hard {
            return QualityVerdict {
                ok: false,
                score: 0.0,
                reason,
                indices: *q,
            };
        }
        // (sub-score, below threshold, description)
        let soft = [
            (
                ramp(q.kurtosis, 3.0, self.min_kurtosis),
                q.kurtosis < self.min_kurtosis,
                format!("kurtosis {:.1} < {}", q.kurtosis, self.min_kurtosis),
            ),
            (
                ramp(q.psqi, 0.5 * self.min_psqi, self.min_psqi),
                q.psqi < self.min_psqi,
                format!("QRS-band power ratio {:.2} < {}", q.psqi, self.min_psqi),
            ),
            (
                ramp(q.bassqi, 0.5 * self.min_bassqi, self.min_bassqi),
                q.bassqi < self.min_bassqi,
                format!("baseline power ratio {:.2} < {}", q.bassqi, self.min_bassqi),
            ),
            (
                ramp(-q.hf_ratio, -3.0 * self.max_hf_ratio, -self.max_hf_ratio),
                q.hf_ratio > self.max_hf_ratio,
                format!(
                    "high-frequency noise {:.3} > {}",
                    q.hf_ratio, self.max_hf_ratio
                ),
            ),
            (
                ramp(q.bsqi, 0.5 * self.min_bsqi, self.min_bsqi),
                q.bsqi < self.min_bsqi,
                format!("beat detectors agree {:.2} < {}", q.bsqi, self.min_bsqi),
            ),
        ];
        let score = soft.iter().map(|s| s.0).sum::<f32>() / soft.len() as f32;
        let failing: Vec<&str> = soft.iter().filter(|s| s.1).map(|s| s.2.as_str()).collect();
        let ok = q.bsqi >= self.min_bsqi_alone && failing.len() < self.max_soft_failures.max(1);
        let reason = if ok {
            String::new()
        } else {
            format!("noise: {}", failing.join(", "))
        };
        QualityVerdict {
            ok,
            score,
            reason,
            indices: *q,
        }
    }
}

/// Running sums of the band outputs and raw extremes over a span of samples, so a
/// window's pSQI, basSQI, hf index and saturation need no stored per-sample bands
/// ([`crate::stream::StreamDsp`] keeps one per `gcd(window, hop)` samples).
///
/// Variances use sums of values shifted by a fixed reference (the stream's first
/// sample), which keeps the one-pass formula accurate for signals with a DC offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandSums {
    /// Samples added.
    pub n: u64,
    /// Σ qrs².
    pub e_qrs: f64,
    /// Σ wide².
    pub e_wide: f64,
    /// Σ hf².
    pub e_hf: f64,
    /// Σ (base − shift).
    pub s_base: f64,
    /// Σ (base − shift)².
    pub q_base: f64,
    /// Σ (lp40 − shift).
    pub s_lp40: f64,
    /// Σ (lp40 − shift)².
    pub q_lp40: f64,
    /// Smallest raw sample.
    pub raw_lo: f32,
    /// Largest raw sample.
    pub raw_hi: f32,
    /// Raw samples at or beyond the absolute rail (`saturation_mv > 0`).
    pub rail: u64,
}

impl Default for BandSums {
    fn default() -> Self {
        Self {
            n: 0,
            e_qrs: 0.0,
            e_wide: 0.0,
            e_hf: 0.0,
            s_base: 0.0,
            q_base: 0.0,
            s_lp40: 0.0,
            q_lp40: 0.0,
            raw_lo: f32::INFINITY,
            raw_hi: f32::NEG_INFINITY,
            rail: 0,
        }
    }
}

impl BandSums {
    /// Adds one sample: raw value, band outputs, variance reference `shift`, and
    /// the absolute rail (`<= 0`: none).
    #[inline]
    pub fn add(&mut self, raw: f32, s: &QualitySample, shift: f64, rail_mv: f32) {
        let sq = |v: f32| f64::from(v) * f64::from(v);
        self.n += 1;
        self.e_qrs += sq(s.qrs);
        self.e_wide += sq(s.wide);
        self.e_hf += sq(s.hf);
        let b = f64::from(s.base) - shift;
        self.s_base += b;
        self.q_base += b * b;
        let l = f64::from(s.lp40) - shift;
        self.s_lp40 += l;
        self.q_lp40 += l * l;
        self.raw_lo = self.raw_lo.min(raw);
        self.raw_hi = self.raw_hi.max(raw);
        self.rail += u64::from(rail_mv > 0.0 && raw.abs() >= rail_mv);
    }

    /// Adds the sums of another span.
    pub fn merge(&mut self, o: &BandSums) {
        self.n += o.n;
        self.e_qrs += o.e_qrs;
        self.e_wide += o.e_wide;
        self.e_hf += o.e_hf;
        self.s_base += o.s_base;
        self.q_base += o.q_base;
        self.s_lp40 += o.s_lp40;
        self.q_lp40 += o.q_lp40;
        self.raw_lo = self.raw_lo.min(o.raw_lo);
        self.raw_hi = self.raw_hi.max(o.raw_hi);
        self.rail += o.rail;
    }

    fn var(s: f64, q: f64, n: u64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let n = n as f64;
        ((q - s * s / n) / n).max(0.0)
    }
}

/// What [`QualityIndices::from_sums`] needs of a window: the filtered samples (flat
/// line, kurtosis, robust amplitude), the running sums of the bands and the
/// saturated-sample count (see [`saturated_fraction`]).
#[derive(Debug, Clone, Copy)]
pub struct WindowSummary<'a> {
    /// Sampling rate (Hz).
    pub fs: f64,
    /// Monitor-filtered samples (mV).
    pub filtered: &'a [f32],
    /// Sums over the window.
    pub sums: &'a BandSums,
    /// Saturated raw samples in the window.
    pub saturated: u64,
    /// Any sample flagged lead-off.
    pub lead_off: bool,
    /// Beats of the main detector in the window.
    pub beats: &'a [u64],
    /// Beats of the [`CurveLengthDetector`] within `match_ms` of the window.
    pub beats2: &'a [u64],
    /// First sample of the window (absolute).
    pub start: u64,
    /// See [`WindowSignals::settled_from`].
    pub settled_from: u64,
}

/// The `k`-th value of `f` in the order `cmp` (0-based), as
/// `sort_unstable_by(cmp)` would place it: one pass keeping the `k + 1` first
/// values sorted (`k` is small: 0.5 % of a window).
fn kth_by(f: &[f32], k: usize, cmp: impl Fn(&f32, &f32) -> std::cmp::Ordering) -> f32 {
    let mut best: Vec<f32> = Vec::with_capacity(k + 2);
    for &v in f {
        if best.len() <= k {
            let i = best.partition_point(|b| cmp(b, &v).is_le());
            best.insert(i, v);
        } else if best.last().is_some_and(|l| cmp(&v, l).is_lt()) {
            let i = best.partition_point(|b| cmp(b, &v).is_le());
            best.insert(i, v);
            best.pop();
        }
    }
    best.get(k).copied().unwrap_or(0.0)
}

/// The `k`-th smallest and `k`-th largest values of `f`, as
/// `sort_unstable_by(total_cmp)` would place them.
fn robust_range(f: &[f32], k: usize) -> (f32, f32) {
    (
        kth_by(f, k, f32::total_cmp),
        kth_by(f, k, |a, b| b.total_cmp(a)),
    )
}

/// Share of 1 s segments (a trailing segment shorter than half of one is left out)
/// whose peak-to-peak is below `flat_mv`.
fn flat_fraction(filtered: &[f32], fs: f64, flat_mv: f32) -> f32 {
    let seg = (fs.round() as usize).max(1);
    let (mut segs, mut flat) = (0usize, 0usize);
    for c in filtered.chunks(seg) {
        if c.len() * 2 < seg && segs > 0 {
            continue;
        }
        let (lo, hi) = c
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        segs += 1;
        flat += usize::from(hi - lo < flat_mv);
    }
    flat as f32 / segs.max(1) as f32
}

impl QualityIndices {
    /// The indices of one window from its filtered samples and running sums; the
    /// same definitions as [`QualityIndices::compute`] (sums may differ from it in
    /// the last bits of their rounding).
    pub fn from_sums(w: &WindowSummary<'_>, cfg: &QualityConfig) -> Self {
        let n = w.filtered.len();
        let mut q = QualityIndices {
            lead_off: w.lead_off,
            ..QualityIndices::default()
        };
        if n == 0 {
            q.flat_frac = 1.0;
            return q;
        }
        q.flat_frac = flat_fraction(w.filtered, w.fs, cfg.flat_mv);
        q.saturated_frac = w.saturated as f32 / n as f32;
        q.kurtosis = kurtosis(w.filtered);
        let s = w.sums;
        q.psqi = if s.e_wide > 1e-12 {
            (s.e_qrs / s.e_wide) as f32
        } else {
            0.0
        };
        let v_base = BandSums::var(s.s_base, s.q_base, s.n);
        let v_all = BandSums::var(s.s_lp40, s.q_lp40, s.n);
        q.bassqi = if v_all > 1e-12 {
            (1.0 - v_base / v_all).max(0.0) as f32
        } else {
            0.0
        };
        let (lo, hi) = robust_range(w.filtered, n / 200);
        let robust = (hi - lo).max(1e-6);
        let hf_rms = (s.e_hf / s.n.max(1) as f64).sqrt();
        q.hf_ratio = hf_rms as f32 / robust;
        let tol = (f64::from(cfg.match_ms) / 1000.0 * w.fs).round() as u64;
        let from = w.start.max(w.settled_from);
        let a: Vec<u64> = w.beats.iter().copied().filter(|&b| b >= from).collect();
        let b: Vec<u64> = w.beats2.iter().copied().filter(|&b| b >= from).collect();
        q.bsqi = bsqi_in(&a, &b, tol, from, w.start + n as u64);
        q.beat_rate_bpm = 60.0 * w.beats.len() as f32 * w.fs as f32 / n as f32;
        q
    }
}

impl QualityFilters {
    /// Heap and inline bytes of this state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<Biquad>()
                * (self.hp5.capacity()
                    + self.lp15.capacity()
                    + self.lp40w.capacity()
                    + self.lp1.capacity()
                    + self.lp40.capacity()
                    + self.hf.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_range_matches_sorting() {
        let mut x = 0x2545_f491_u32;
        for n in [1usize, 7, 200, 201, 5000] {
            let f: Vec<f32> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Repeated values, as in quantised signals.
                    (x % 97) as f32 * 0.01 - 0.4
                })
                .collect();
            let mut s = f.clone();
            s.sort_unstable_by(f32::total_cmp);
            let k = n / 200;
            assert_eq!(robust_range(&f, k), (s[k], s[n - 1 - k]), "{n}");
        }
    }
}

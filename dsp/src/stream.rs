//! Per-stream DSP: filtering, QRS detection, rhythm windows and pause events.
//!
//! [`StreamDsp`] analyses **lead 0** only (choosing the best lead is future work).
//! Everything runs sample by sample, so the events do not depend on how the input is
//! split into blocks.
//!
//! Latency: with `L` = [`StreamDsp::latency_samples`] (the QRS detector's fixed
//! latency), the window ending at sample `E` (exclusive) is emitted by the `push`
//! that delivers sample `E − 1 + L`; a pause is emitted by the `push` that delivers
//! sample `t + L`, `t` being the first sample at which the beat-free gap reaches
//! `pause_s` (resp. `asystole_s`).

use std::collections::VecDeque;

use ecg_types::{Condition, FindingStatus};
use serde::{Deserialize, Serialize};

use crate::filter::{Biquad, Cascade, MonitorFilter, BUTTERWORTH4_Q};
use crate::qrs::QrsDetector;
use crate::rhythm::{
    af_features, heart_rate_bpm, irregularity, rmssd, rr_intervals, rr_irregular_with, sdnn,
    IrregularityThresholds, AF_FEATURES,
};

/// Configuration of [`StreamDsp`]; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DspConfig {
    /// Rhythm window length (s).
    pub window_s: f32,
    /// Time between the ends of successive windows (s).
    pub hop_s: f32,
    /// Bradycardia below this heart rate (bpm).
    pub brady_bpm: f32,
    /// Tachycardia above this heart rate (bpm).
    pub tachy_bpm: f32,
    /// A pause is reported when no beat has been seen for this long (s).
    pub pause_s: f32,
    /// The pause becomes an asystole at this length (s).
    pub asystole_s: f32,
    /// Mains frequency for the notch (Hz; 0 for none).
    pub mains_hz: f32,
    /// AF (RR irregularity) rule thresholds.
    pub af: IrregularityThresholds,
    /// Signal quality: filtered lead-0 peak-to-peak below this is a flat line (mV).
    pub flat_mv: f32,
    /// Signal quality: raw samples at or beyond ± this are saturated (mV).
    pub saturation_mv: f32,
    /// Signal quality: largest tolerated fraction of saturated samples.
    pub max_saturated_frac: f32,
    /// Signal quality: largest tolerated ratio of high-frequency (> 40 Hz, mains
    /// removed) RMS to the filtered signal's robust peak-to-peak amplitude.
    pub max_hf_noise_ratio: f32,
    /// Signal quality: highest plausible heart rate (bpm); more beats is noise.
    pub max_plausible_bpm: f32,
}

impl Default for DspConfig {
    fn default() -> Self {
        Self {
            window_s: 10.0,
            hop_s: 5.0,
            brady_bpm: 50.0,
            tachy_bpm: 120.0,
            pause_s: 3.0,
            asystole_s: 4.0,
            mains_hz: 50.0,
            af: IrregularityThresholds::default(),
            flat_mv: 0.1,
            saturation_mv: 5.0,
            max_saturated_frac: 0.01,
            max_hf_noise_ratio: 0.1,
            max_plausible_bpm: 300.0,
        }
    }
}

/// One closed rhythm window of lead 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RhythmWindow {
    /// First sample (absolute index, inclusive).
    pub start_sample: u64,
    /// End sample (absolute index, exclusive).
    pub end_sample: u64,
    /// Beats in the window (absolute sample indices).
    pub beats: Vec<u64>,
    /// RR intervals (s) between consecutive beats of the window.
    pub rr_s: Vec<f32>,
    /// Heart rate (bpm): 60 / mean RR, or 60 × beats / window length with < 2 beats.
    pub heart_rate_bpm: f32,
    /// SDNN (s).
    pub sdnn_s: f32,
    /// RMSSD (s).
    pub rmssd_s: f32,
    /// RR irregularity, median |ΔRR| / median RR ([`crate::rhythm::irregularity`]).
    pub irregularity: f32,
    /// AF model features ([`crate::rhythm::af_features`]).
    pub af_features: [f32; AF_FEATURES],
    /// Whether the signal is good enough for rhythm calls.
    pub quality_ok: bool,
    /// Why not (empty when `quality_ok`).
    pub quality_reason: String,
    /// Filtered lead-0 samples of the window (mV), for display.
    pub filtered_mv: Vec<f32>,
    /// Rhythm calls: bradycardia, tachycardia (value: bpm) and atrial fibrillation
    /// (value: irregularity); Indeterminate with no value on bad signal.
    pub calls: Vec<(Condition, FindingStatus, Option<f32>)>,
}

/// What [`StreamDsp::push`] emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DspEvent {
    /// A closed rhythm window.
    Window(RhythmWindow),
    /// No beat for `pause_s` (then again, once, with `asystole` at `asystole_s`).
    Pause {
        /// Last beat before the pause (or the end of a lead-off / stream start).
        start_sample: u64,
        /// Length of the beat-free gap when the event was raised (s).
        length_s: f32,
        /// True once the gap reached `asystole_s`.
        asystole: bool,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    raw: f32,
    filtered: f32,
    hf: f32,
    lead_off: bool,
}

/// Per-stream DSP state. See the module documentation.
#[derive(Debug, Clone)]
pub struct StreamDsp {
    cfg: DspConfig,
    fs: f64,
    n_leads: usize,
    n: u64,
    filter: MonitorFilter,
    hf: Cascade,
    det: QrsDetector,
    latency: u64,
    win: u64,
    hop: u64,
    next_end: u64,
    /// Samples `base ..` of lead 0.
    hist: VecDeque<Sample>,
    base: u64,
    pending: VecDeque<u64>,
    beats: VecDeque<u64>,
    pause_ref: u64,
    pause_sent: bool,
    asystole_sent: bool,
    scratch: Vec<u64>,
}

impl StreamDsp {
    /// State for a stream at `sample_rate` Hz with `n_leads` leads (lead 0 analysed).
    pub fn new(cfg: &DspConfig, sample_rate: u32, n_leads: usize) -> Self {
        let fs = f64::from(sample_rate.max(1));
        let det = QrsDetector::new(fs);
        let latency = det.latency_samples() as u64;
        let win = ((f64::from(cfg.window_s) * fs).round() as u64).max(1);
        let hop = ((f64::from(cfg.hop_s) * fs).round() as u64).max(1);
        let hf_corner = 40.0f64.min(0.4 * fs);
        let mut hf_sections: Vec<Biquad> = BUTTERWORTH4_Q
            .iter()
            .map(|&q| Biquad::high_pass(hf_corner, fs, q))
            .collect();
        let mains = f64::from(cfg.mains_hz);
        if mains > 0.0 && mains < 0.5 * fs {
            hf_sections.push(Biquad::notch(mains, fs, 2.0));
        }
        Self {
            cfg: cfg.clone(),
            fs,
            n_leads: n_leads.max(1),
            n: 0,
            filter: MonitorFilter::with_mains(fs, mains),
            hf: Cascade::new(hf_sections),
            det,
            latency,
            win,
            hop,
            next_end: win,
            hist: VecDeque::new(),
            base: 0,
            pending: VecDeque::new(),
            beats: VecDeque::new(),
            pause_ref: 0,
            pause_sent: false,
            asystole_sent: false,
            scratch: Vec::new(),
        }
    }

    /// Fixed latency (samples) of beat decisions, hence of windows and pauses.
    pub fn latency_samples(&self) -> usize {
        self.latency as usize
    }

    /// Samples per lead pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Feeds a lead-major block (`n_leads × n` samples, mV) with per-lead lead-off
    /// flags for the block, and appends the events it completes to `out`. Only
    /// lead 0 is analysed; a block whose length is not a multiple of `n_leads` is
    /// truncated to the largest multiple.
    pub fn push(&mut self, samples_mv: &[f32], lead_off: &[bool], out: &mut Vec<DspEvent>) {
        let per_lead = samples_mv.len() / self.n_leads;
        let off0 = lead_off.first().copied().unwrap_or(false);
        for &x in &samples_mv[..per_lead] {
            self.step(x, off0, out);
        }
    }

    fn step(&mut self, x: f32, lead_off: bool, out: &mut Vec<DspEvent>) {
        let x = if x.is_finite() { x } else { 0.0 };
        let filtered = self.filter.step(x);
        let hf = self.hf.step(x);
        self.hist.push_back(Sample {
            raw: x,
            filtered,
            hf,
            lead_off,
        });
        self.scratch.clear();
        self.det.push(&[x], &mut self.scratch);
        self.pending.extend(self.scratch.iter().copied());
        self.n += 1;

        // Decisions are final for samples up to `t`.
        let Some(t) = (self.n - 1).checked_sub(self.latency) else {
            return;
        };
        while self.pending.front().is_some_and(|&b| b <= t) {
            if let Some(b) = self.pending.pop_front() {
                self.beats.push_back(b);
                self.pause_ref = self.pause_ref.max(b);
                self.pause_sent = false;
                self.asystole_sent = false;
            }
        }
        if self.sample(t).is_some_and(|s| s.lead_off) {
            self.pause_ref = t;
            self.pause_sent = false;
            self.asystole_sent = false;
        }
        let gap = t - self.pause_ref;
        let gap_s = (gap as f64 / self.fs) as f32;
        if !self.pause_sent && gap_s >= self.cfg.pause_s {
            self.pause_sent = true;
            out.push(DspEvent::Pause {
                start_sample: self.pause_ref,
                length_s: gap_s,
                asystole: false,
            });
        }
        if !self.asystole_sent && gap_s >= self.cfg.asystole_s {
            self.asystole_sent = true;
            self.pause_sent = true;
            out.push(DspEvent::Pause {
                start_sample: self.pause_ref,
                length_s: gap_s,
                asystole: true,
            });
        }
        if t + 1 == self.next_end {
            let w = self.close_window(self.next_end - self.win, self.next_end);
            out.push(DspEvent::Window(w));
            self.next_end += self.hop;
        }
        // Forget what no future window needs.
        let keep_from = (self.next_end.saturating_sub(self.win)).min(t.saturating_sub(1));
        while self.base < keep_from && self.hist.len() > 1 {
            self.hist.pop_front();
            self.base += 1;
        }
        while self.beats.len() > 1 && self.beats.get(1).is_some_and(|&b| b < keep_from) {
            self.beats.pop_front();
        }
    }

    fn sample(&self, t: u64) -> Option<&Sample> {
        t.checked_sub(self.base)
            .and_then(|i| self.hist.get(i as usize))
    }

    fn close_window(&self, start: u64, end: u64) -> RhythmWindow {
        let samples: Vec<Sample> = (start..end)
            .filter_map(|t| self.sample(t).copied())
            .collect();
        let beats: Vec<u64> = self
            .beats
            .iter()
            .copied()
            .filter(|&b| b >= start && b < end)
            .collect();
        let rr = rr_intervals(&beats, self.fs);
        let window_s = (end - start) as f32 / self.fs as f32;
        let hr = if rr.is_empty() {
            60.0 * beats.len() as f32 / window_s
        } else {
            heart_rate_bpm(&rr)
        };
        let feats = af_features(&rr);
        let reason = self.quality(&samples, hr);
        let ok = reason.is_empty();
        let mut calls = Vec::with_capacity(3);
        if ok {
            let st = |b: bool| {
                if b {
                    FindingStatus::Present
                } else {
                    FindingStatus::Absent
                }
            };
            calls.push((
                Condition::Bradycardia,
                st(hr < self.cfg.brady_bpm),
                Some(hr),
            ));
            calls.push((
                Condition::Tachycardia,
                st(hr > self.cfg.tachy_bpm),
                Some(hr),
            ));
            calls.push((
                Condition::AtrialFibrillation,
                st(rr_irregular_with(&rr, &self.cfg.af)),
                Some(irregularity(&rr)),
            ));
        } else {
            for c in [
                Condition::Bradycardia,
                Condition::Tachycardia,
                Condition::AtrialFibrillation,
            ] {
                calls.push((c, FindingStatus::Indeterminate, None));
            }
        }
        RhythmWindow {
            start_sample: start,
            end_sample: end,
            beats,
            heart_rate_bpm: hr,
            sdnn_s: sdnn(&rr),
            rmssd_s: rmssd(&rr),
            irregularity: irregularity(&rr),
            af_features: feats,
            quality_ok: ok,
            quality_reason: reason,
            filtered_mv: samples.iter().map(|s| s.filtered).collect(),
            rr_s: rr,
            calls,
        }
    }

    /// Empty when the window is good; otherwise the (first) reason.
    fn quality(&self, s: &[Sample], hr: f32) -> String {
        if s.is_empty() {
            return "no samples".into();
        }
        if s.iter().any(|v| v.lead_off) {
            return "lead 0 off".into();
        }
        let sat = s
            .iter()
            .filter(|v| v.raw.abs() >= self.cfg.saturation_mv)
            .count();
        if sat as f32 > self.cfg.max_saturated_frac * s.len() as f32 {
            return format!(
                "saturation ({sat} samples at ±{} mV)",
                self.cfg.saturation_mv
            );
        }
        let mut f: Vec<f32> = s.iter().map(|v| v.filtered).collect();
        f.sort_unstable_by(f32::total_cmp);
        let ptp = f[f.len() - 1] - f[0];
        if ptp < self.cfg.flat_mv {
            return format!("flat line ({ptp:.3} mV peak to peak)");
        }
        // Robust amplitude: 99.5th minus 0.5th percentile.
        let k = f.len() / 200;
        let robust = (f[f.len() - 1 - k] - f[k]).max(1e-6);
        let hf_rms = (s
            .iter()
            .map(|v| f64::from(v.hf) * f64::from(v.hf))
            .sum::<f64>()
            / s.len() as f64)
            .sqrt() as f32;
        let ratio = hf_rms / robust;
        if ratio > self.cfg.max_hf_noise_ratio {
            return format!("high-frequency noise ({ratio:.3} of the QRS amplitude)");
        }
        if hr > self.cfg.max_plausible_bpm {
            return format!("implausible beat count ({hr:.0} bpm)");
        }
        String::new()
    }
}

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

use crate::filter::MonitorFilter;
use crate::qrs::QrsDetector;
use crate::quality::{
    QualityConfig, QualityFilters, QualityIndices, QualitySample, SecondDetector, WindowSignals,
};
use crate::rhythm::{
    af_features, heart_rate_bpm, irregularity, rmssd, rr_intervals, rr_irregular_with, sdnn,
    IrregularityThresholds, PvcClassifier, PvcConfig, AF_FEATURES,
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
    /// Signal-quality indices and verdict thresholds ([`crate::quality`]).
    pub quality: QualityConfig,
    /// PVC detection and the frequent-PVC call ([`crate::rhythm::PvcClassifier`]).
    pub pvc: PvcConfig,
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
            quality: QualityConfig::default(),
            pvc: PvcConfig::default(),
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
    /// Quality score, 0 (unusable) … 1 (clean) ([`crate::quality::QualityVerdict`]).
    pub quality_score: f32,
    /// The quality indices behind the verdict.
    pub quality: QualityIndices,
    /// Beats of the window classified as PVCs (absolute sample indices). A beat is
    /// classified when it is final, so every beat of the window is.
    pub pvc_beats: Vec<u64>,
    /// PVCs per minute over the last `pvc.span_s` up to the window's end.
    pub pvc_per_min: f32,
    /// Filtered lead-0 samples of the window (mV), for display.
    pub filtered_mv: Vec<f32>,
    /// Rhythm calls: bradycardia, tachycardia (value: bpm), atrial fibrillation
    /// (value: irregularity) and frequent PVCs (value: PVCs per minute);
    /// Indeterminate with no value on bad signal.
    pub calls: Vec<(Condition, FindingStatus, Option<f32>)>,
}

/// What [`StreamDsp::push`] emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// One window every few seconds per stream: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    bands: QualitySample,
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
    qf: QualityFilters,
    det: QrsDetector,
    det2: SecondDetector,
    /// Beats of the second detector (for bSQI).
    beats2: VecDeque<u64>,
    pvc: PvcClassifier,
    /// PVCs of the last `pvc.span_s` (and of windows still open).
    pvcs: VecDeque<u64>,
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
        let mains = f64::from(cfg.mains_hz);
        Self {
            cfg: cfg.clone(),
            fs,
            n_leads: n_leads.max(1),
            n: 0,
            filter: MonitorFilter::with_mains(fs, mains),
            qf: QualityFilters::new(fs, mains),
            det,
            det2: SecondDetector::new(fs),
            beats2: VecDeque::new(),
            pvc: PvcClassifier::new(&cfg.pvc, fs),
            pvcs: VecDeque::new(),
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
        let bands = self.qf.step(x);
        self.hist.push_back(Sample {
            raw: x,
            filtered,
            bands,
            lead_off,
        });
        self.scratch.clear();
        self.det2.step(bands.qrs, &mut self.scratch);
        self.beats2.extend(self.scratch.iter().copied());
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
                self.classify_beat(b);
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
        let keep_from = (self.next_end.saturating_sub(self.win))
            .min(t.saturating_sub(self.pvc.samples_before().max(1) as u64));
        while self.base < keep_from && self.hist.len() > 1 {
            self.hist.pop_front();
            self.base += 1;
        }
        while self.beats.len() > 1 && self.beats.get(1).is_some_and(|&b| b < keep_from) {
            self.beats.pop_front();
        }
        let tol = self.match_tol();
        while self.beats2.front().is_some_and(|&b| b + tol < keep_from) {
            self.beats2.pop_front();
        }
        let span = (f64::from(self.cfg.pvc.span_s.max(0.0)) * self.fs) as u64;
        let pvc_from = keep_from.min(t.saturating_sub(span));
        while self.pvcs.front().is_some_and(|&b| b < pvc_from) {
            self.pvcs.pop_front();
        }
    }

    fn match_tol(&self) -> u64 {
        (f64::from(self.cfg.quality.match_ms.max(0.0)) / 1000.0 * self.fs).round() as u64
    }

    /// PVC classification of a beat that just became final; the samples around it
    /// are in the history (the decision latency exceeds the segment).
    fn classify_beat(&mut self, b: u64) {
        let from = b.checked_sub(self.pvc.samples_before() as u64);
        let to = b + self.pvc.samples_after() as u64;
        let (mut f, mut q) = (Vec::new(), Vec::new());
        if let Some(from) = from {
            for t in from..=to {
                if let Some(s) = self.sample(t) {
                    f.push(s.filtered);
                    q.push(s.bands.qrs);
                }
            }
        }
        if self.pvc.classify(b, &f, &q).pvc {
            self.pvcs.push_back(b);
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
        let tol = self.match_tol();
        let beats2: Vec<u64> = self
            .beats2
            .iter()
            .copied()
            .filter(|&b| b + tol >= start && b < end + tol)
            .collect();
        let raw: Vec<f32> = samples.iter().map(|s| s.raw).collect();
        let filtered: Vec<f32> = samples.iter().map(|s| s.filtered).collect();
        let bands: Vec<QualitySample> = samples.iter().map(|s| s.bands).collect();
        let indices = QualityIndices::compute(
            &WindowSignals {
                fs: self.fs,
                raw: &raw,
                filtered: &filtered,
                bands: &bands,
                lead_off: samples.iter().any(|s| s.lead_off),
                beats: &beats,
                beats2: &beats2,
                start,
                settled_from: self.det2.learning_samples(),
            },
            &self.cfg.quality,
        );
        let verdict = self.cfg.quality.verdict(&indices);
        let ok = verdict.ok;
        let pvc_beats: Vec<u64> = self
            .pvcs
            .iter()
            .copied()
            .filter(|&b| b >= start && b < end)
            .collect();
        let span = ((f64::from(self.cfg.pvc.span_s.max(0.0)) * self.fs) as u64).min(end);
        let recent = self
            .pvcs
            .iter()
            .filter(|&&b| b < end && b + span >= end)
            .count();
        let span_min = (span as f64 / self.fs / 60.0) as f32;
        let pvc_per_min = if span_min > 0.0 {
            recent as f32 / span_min
        } else {
            0.0
        };
        let mut calls = Vec::with_capacity(4);
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
            calls.push((
                Condition::FrequentPvcs,
                st(pvc_per_min >= self.cfg.pvc.frequent_per_min
                    && recent >= self.cfg.pvc.min_count),
                Some(pvc_per_min),
            ));
        } else {
            for c in [
                Condition::Bradycardia,
                Condition::Tachycardia,
                Condition::AtrialFibrillation,
                Condition::FrequentPvcs,
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
            quality_reason: verdict.reason,
            quality_score: verdict.score,
            quality: indices,
            pvc_beats,
            pvc_per_min,
            filtered_mv: filtered,
            rr_s: rr,
            calls,
        }
    }
}

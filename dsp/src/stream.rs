//! Per-stream DSP: filtering, QRS detection, rhythm windows and pause events.
//!
//! [`StreamDsp`] analyses **lead 0**, and takes its beats from leads 0 and 1 when the
//! stream has two leads or more ([`PairedQrs`]: lead 0's beats, except where lead 0
//! is noisy and lead 1 clearly cleaner); lethal arrhythmias are judged over every
//! lead by `crate::lethal`. The pipeline gives models the raw signal (they filter in
//! their own graphs) and filters strips for display when it cuts them, so no other
//! lead is filtered per sample here (lead 1 only inside its QRS detector). Everything
//! runs sample by sample, so the events do not depend on how the input is split into
//! blocks. State stays small (≈ 61 KB for 12 leads at 500 Hz with two-lead beats,
//! [`StreamDsp::state_bytes`]): filtered lead 0 of the open window, running band
//! sums per block instead of per-sample band values, see `docs/dsp.md`.
//!
//! Latency: with `L` = [`StreamDsp::latency_samples`] (the beat detector's fixed
//! latency: the QRS detector's, plus 300 ms with two leads), the window ending at sample `E` (exclusive) is emitted by the `push`
//! that delivers sample `E − 1 + L`; a pause is emitted by the `push` that delivers
//! sample `t + L`, `t` being the first sample at which the beat-free gap reaches
//! `pause_s` (resp. `asystole_s`).

use std::collections::VecDeque;

use ecg_types::{Condition, FindingStatus};
use serde::{Deserialize, Serialize};

use crate::curve_length::CurveLengthDetector;
use crate::filter::MonitorFilter;
use crate::qrs::QrsDetector;
use crate::qrs_pair::PairedQrs;
use crate::quality::{BandSums, QualityConfig, QualityFilters, QualityIndices, WindowSummary};
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
    /// The lethal-arrhythmia alarms over the stream's leads ([`crate::lethal`]); the
    /// pipeline's analyzer runs them beside this lead-0 chain.
    pub lethal: crate::lethal::LethalConfig,
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
            lethal: crate::lethal::LethalConfig::default(),
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
    /// Those of `pvc_beats` whose QRS is also wide (5–15 Hz energy share below
    /// `pvc.wide_ratio` × the template's): ventricular by their shape, not only by
    /// their timing.
    pub wide_pvc_beats: Vec<u64>,
    /// PVCs per minute over the last `pvc.span_s` up to the window's end.
    pub pvc_per_min: f32,
    /// Filtered lead-0 samples of the window (mV), for display.
    pub filtered_mv: Vec<f32>,
    /// Rhythm calls: bradycardia, tachycardia (value: bpm), atrial fibrillation
    /// (value: irregularity) and frequent PVCs (value: PVCs per minute);
    /// Indeterminate with no value on bad signal.
    pub calls: Vec<(Condition, FindingStatus, Option<f32>)>,
}

impl RhythmWindow {
    /// The beats of this window after `last` (the last beat already taken from earlier
    /// windows): successive windows overlap by `window_s − hop_s`, so a consumer that
    /// collects a stream's beats window by window takes each beat once this way.
    pub fn beats_after(&self, last: Option<u64>) -> impl Iterator<Item = u64> + '_ {
        after(&self.beats, last)
    }
}

/// The sample indices of `samples` (ascending) after `last`, the last one a consumer
/// already took from an earlier, overlapping window (`None`: all of them).
pub fn after(samples: &[u64], last: Option<u64>) -> impl Iterator<Item = u64> + '_ {
    samples
        .iter()
        .copied()
        .filter(move |&b| last.is_none_or(|l| b > l))
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

/// A ring of `f32` indexed by absolute sample number: holds the last `len()` samples.
#[derive(Debug, Clone)]
struct Ring {
    buf: Box<[f32]>,
    pos: usize,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![0.0; cap.max(1)].into_boxed_slice(),
            pos: 0,
        }
    }

    /// Stores the sample of the next absolute index.
    #[inline]
    fn push(&mut self, v: f32) {
        self.buf[self.pos] = v;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
    }

    /// Sample `t` when `n` samples have been pushed, if still held.
    #[inline]
    fn get(&self, t: u64, n: u64) -> Option<f32> {
        let cap = self.buf.len() as u64;
        (t < n && n - t <= cap).then(|| self.buf[(t % cap) as usize])
    }

    /// Appends samples `from..to` (all held) to `out`.
    fn copy_to(&self, from: u64, to: u64, out: &mut Vec<f32>) {
        let cap = self.buf.len();
        let mut i = (from % cap as u64) as usize;
        let mut left = (to - from) as usize;
        while left > 0 {
            let k = left.min(cap - i);
            out.extend_from_slice(&self.buf[i..i + k]);
            left -= k;
            i = 0;
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buf)
    }
}

/// A maximal run (at least the clipping plateau length) of identical raw values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    value: f32,
    start: u64,
    /// Exclusive.
    end: u64,
}

/// The beat detector of a stream: the QRS detector on lead 0, or on leads 0 and 1
/// following the cleaner ([`PairedQrs`]) when the stream has two leads or more.
#[derive(Debug, Clone)]
enum Beats {
    One(Box<QrsDetector>),
    Two(Box<PairedQrs>),
}

impl Beats {
    fn new(fs: f64, n_leads: usize) -> Self {
        if n_leads >= 2 {
            Self::Two(Box::new(PairedQrs::new(fs)))
        } else {
            Self::One(Box::new(QrsDetector::new(fs)))
        }
    }

    fn latency_samples(&self) -> usize {
        match self {
            Self::One(d) => d.latency_samples(),
            Self::Two(d) => d.latency_samples(),
        }
    }

    /// Heap bytes (both variants are boxed).
    fn heap_bytes(&self) -> usize {
        match self {
            Self::One(d) => d.state_bytes(),
            Self::Two(d) => d.state_bytes(),
        }
    }

    fn mark_end(&mut self) {
        match self {
            Self::One(d) => d.mark_end(),
            Self::Two(d) => d.mark_end(),
        }
    }

    /// The last samples of leads 0 and 1 the detectors took and lead 1's flag then
    /// (lead 1 as `step` feeds it without a second detector: 0, not flagged).
    fn last(&self) -> (f32, f32, bool) {
        match self {
            Self::One(d) => (d.last_sample(), 0.0, false),
            Self::Two(d) => d.last(),
        }
    }

    fn step(&mut self, x0: f32, x1: f32, off1: bool, out: &mut Vec<u64>) {
        match self {
            Self::One(d) => d.push(&[x0], out),
            Self::Two(d) => d.step(x0, x1, off1, out),
        }
    }
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
    det: Beats,
    det2: CurveLengthDetector,
    /// Beats of the second detector (for bSQI).
    beats2: VecDeque<u64>,
    pvc: PvcClassifier,
    /// PVCs of the last `pvc.span_s` (and of windows still open), and whether each
    /// has a wide QRS.
    pvcs: VecDeque<(u64, bool)>,
    latency: u64,
    win: u64,
    hop: u64,
    next_end: u64,
    /// Filtered lead 0: the open windows plus the decision latency.
    filtered: Ring,
    /// 5–15 Hz band of lead 0 for the PVC segment (latency + segment).
    qrs_band: Ring,
    /// Band sums per block of `block` = gcd(window, hop) samples, from block
    /// `sums_base`; the last one is still filling.
    sums: VecDeque<BandSums>,
    sums_base: u64,
    block: u64,
    /// Reference for the variance sums (the first raw sample).
    shift: f64,
    /// Raw runs of identical values long enough to be a clipping plateau.
    runs: VecDeque<Run>,
    cur_run: Run,
    min_run: u64,
    /// Lead-off intervals `[start, end)` of lead 0; the last may be open.
    off: VecDeque<(u64, u64)>,
    match_tol: u64,
    pvc_span: u64,
    pending: VecDeque<u64>,
    beats: VecDeque<u64>,
    pause_ref: u64,
    pause_sent: bool,
    asystole_sent: bool,
    scratch: Vec<u64>,
    seg_f: Vec<f32>,
    seg_q: Vec<f32>,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn deque_bytes<T>(d: &VecDeque<T>) -> usize {
    d.capacity() * std::mem::size_of::<T>()
}

fn vec_bytes<T>(d: &Vec<T>) -> usize {
    d.capacity() * std::mem::size_of::<T>()
}

impl StreamDsp {
    /// State for a stream at `sample_rate` Hz with `n_leads` leads (lead 0 analysed,
    /// leads 0 and 1 for beats).
    pub fn new(cfg: &DspConfig, sample_rate: u32, n_leads: usize) -> Self {
        let fs = f64::from(sample_rate.max(1));
        let n_leads = n_leads.max(1);
        let det = Beats::new(fs, n_leads);
        let latency = det.latency_samples() as u64;
        let win = ((f64::from(cfg.window_s) * fs).round() as u64).max(1);
        let hop = ((f64::from(cfg.hop_s) * fs).round() as u64).max(1);
        let mains = f64::from(cfg.mains_hz);
        let pvc = PvcClassifier::new(&cfg.pvc, fs);
        let pre = pvc.samples_before() as u64;
        let post = pvc.samples_after() as u64;
        let filter = MonitorFilter::with_mains(fs, mains);
        let min_run = ((f64::from(cfg.quality.clip_run_ms) / 1000.0 * fs).round() as u64).max(2);
        Self {
            cfg: cfg.clone(),
            fs,
            n_leads,
            n: 0,
            filter,
            qf: QualityFilters::new(fs, mains),
            det,
            det2: CurveLengthDetector::new(fs),
            beats2: VecDeque::new(),
            pvc,
            pvcs: VecDeque::new(),
            latency,
            win,
            hop,
            next_end: win,
            filtered: Ring::new((win.max(pre + 1) + latency + post + 2) as usize),
            qrs_band: Ring::new((pre + post + latency + 2) as usize),
            sums: VecDeque::new(),
            sums_base: 0,
            block: gcd(win, hop),
            shift: 0.0,
            runs: VecDeque::new(),
            cur_run: Run {
                value: 0.0,
                start: 0,
                end: 0,
            },
            min_run,
            off: VecDeque::new(),
            match_tol: (f64::from(cfg.quality.match_ms.max(0.0)) / 1000.0 * fs).round() as u64,
            pvc_span: (f64::from(cfg.pvc.span_s.max(0.0)) * fs) as u64,
            pending: VecDeque::new(),
            beats: VecDeque::new(),
            pause_ref: 0,
            pause_sent: false,
            asystole_sent: false,
            scratch: Vec::new(),
            seg_f: Vec::new(),
            seg_q: Vec::new(),
        }
    }

    /// Moves the end of the first rhythm window to sample `end` (exclusive; at least
    /// one window length), the later ones following every hop. The pipeline uses it to
    /// put window boundaries on a grid of device time, so that state rebuilt from any
    /// later frame (after a restart or a rebalance) cuts the same windows, and to keep
    /// a warm-up of signal before the first window. Call before pushing samples.
    #[must_use]
    pub fn with_first_window_end(mut self, end: u64) -> Self {
        debug_assert_eq!(self.n, 0, "first window moved after samples were pushed");
        self.next_end = end.max(self.win);
        self
    }

    /// End (exclusive sample index) of the next window to close.
    pub fn next_window_end(&self) -> u64 {
        self.next_end
    }

    /// Rhythm window length and hop, in samples.
    pub fn window_and_hop(&self) -> (u64, u64) {
        (self.win, self.hop)
    }

    /// Fixed latency (samples) of beat decisions, hence of windows and pauses.
    pub fn latency_samples(&self) -> usize {
        self.latency as usize
    }

    /// Samples per lead pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Bytes of per-stream state, heap (at capacity) and inline: filters, both
    /// detectors, the PVC classifier, the filtered lead-0 history of the open
    /// windows, band sums, beat lists and scratch vectors.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.filter.state_bytes()
            - std::mem::size_of::<MonitorFilter>()
            + self.qf.state_bytes()
            - std::mem::size_of::<QualityFilters>()
            + self.det.heap_bytes()
            + self.det2.state_bytes()
            - std::mem::size_of::<CurveLengthDetector>()
            + self.pvc.state_bytes()
            - std::mem::size_of::<PvcClassifier>()
            + deque_bytes(&self.beats2)
            + deque_bytes(&self.pvcs)
            + self.filtered.bytes()
            + self.qrs_band.bytes()
            + deque_bytes(&self.sums)
            + deque_bytes(&self.runs)
            + deque_bytes(&self.off)
            + deque_bytes(&self.pending)
            + deque_bytes(&self.beats)
            + vec_bytes(&self.scratch)
            + vec_bytes(&self.seg_f)
            + vec_bytes(&self.seg_q)
    }

    /// Ends a recording: feeds the last samples pushed (leads 0 and 1, with their
    /// lead-off flags; 0 before any) again for [`StreamDsp::latency_samples`] + 1
    /// samples, so that every beat of the recording is decided and the windows and
    /// pauses that need them come out, and appends those events to `out`. The beat
    /// detectors search back for no beat that was not yet due when the recording
    /// stopped ([`QrsDetector::finish`]). Events past the recording's end are the
    /// caller's to drop.
    pub fn finish(&mut self, out: &mut Vec<DspEvent>) {
        self.det.mark_end();
        let (x0, x1, off1) = self.det.last();
        let off0 = self.n > 0 && self.off.back().is_some_and(|r| r.1 == self.n);
        for _ in 0..=self.latency {
            let _ = self.step(x0, x1, off0, off1, out);
        }
    }

    /// Feeds a lead-major block (`n_leads × n` samples, mV) with per-lead lead-off
    /// flags for the block, and appends the events it completes to `out`. Only
    /// lead 0 is analysed and filtered; a block whose length is not a multiple of
    /// `n_leads` is truncated to the largest multiple.
    pub fn push(&mut self, samples_mv: &[f32], lead_off: &[bool], out: &mut Vec<DspEvent>) {
        let per_lead = samples_mv.len() / self.n_leads;
        let off0 = lead_off.first().copied().unwrap_or(false);
        let (lead0, rest) = samples_mv.split_at(per_lead);
        if self.n_leads >= 2 {
            let off1 = lead_off.get(1).copied().unwrap_or(false);
            for (&x, &x1) in lead0.iter().zip(&rest[..per_lead]) {
                let _ = self.step(x, x1, off0, off1, out);
            }
        } else {
            for &x in lead0 {
                let _ = self.step(x, 0.0, off0, false, out);
            }
        }
    }

    /// One sample of lead 0 (and of lead 1, which only the beat detector reads);
    /// returns lead 0's filtered value.
    fn step(
        &mut self,
        x: f32,
        x1: f32,
        lead_off: bool,
        lead1_off: bool,
        out: &mut Vec<DspEvent>,
    ) -> f32 {
        let x = if x.is_finite() { x } else { 0.0 };
        let x1 = if x1.is_finite() { x1 } else { 0.0 };
        let now = self.n;
        if now == 0 {
            self.shift = f64::from(x);
            self.cur_run = Run {
                value: x,
                start: 0,
                end: 0,
            };
        }
        let filtered = self.filter.step(x);
        let bands = self.qf.step(x);
        self.filtered.push(filtered);
        self.qrs_band.push(bands.qrs);
        // Band sums of the current block.
        let blk = now / self.block;
        if self.sums.is_empty() {
            self.sums_base = blk;
        }
        while self.sums_base + self.sums.len() as u64 <= blk {
            self.sums.push_back(BandSums::default());
        }
        if let Some(s) = self.sums.back_mut() {
            s.add(x, &bands, self.shift, self.cfg.quality.saturation_mv);
        }
        // Runs of identical raw values.
        if x == self.cur_run.value && now > 0 {
            self.cur_run.end = now + 1;
        } else {
            if self.cur_run.end - self.cur_run.start >= self.min_run {
                self.runs.push_back(self.cur_run);
            }
            self.cur_run = Run {
                value: x,
                start: now,
                end: now + 1,
            };
        }
        if lead_off {
            match self.off.back_mut() {
                Some(r) if r.1 == now => r.1 = now + 1,
                _ => self.off.push_back((now, now + 1)),
            }
        }
        // Beats are rare: extend only when one came out.
        self.det2.step(bands.qrs, &mut self.scratch);
        if !self.scratch.is_empty() {
            self.beats2.extend(self.scratch.drain(..));
        }
        self.det.step(x, x1, lead1_off, &mut self.scratch);
        if !self.scratch.is_empty() {
            self.pending.extend(self.scratch.drain(..));
        }
        self.n += 1;

        // Decisions are final for samples up to `t`.
        let Some(t) = (self.n - 1).checked_sub(self.latency) else {
            return filtered;
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
        if self.off.iter().any(|&(s, e)| s <= t && t < e) {
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
        while self.sums.len() > 1 && (self.sums_base + 1) * self.block <= keep_from {
            self.sums.pop_front();
            self.sums_base += 1;
        }
        while self.runs.front().is_some_and(|r| r.end <= keep_from) {
            self.runs.pop_front();
        }
        while self.off.front().is_some_and(|r| r.1 <= keep_from.min(t)) {
            self.off.pop_front();
        }
        while self.beats.len() > 1 && self.beats.get(1).is_some_and(|&b| b < keep_from) {
            self.beats.pop_front();
        }
        let tol = self.match_tol;
        while self.beats2.front().is_some_and(|&b| b + tol < keep_from) {
            self.beats2.pop_front();
        }
        let pvc_from = keep_from.min(t.saturating_sub(self.pvc_span));
        while self.pvcs.front().is_some_and(|&(b, _)| b < pvc_from) {
            self.pvcs.pop_front();
        }
        filtered
    }

    /// PVC classification of a beat that just became final; the samples around it
    /// are in the history (the decision latency exceeds the segment).
    fn classify_beat(&mut self, b: u64) {
        let from = b.checked_sub(self.pvc.samples_before() as u64);
        let to = b + self.pvc.samples_after() as u64;
        self.seg_f.clear();
        self.seg_q.clear();
        if let Some(from) = from {
            for t in from..=to {
                if let (Some(f), Some(q)) =
                    (self.filtered.get(t, self.n), self.qrs_band.get(t, self.n))
                {
                    self.seg_f.push(f);
                    self.seg_q.push(q);
                }
            }
        }
        let m = self.pvc.classify(b, &self.seg_f, &self.seg_q);
        if m.pvc {
            self.pvcs.push_back((b, m.wide));
        }
    }

    /// Saturated raw samples of the window `[start, end)`: see
    /// [`crate::quality::saturated_fraction`].
    fn saturated(&self, start: u64, end: u64, sums: &BandSums) -> u64 {
        let (lo, hi) = (sums.raw_lo, sums.raw_hi);
        let rail_mv = self.cfg.quality.saturation_mv;
        let rail = rail_mv > 0.0;
        let mut sat = sums.rail;
        if hi > lo {
            for r in self.runs.iter().chain(std::iter::once(&self.cur_run)) {
                let (s, e) = (r.start.max(start), r.end.min(end));
                if e <= s || e - s < self.min_run {
                    continue;
                }
                let at_edge = r.value == hi || r.value == lo;
                if at_edge && !(rail && r.value.abs() >= rail_mv) {
                    sat += e - s;
                }
            }
        }
        sat
    }

    fn close_window(&self, start: u64, end: u64) -> RhythmWindow {
        let mut filtered = Vec::with_capacity((end - start) as usize);
        self.filtered.copy_to(start, end, &mut filtered);
        let mut sums = BandSums::default();
        for (i, s) in self.sums.iter().enumerate() {
            let b0 = (self.sums_base + i as u64) * self.block;
            if b0 >= start && b0 + self.block <= end {
                sums.merge(s);
            }
        }
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
        let tol = self.match_tol;
        let beats2: Vec<u64> = self
            .beats2
            .iter()
            .copied()
            .filter(|&b| b + tol >= start && b < end + tol)
            .collect();
        let indices = QualityIndices::from_sums(
            &WindowSummary {
                fs: self.fs,
                filtered: &filtered,
                sums: &sums,
                saturated: self.saturated(start, end, &sums),
                lead_off: self.off.iter().any(|&(s, e)| s < end && e > start),
                beats: &beats,
                beats2: &beats2,
                start,
                settled_from: self.det2.learning_samples(),
            },
            &self.cfg.quality,
        );
        let verdict = self.cfg.quality.verdict(&indices);
        let ok = verdict.ok;
        let (mut pvc_beats, mut wide_pvc_beats) = (Vec::new(), Vec::new());
        for &(b, wide) in self.pvcs.iter().filter(|&&(b, _)| b >= start && b < end) {
            pvc_beats.push(b);
            if wide {
                wide_pvc_beats.push(b);
            }
        }
        let span = self.pvc_span.min(end);
        let recent = self
            .pvcs
            .iter()
            .filter(|&&(b, _)| b < end && b + span >= end)
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
            wide_pvc_beats,
            pvc_per_min,
            filtered_mv: filtered,
            rr_s: rr,
            calls,
        }
    }
}

//! The one model-input builder: what a model scores, built the same way for the
//! pipeline's analyzer, for `cardiostream eval` and for the training exports.
//!
//! A [`InputBuilder`] serves one model on one stream. It takes the stream's raw
//! samples (millivolts, lead-major, source rate and lead order) from some first
//! sample on, and its closed rhythm windows, and builds [`ModelInput`]s:
//!
//! - **waveform** models get the RAW signal of their leads (derived limb leads where
//!   the stream lacks them), resampled to the model's rate by the polyphase resampler
//!   of [`ecg_dsp::window::Windower`]; windows start at the first sample fed and then
//!   every model hop. Models do their own filtering and scaling inside their graphs,
//!   so the input does not depend on the pipeline's display filter;
//! - **feature** models (`af_rr_v1`) get the RR intervals of the beats the streaming
//!   QRS detector found in the window, and their [`ecg_dsp::af_features`];
//! - waveform models that read the window's beats get the RR intervals of its beats
//!   and their [`ecg_dsp::af_features`] as well: a model with an RR-feature input
//!   (`input.rr_features`) scores them beside the waveform, and the AF episode
//!   tracker ([`crate::episodes`]) weighs the RR intervals with an AF model's call.
//!   A model whose RR input also takes atrial activity (`input.atrial_features`) gets
//!   [`ecg_dsp::atrial::atrial_features`] of its first lead and the same beats after
//!   the RR features.
//!   The analyzer emits such a window once the rhythm windows have covered it, so it
//!   carries every beat of the window, as offline.
//!
//! A window's `quality_ok` is false when a rhythm window of poor signal ended inside
//! it, after its start and at or before its end (and, for feature models, with fewer
//! than 4 RR intervals): the scorer then reports it indeterminate instead of scoring
//! it. Every window is judged once the rhythm windows cover it, live and offline
//! alike.
//!
//! Where windows fall is the caller's: the analyzer puts them on the stream's grid
//! ([`crate::grid`]); `eval` starts them at a record's first sample. The same
//! samples fed from the same first sample give bit-identical inputs either way.

use std::collections::VecDeque;

use ecg_dsp::rhythm::{af_features, rr_intervals};
use ecg_dsp::stream::RhythmWindow;
use ecg_dsp::window::{ModelWindow, WindowError, WindowSpec, Windower};
use ecg_inference::{InputKind, Manifest};
use ecg_types::{DeviceTimeUs, Lead, ModelInput, PatientId, SampleRate, StreamId};

// A model's RR-feature input is the DSP stage's feature vector, then (with
// `input.atrial_features`) the DSP stage's atrial-activity values.
const _: () = assert!(ecg_inference::RR_FEATURES == ecg_dsp::rhythm::AF_FEATURES);
const _: () = assert!(ecg_inference::ATRIAL_FEATURES == ecg_dsp::atrial::ATRIAL_FEATURES);

/// The beats of a window: their times (s from the window's start), RR intervals (s)
/// and RR features; all empty for a window that reads no beats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowBeats {
    /// RR intervals between consecutive beats.
    pub rr_s: Vec<f32>,
    /// [`af_features`] of `rr_s`.
    pub features: Vec<f32>,
    /// The beats' times, from the window's start (empty with no RR interval).
    pub beats_s: Vec<f32>,
    /// For each of `beats_s`, whether the DSP stage's PVC classifier called it a PVC
    /// with a wide QRS (`RhythmWindow::wide_pvc_beats`).
    pub wide_pvc: Vec<bool>,
}

/// Appends to `kept` the samples of `new` (in order) after its last one, and drops
/// those before `keep_from`: successive rhythm windows overlap, so each beat is taken
/// once.
fn take_new(kept: &mut VecDeque<u64>, new: &[u64], keep_from: u64) {
    let last = kept.back().copied();
    kept.extend(ecg_dsp::stream::after(new, last));
    while kept.front().is_some_and(|&b| b < keep_from) {
        kept.pop_front();
    }
}

/// Fewest RR intervals a feature window needs to be scored.
pub const MIN_RR_INTERVALS: usize = 4;

/// Why a model's inputs cannot be built from a stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The stream cannot feed the model (a lead it lacks, a rate or length that does
    /// not fit).
    #[error(transparent)]
    Window(#[from] WindowError),
    /// The model's hop is not a whole number of samples at its rate.
    #[error("hop of {hop_s} s is not a whole number of samples at {rate_hz} Hz")]
    Hop {
        /// Hop (s).
        hop_s: f32,
        /// Model rate (Hz).
        rate_hz: u32,
    },
}

/// A waveform window the builder completed: its first target-rate sample, counted
/// from the first sample fed, and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Index of the window (0 for the first, then one per hop).
    pub index: u64,
    /// First source sample of the window, counted from the first sample fed.
    pub source_start: u64,
    /// The model's samples (mV, lead-major in model order).
    pub samples_mv: Vec<f32>,
}

#[derive(Debug)]
enum Kind {
    Waveform {
        windower: Box<Windower>,
        out: Vec<ModelWindow>,
        hop: u64,
    },
    Features,
}

/// Builds one model's inputs from one stream; see the module documentation.
#[derive(Debug)]
pub struct InputBuilder {
    kind: Kind,
    source_rate: SampleRate,
    /// Beats (source sample index) kept for feature windows.
    beats: VecDeque<u64>,
    /// Those of `beats` the DSP stage's PVC classifier called PVCs with a wide QRS.
    pvcs: VecDeque<u64>,
    /// Source samples of beats to keep behind the latest rhythm window.
    keep: u64,
    /// Whether beats are kept (feature models, and every model offline).
    collect_beats: bool,
    /// Ends (source sample) of the rhythm windows of poor signal, in order, kept as
    /// long as the beats are; the latest is always kept.
    bad_ends: VecDeque<u64>,
    /// Beats from this source sample on are kept whatever `keep` says: the first
    /// sample of the oldest window the caller still holds ([`Self::hold_beats_from`]).
    hold_from: Option<u64>,
    /// End (source sample) of the latest rhythm window taken.
    rhythm_end: u64,
    leads: Vec<Lead>,
    rate: SampleRate,
    /// Whether a waveform window's features end with its atrial-activity values.
    atrial: bool,
}

impl InputBuilder {
    /// A builder for `manifest`'s input from a stream at `source_rate` with
    /// `source_leads`, waveform windows every `hop_s` seconds.
    ///
    /// # Errors
    /// [`InputError`] when the stream cannot feed the model.
    pub fn new(
        manifest: &Manifest,
        hop_s: f32,
        source_rate: SampleRate,
        source_leads: &[Lead],
    ) -> Result<Self, InputError> {
        let input = &manifest.input;
        let keep =
            source_rate.us_to_samples(ecg_types::seconds_to_us(f64::from(manifest.window_s)));
        let (kind, leads, rate) = match input.kind {
            InputKind::AfRrV1 => (Kind::Features, Vec::new(), source_rate),
            InputKind::Waveform => {
                let spec = WindowSpec {
                    window_s: manifest.window_s,
                    hop_s,
                    target_rate_hz: input.sample_rate_hz,
                    leads: input.leads.clone(),
                };
                let windower = match Windower::new(&spec, source_rate.0, source_leads) {
                    Err(WindowError::MissingLead(_)) if input.any_lead => {
                        // A single-lead model reads the stream's first lead.
                        let first = source_leads.first().copied().unwrap_or(Lead::Unspecified);
                        let spec = WindowSpec {
                            leads: vec![first],
                            ..spec
                        };
                        Windower::new(&spec, source_rate.0, source_leads)?
                    }
                    other => other?,
                };
                let hop_exact = f64::from(hop_s) * f64::from(input.sample_rate_hz);
                if (hop_exact - hop_exact.round()).abs() > 1e-6 {
                    return Err(InputError::Hop {
                        hop_s,
                        rate_hz: input.sample_rate_hz,
                    });
                }
                let hop = windower.hop_len();
                let leads = windower.spec().leads.clone();
                (
                    Kind::Waveform {
                        windower: Box::new(windower),
                        out: Vec::new(),
                        hop,
                    },
                    leads,
                    SampleRate(input.sample_rate_hz),
                )
            }
        };
        let collect_beats = matches!(kind, Kind::Features)
            || input.rr_features.is_some()
            || manifest.raises(ecg_types::Condition::AtrialFibrillation);
        Ok(Self {
            kind,
            source_rate,
            beats: VecDeque::new(),
            pvcs: VecDeque::new(),
            keep,
            collect_beats,
            bad_ends: VecDeque::new(),
            hold_from: None,
            rhythm_end: 0,
            leads,
            rate,
            atrial: input.atrial_features && input.kind == InputKind::Waveform,
        })
    }

    /// Whether the model reads the waveform (else per-window features).
    pub fn is_waveform(&self) -> bool {
        matches!(self.kind, Kind::Waveform { .. })
    }

    /// Feeds a raw lead-major block (`source leads × n`, mV) and appends the waveform
    /// windows it completes to `out` (nothing for feature models).
    pub fn push(&mut self, block_mv: &[f32], out: &mut Vec<Cut>) {
        self.cut_with(out, |w, o| w.push(block_mv, o));
    }

    /// Ends the stream offline ([`Windower::finish`]): `last_block_mv` is the block
    /// pushed last. A record shorter than a window yields one zero-padded window.
    pub fn finish(&mut self, last_block_mv: &[f32], out: &mut Vec<Cut>) {
        self.cut_with(out, |w, o| w.finish(last_block_mv, o));
    }

    /// Runs `step` on a waveform model's windower and appends the windows it made on
    /// the hop grid to `out`.
    fn cut_with(
        &mut self,
        out: &mut Vec<Cut>,
        step: impl FnOnce(&mut Windower, &mut Vec<ModelWindow>),
    ) {
        if let Kind::Waveform {
            windower,
            out: o,
            hop,
        } = &mut self.kind
        {
            o.clear();
            step(windower, o);
            Self::cuts(o, *hop, out);
        }
    }

    fn cuts(windows: &mut Vec<ModelWindow>, hop: u64, out: &mut Vec<Cut>) {
        out.extend(windows.drain(..).map(|w| Cut {
            index: w.start_sample / hop.max(1),
            source_start: w.source_start_sample().floor() as u64,
            samples_mv: w.samples_mv,
        }));
    }

    /// Takes a closed rhythm window (sample indices in the same count as the source
    /// samples of feature windows): its beats, and its quality verdict.
    pub fn push_rhythm(&mut self, w: &RhythmWindow) {
        self.rhythm_end = self.rhythm_end.max(w.end_sample);
        if !w.quality_ok {
            self.bad_ends.push_back(w.end_sample);
        }
        let keep_from = w
            .end_sample
            .saturating_sub(self.keep)
            .min(self.hold_from.unwrap_or(u64::MAX));
        while self.bad_ends.len() > 1 && self.bad_ends.front().is_some_and(|&e| e < keep_from) {
            self.bad_ends.pop_front();
        }
        if self.collect_beats {
            take_new(&mut self.beats, &w.beats, keep_from);
            take_new(&mut self.pvcs, &w.wide_pvc_beats, keep_from);
        }
    }

    /// End (source sample) of the latest rhythm window taken: every beat before it
    /// is known.
    pub fn rhythm_end(&self) -> u64 {
        self.rhythm_end
    }

    /// Keeps every beat from source sample `from` on (`None`: only the last window's
    /// worth): the caller holds a window starting there that it has yet to read.
    pub fn hold_beats_from(&mut self, from: Option<u64>) {
        self.hold_from = from;
    }

    /// Whether every rhythm window taken that ends in source samples `(start, end]`
    /// had good signal: the quality of the window `[start, end)` once the rhythm
    /// windows cover it, the same live and offline.
    pub fn quality_of(&self, start: u64, end: u64) -> bool {
        !self.bad_ends.iter().any(|&e| e > start && e <= end)
    }

    /// Whether the builder keeps the stream's beats (feature models, waveform models
    /// with an RR-feature input or that raise AF findings, every model offline): then
    /// [`Self::beats_in`] and [`Self::features`] have them.
    pub fn collects_beats(&self) -> bool {
        self.collect_beats
    }

    /// The beats kept in source samples `[start, end)`: their times from `start`,
    /// RR intervals and features.
    pub fn beats_in(&self, start: u64, end: u64) -> WindowBeats {
        let beats: Vec<u64> = self
            .beats
            .iter()
            .copied()
            .filter(|&b| b >= start && b < end)
            .collect();
        let fs = self.source_rate.hz();
        let rr_s = rr_intervals(&beats, fs);
        let features = af_features(&rr_s).to_vec();
        let at = |b: u64| ((b - start) as f64 / fs) as f32;
        let (beats_s, wide_pvc) = if rr_s.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (
                beats.iter().map(|&b| at(b)).collect(),
                beats
                    .iter()
                    .map(|b| self.pvcs.binary_search(b).is_ok())
                    .collect(),
            )
        };
        WindowBeats {
            rr_s,
            features,
            beats_s,
            wide_pvc,
        }
    }

    /// A feature window's beats ([`Self::beats_in`]), and whether it may be scored:
    /// good signal and at least [`MIN_RR_INTERVALS`].
    pub fn features(&self, start: u64, end: u64) -> (WindowBeats, bool) {
        let beats = self.beats_in(start, end);
        let ok = self.quality_of(start, end) && beats.rr_s.len() >= MIN_RR_INTERVALS;
        (beats, ok)
    }

    /// Waveform hop in target samples (0 for feature models).
    pub fn hop_len(&self) -> u64 {
        match &self.kind {
            Kind::Waveform { hop, .. } => *hop,
            Kind::Features => 0,
        }
    }

    /// The model input of a waveform cut or of features, for the window `[start,
    /// end)` of device time.
    #[allow(clippy::too_many_arguments)]
    pub fn input(
        &self,
        stream: &StreamId,
        patient: &PatientId,
        start: DeviceTimeUs,
        end: DeviceTimeUs,
        samples_mv: Vec<f32>,
        beats: WindowBeats,
        quality_ok: bool,
    ) -> ModelInput {
        let mut features = beats.features;
        if self.atrial {
            let per_lead = samples_mv.len() / self.leads.len().max(1);
            features.extend(ecg_dsp::atrial::atrial_features(
                &samples_mv[..per_lead],
                self.rate.hz(),
                &beats.beats_s,
            ));
        }
        ModelInput {
            stream: stream.clone(),
            patient: patient.clone(),
            start,
            end,
            sample_rate: self.rate,
            leads: self.leads.clone(),
            samples_mv,
            rr_s: beats.rr_s,
            beats_s: beats.beats_s,
            wide_pvc: beats.wide_pvc,
            features,
            quality_ok,
        }
    }

    /// Bytes of per-stream state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.beats.capacity() * 8
            + self.pvcs.capacity() * 8
            + match &self.kind {
                Kind::Waveform { windower, .. } => windower.state_bytes(),
                Kind::Features => 0,
            }
    }
}

/// The inputs a model gets from a whole record offline, through the same builder as
/// the pipeline: windows start at the record's first sample and then every `hop_s`,
/// each ending within the record; a record shorter than one window gets one window,
/// zero-padded (waveform) or over what there is (features). The DSP chain runs over
/// the record in one-second blocks, exactly as it runs in the pipeline, and its tail
/// is held for the QRS detector's latency so the last beats come out.
///
/// `samples_mv` is lead-major (`leads.len() × n`), raw millivolts. Every input's
/// `quality_ok` is the pipeline's verdict; callers that score regardless may ignore
/// it.
///
/// # Errors
/// [`InputError`] when the record cannot feed the model.
pub fn record_inputs(
    manifest: &Manifest,
    hop_s: f32,
    rate: SampleRate,
    leads: &[Lead],
    samples_mv: &[f32],
    dsp: &ecg_dsp::stream::DspConfig,
) -> Result<Vec<ModelInput>, InputError> {
    use ecg_dsp::stream::{DspEvent, StreamDsp};
    let n_leads = leads.len().max(1);
    let n = samples_mv.len() / n_leads;
    let stream = StreamId::new("record").map_err(|e| WindowError::InvalidSpec(e.to_string()))?;
    let patient = PatientId::new("record").map_err(|e| WindowError::InvalidSpec(e.to_string()))?;
    let mut builder = InputBuilder::new(manifest, hop_s, rate, leads)?;
    // Offline, every beat of the record is kept until the windows are cut (waveform
    // windows get the features of their beats too, for training exports).
    builder.keep = u64::MAX;
    builder.collect_beats = true;
    let mut cfg = dsp.clone();
    let len_s = n as f32 / rate.0.max(1) as f32;
    if len_s < cfg.window_s {
        cfg.window_s = len_s.floor().max(1.0);
        cfg.hop_s = cfg.hop_s.min(cfg.window_s);
    }
    let mut dsp = StreamDsp::new(&cfg, rate.0, n_leads);
    let block = rate.0.max(1) as usize;
    let lead_off = vec![false; n_leads];
    let mut events = Vec::new();
    let mut cuts = Vec::new();
    let mut chunk = Vec::with_capacity(block * n_leads);
    // The rhythm windows that lie inside the record.
    let push_rhythm = |builder: &mut InputBuilder, events: &[DspEvent]| {
        for ev in events {
            if let DspEvent::Window(w) = ev {
                if w.end_sample <= n as u64 {
                    builder.push_rhythm(w);
                }
            }
        }
    };
    let mut at = 0usize;
    while at < n {
        let k = block.min(n - at);
        chunk.clear();
        for l in 0..n_leads {
            chunk.extend_from_slice(&samples_mv[l * n + at..l * n + at + k]);
        }
        events.clear();
        dsp.push(&chunk, &lead_off, &mut events);
        builder.push(&chunk, &mut cuts);
        if at + k == n {
            builder.finish(&chunk, &mut cuts);
        }
        push_rhythm(&mut builder, &events);
        at += k;
    }
    // The last samples again for the latency, so that the record's last beats and
    // windows come out.
    events.clear();
    dsp.finish(&mut events);
    push_rhythm(&mut builder, &events);
    let clock = ecg_types::Timebase::new(DeviceTimeUs(0), rate);
    let win_us = ecg_types::seconds_to_us(f64::from(manifest.window_s));
    let hop_us = ecg_types::seconds_to_us(f64::from(hop_s)).max(1);
    let mut out = Vec::new();
    if builder.is_waveform() {
        let len = rate.us_to_samples(win_us);
        for c in cuts {
            let start_us = c.index as i64 * hop_us;
            let end = c.source_start + len;
            let ok = builder.quality_of(c.source_start, end);
            let beats = builder.beats_in(c.source_start, end);
            out.push(builder.input(
                &stream,
                &patient,
                DeviceTimeUs(start_us),
                DeviceTimeUs(start_us + win_us),
                c.samples_mv,
                beats,
                ok,
            ));
        }
    } else {
        let len = rate.us_to_samples(win_us);
        let hop = rate.us_to_samples(hop_us).max(1);
        let mut starts: Vec<u64> = (0..)
            .map(|k| k * hop)
            .take_while(|s| s + len <= n as u64)
            .collect();
        if starts.is_empty() {
            starts.push(0);
        }
        for s in starts {
            let end = (s + len).min(n as u64);
            let (beats, ok) = builder.features(s, end);
            out.push(builder.input(
                &stream,
                &patient,
                DeviceTimeUs(clock.time_of(s)),
                DeviceTimeUs(clock.time_of(end)),
                Vec::new(),
                beats,
                ok,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ecg_dsp::quality::QualityIndices;

    fn rhythm(end_sample: u64, quality_ok: bool) -> RhythmWindow {
        RhythmWindow {
            start_sample: end_sample.saturating_sub(2500),
            end_sample,
            beats: Vec::new(),
            rr_s: Vec::new(),
            heart_rate_bpm: 60.0,
            sdnn_s: 0.0,
            rmssd_s: 0.0,
            irregularity: 0.0,
            af_features: [0.0; ecg_dsp::rhythm::AF_FEATURES],
            quality_ok,
            quality_reason: String::new(),
            quality_score: 1.0,
            quality: QualityIndices::default(),
            pvc_beats: Vec::new(),
            wide_pvc_beats: Vec::new(),
            pvc_per_min: 0.0,
            filtered_mv: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// A window is judged by the rhythm windows that end inside it: a poor one that
    /// ends before it or after it does not gate it.
    #[test]
    fn a_window_is_judged_by_the_rhythm_windows_ending_inside_it() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/af-rr/af_rr.toml");
        let manifest = Manifest::load(&path).unwrap();
        let mut b = InputBuilder::new(&manifest, 30.0, SampleRate(250), &[Lead::II]).unwrap();
        // Rhythm windows every 5 s (1,250 samples); the one ending at 10,000 is poor.
        for k in 1..=12u64 {
            b.push_rhythm(&rhythm(k * 1250, k != 8));
        }
        assert!(!b.quality_of(2_500, 10_000), "it ends at the window's end");
        assert!(b.quality_of(2_500, 9_999), "it ends just after the window");
        assert!(!b.quality_of(5_000, 12_500), "the poor window ends inside");
        assert!(
            b.quality_of(10_000, 15_000),
            "it ends at the window's start"
        );
        assert!(b.quality_of(0, 8_750), "it ends after the window");
    }

    /// A model whose RR input takes atrial activity gets the atrial values of its
    /// first lead and the window's beats after the RR features; others get the RR
    /// features alone.
    #[test]
    fn atrial_values_follow_the_rr_features_when_the_model_asks() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/af-cnn/af_cnn.toml");
        let mut manifest = Manifest::load(&path).unwrap();
        let (stream, patient) = (StreamId::new("s").unwrap(), PatientId::new("p").unwrap());
        // 30 s at 125 Hz: a QRS and a P wave every 0.8 s.
        let beats_s: Vec<f32> = (0..37).map(|k| 0.3 + 0.8 * k as f32).collect();
        let samples: Vec<f32> = (0..3750)
            .map(|i| {
                let t = i as f32 / 125.0;
                beats_s
                    .iter()
                    .map(|b| {
                        (-((t - b) / 0.012).powi(2)).exp()
                            + 0.1 * (-((t - b + 0.16) / 0.025).powi(2)).exp()
                    })
                    .sum()
            })
            .collect();
        let rr_s: Vec<f32> = beats_s.windows(2).map(|p| p[1] - p[0]).collect();
        let beats = WindowBeats {
            features: af_features(&rr_s).to_vec(),
            rr_s,
            beats_s: beats_s.clone(),
            wide_pvc: Vec::new(),
        };
        for atrial in [false, true] {
            manifest.input.atrial_features = atrial;
            let b = InputBuilder::new(&manifest, 10.0, SampleRate(250), &[Lead::II]).unwrap();
            let w = b.input(
                &stream,
                &patient,
                DeviceTimeUs(0),
                DeviceTimeUs(30_000_000),
                samples.clone(),
                beats.clone(),
                true,
            );
            assert_eq!(w.features.len(), manifest.input.rr_len());
            assert_eq!(w.features[..8], beats.features[..]);
            if atrial {
                let want = ecg_dsp::atrial::atrial_features(&samples, 125.0, &beats_s);
                assert_eq!(w.features[8..], want[..]);
                assert!(want[1] > 0.9, "the P waves are found: {want:?}");
            }
        }
    }
}

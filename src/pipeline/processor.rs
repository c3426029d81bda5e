//! The synchronous heart of the pipeline: frames in, findings out.
//!
//! Per stream, frames pass a **sequencer** (duplicates by sequence number dropped,
//! frames reordered within a horizon of device time, missing frames reported as a
//! signal gap, device-clock jumps detected) and then the **analysis**: DSP, rhythm
//! windows, model windows. Windows sit on a per-stream grid of device time (rhythm
//! window ends at `phase + k · hop`, model windows at `phase' + k · model hop`, the
//! phases fixed by a stable hash of the stream id, [`Phases`]), and an analysis only
//! emits windows that start a warm-up after its first sample. So an
//! analysis rebuilt from any later frame — after a crash, a rebalance or a gap — cuts
//! the same windows with the same idempotency keys, and never a half-filled one.
//!
//! The processor also says, per partition, which offset is safe to commit: the
//! lowest offset of any frame a stream still needs to rebuild its next unfinished
//! window (with warm-up), frames waiting in reorder buffers included. Replaying from
//! there re-emits at most windows already published (same keys) and loses none.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecg_dsp::rhythm::{af_features, rr_intervals};
use ecg_dsp::stream::{DspConfig, DspEvent, RhythmWindow, StreamDsp};
use ecg_dsp::window::{ModelWindow, WindowSpec, Windower};
use ecg_inference::{InputKind, Model, Scored};

use super::strip::StripBuffer;
use ecg_ingest::codec;
use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, Frame, PatientId, SampleRate,
    StreamId, Window,
};
use serde::{Deserialize, Serialize};

use crate::telemetry::Metrics;

/// Per-stream ordering, timing and warm-up settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Signal an analysis sees before its first window (s): filters settle and the
    /// QRS detector learns its thresholds. Also what a restart replays before the
    /// first unfinished window.
    pub warmup_s: f32,
    /// Frames that arrive ahead of a missing one wait until this much device time
    /// has piled up behind the gap (ms); then the missing frames are a signal gap.
    /// A new stream's first frames wait as long, so that a reordered start is sorted.
    pub reorder_horizon_ms: u32,
    /// A frame whose device time is off the stream's sample count by more than this
    /// (ms) is a device-clock jump: the analysis restarts on the new clock.
    pub clock_jump_ms: u32,
    /// A stream silent this long (s, wall clock) has its state dropped, so that it
    /// no longer holds back its partition's committed offset.
    pub idle_evict_s: f32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            warmup_s: 5.0,
            reorder_horizon_ms: 2000,
            clock_jump_ms: 500,
            idle_evict_s: 300.0,
        }
    }
}

/// Most frames one stream's reorder buffer holds, whatever their duration.
const MAX_PENDING: usize = 1024;

/// One consumed message, as the processor sees it.
#[derive(Debug, Clone)]
pub struct Input {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// When the message was produced (its Kafka timestamp), µs since the epoch, if
    /// known: a window this frame completes closed then.
    pub timestamp_us: Option<i64>,
}

/// A frame that failed validation, bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original message.
    pub input: Input,
    /// Short error kind (`DecodeError::kind`).
    pub kind: &'static str,
    /// The full error message.
    pub reason: String,
}

/// Live state of one stream, for the console (no samples, no identifiers beyond the
/// pseudonymous ones the console is entitled to show).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Stream id.
    pub stream: StreamId,
    /// Pseudonymous patient.
    pub patient: PatientId,
    /// Heart rate of the last rhythm window, bpm.
    pub heart_rate_bpm: Option<f32>,
    /// Whether the last window had good signal.
    pub quality_ok: bool,
    /// Why not, if not.
    pub quality_reason: String,
    /// Device time of the end of the last window.
    pub last_window_end: DeviceTimeUs,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Findings to publish.
    pub findings: Vec<Finding>,
    /// Per finding (same order), when its window closed, µs since the epoch: the
    /// timestamp of the message whose frame completed it (detector look-ahead
    /// included), or, for a message without one, when the processor took its batch.
    pub closed_us: Vec<i64>,
    /// Frames to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Updated stream statuses.
    pub statuses: Vec<StreamStatus>,
    /// Per partition, the next offset that is safe to commit once the findings and
    /// dead letters above are published.
    pub offsets: Vec<(i32, i64)>,
    /// Partitions whose state was dropped before this batch (revoked or lost).
    pub revoked: Vec<i32>,
}

/// The source of rule-based rhythm findings.
pub fn rhythm_source() -> FindingSource {
    FindingSource::Detector {
        name: "rhythm".into(),
    }
}

/// The source of stream-continuity findings (signal gaps, clock jumps).
pub fn ingest_source() -> FindingSource {
    FindingSource::Detector {
        name: "ingest".into(),
    }
}

/// Window timing in device microseconds.
#[derive(Debug, Clone, Copy)]
struct Grid {
    win_us: i64,
    hop_us: i64,
    /// Longest feature-model window (0 without feature models).
    model_len_us: i64,
    warmup_us: i64,
}

/// Per model: its window length and cadence (µs).
#[derive(Debug, Clone, Copy)]
struct ModelTiming {
    len_us: i64,
    hop_us: i64,
}

/// Waveform windows of one model for one stream, on the model's cadence grid.
#[derive(Debug)]
struct Wave {
    model: usize,
    windower: Windower,
    /// Device time of the first sample fed (on the stream's cadence grid).
    origin_us: i64,
    /// The stream's offset of that grid: `phase_us + k · hop`.
    phase_us: i64,
    /// Source sample index of the first sample fed.
    feed_from: u64,
    timing: ModelTiming,
    emitted: u64,
    out: Vec<ModelWindow>,
}

fn us(seconds: f32) -> i64 {
    (f64::from(seconds) * 1e6).round() as i64
}

/// Smallest multiple of `step` that is `>= t`.
fn ceil_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step + if t.rem_euclid(step) == 0 { 0 } else { step }
}

/// Nearest multiple of `step`.
fn snap(t: i64, step: i64) -> i64 {
    (t + step / 2).div_euclid(step) * step
}

/// Granularity of the rhythm-grid phase (µs): 50 slots in a 5 s hop.
const PHASE_STEP_US: i64 = 100_000;

/// Where one stream's window grids sit in device time, from a stable hash of its id.
///
/// Were every stream's windows on one grid (multiples of the hop since the epoch),
/// all of a process's streams would close a rhythm window in the same instant every
/// hop, and every model window in the same instant every model hop: the processing
/// thread would get a burst of N windows at once, and the findings of the last of
/// them would wait behind all the others. Offsetting each stream's grids spreads
/// those closes evenly over the hop; because the offsets depend on nothing but the
/// stream id (FNV-1a, stable across processes and versions, unlike the std hasher),
/// a replay in any process after any restart cuts the same windows under the same
/// idempotency keys.
#[derive(Debug, Clone, PartialEq)]
struct Phases {
    /// Rhythm windows end at `rhythm_us + k · hop` (`0 ≤ rhythm_us < hop`, a
    /// multiple of [`PHASE_STEP_US`]).
    rhythm_us: i64,
    /// Per model (in the processor's order), its windows end at `model_us[i] + k ·
    /// model hop`: `rhythm_us` plus a multiple of the rhythm hop, so that a model
    /// window ends where a rhythm window does.
    model_us: Vec<i64>,
}

impl Phases {
    fn of(stream: &str, rhythm_hop_us: i64, timings: &[ModelTiming]) -> Self {
        let h = stream.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let hop = rhythm_hop_us.max(1);
        let sub_slots = (hop / PHASE_STEP_US).max(1) as u64;
        let rhythm_us = (h % sub_slots) as i64 * PHASE_STEP_US.min(hop);
        // The remaining bits pick the slot within each model's cadence.
        let rest = h / sub_slots;
        let model_us = timings
            .iter()
            .map(|t| {
                let slots = (t.hop_us / hop).max(1) as u64;
                rhythm_us + (rest % slots) as i64 * hop
            })
            .collect();
        Self {
            rhythm_us,
            model_us,
        }
    }
}

/// A processed frame an analysis may still need on a rebuild.
#[derive(Debug, Clone, Copy)]
struct FrameMark {
    end_us: i64,
    offset: i64,
}

/// DSP and windows of one stream since its last (re)start.
#[derive(Debug)]
struct Analysis {
    dsp: StreamDsp,
    /// The stream's grids.
    phases: Phases,
    sample_rate: SampleRate,
    n_leads: usize,
    /// Device time of sample 0.
    t_origin: i64,
    /// Samples per lead pushed.
    samples: u64,
    /// Start of the first rhythm window this analysis emits.
    first_start_us: i64,
    /// Started after a signal gap: the first window says the gap is over.
    after_gap: bool,
    /// Beats (sample index) kept for model windows.
    beats: VecDeque<u64>,
    /// End sample of the last window of poor quality.
    bad_until: u64,
    lead_off_in_window: bool,
    frames: VecDeque<FrameMark>,
    /// Waveform models' windowers (those the stream's leads can feed).
    waves: Vec<Wave>,
    scratch: Vec<f32>,
    sub: Vec<f32>,
    events: Vec<DspEvent>,
    /// The first lead's recent signal, for the strips of present findings.
    strip: StripBuffer,
}

impl Analysis {
    fn new(ctx: &Ctx<'_>, first: &Frame, after_gap: bool) -> Self {
        let (cfg, grid) = (ctx.dsp, ctx.grid);
        let t_origin = first.t0.0;
        let phases = Phases::of(first.stream.as_str(), grid.hop_us, ctx.timings);
        let first_end_us = ceil_to(
            t_origin + grid.warmup_us + grid.win_us - phases.rhythm_us,
            grid.hop_us,
        ) + phases.rhythm_us;
        let fs = first.sample_rate.hz();
        let first_end = ((first_end_us - t_origin) as f64 * fs / 1e6).round() as u64;
        let first_start_us = first_end_us - grid.win_us;
        let mut waves = Vec::new();
        for (i, m) in ctx.models.iter().enumerate() {
            let input = &m.manifest().input;
            if input.kind != InputKind::Waveform {
                continue;
            }
            let timing = ctx.timings[i];
            let spec = WindowSpec {
                window_s: m.manifest().window_s,
                hop_s: (timing.hop_us as f64 / 1e6) as f32,
                target_rate_hz: input.sample_rate_hz,
                leads: input.leads.clone(),
            };
            match Windower::new(&spec, first.sample_rate.0, &first.leads) {
                Ok(windower) => {
                    let phase_us = phases.model_us[i];
                    let origin_us = ceil_to(first_start_us - phase_us, timing.hop_us) + phase_us;
                    waves.push(Wave {
                        model: i,
                        windower,
                        origin_us,
                        phase_us,
                        feed_from: ((origin_us - t_origin) as f64 * fs / 1e6).round() as u64,
                        timing,
                        emitted: 0,
                        out: Vec::new(),
                    });
                }
                Err(e) => {
                    tracing::debug!(model = %m.manifest().id, error = %e, "model not applicable to stream")
                }
            }
        }
        Self {
            dsp: StreamDsp::new(cfg, first.sample_rate.0, first.leads.len())
                .with_first_window_end(first_end),
            phases,
            sample_rate: first.sample_rate,
            n_leads: first.leads.len(),
            t_origin,
            samples: 0,
            first_start_us,
            after_gap,
            beats: VecDeque::new(),
            bad_until: 0,
            lead_off_in_window: false,
            frames: VecDeque::new(),
            waves,
            scratch: Vec::new(),
            sub: Vec::new(),
            events: Vec::new(),
            strip: StripBuffer::new(
                first.leads.first().copied().unwrap_or(ecg_types::Lead::II),
                fs.round() as u32,
            ),
        }
    }

    /// Feeds the block just pushed (source samples `before..before + n`, lead-major in
    /// `scratch`) to the waveform windowers; completed windows go to `mw`.
    fn feed_waves(
        &mut self,
        stream: &StreamId,
        patient: &PatientId,
        before: u64,
        n: usize,
        mw: &mut [Vec<Window>],
    ) {
        let n_leads = self.n_leads;
        for wave in &mut self.waves {
            let end = before + n as u64;
            if end <= wave.feed_from {
                continue;
            }
            let skip = wave.feed_from.saturating_sub(before) as usize;
            self.sub.clear();
            for l in 0..n_leads {
                self.sub
                    .extend_from_slice(&self.scratch[l * n + skip..(l + 1) * n]);
            }
            wave.out.clear();
            wave.windower.push(&self.sub, &mut wave.out);
            for mwin in wave.out.drain(..) {
                let rate = mwin.sample_rate_hz;
                let start_us = snap(
                    wave.origin_us - wave.phase_us
                        + (mwin.start_sample as f64 * 1e6 / f64::from(rate)).round() as i64,
                    wave.timing.hop_us,
                ) + wave.phase_us;
                let src_start = (mwin.source_start_sample()).floor() as u64 + wave.feed_from;
                wave.emitted += 1;
                mw[wave.model].push(Window {
                    stream: stream.clone(),
                    patient: patient.clone(),
                    start: DeviceTimeUs(start_us),
                    end: DeviceTimeUs(start_us + wave.timing.len_us),
                    sample_rate: SampleRate(rate),
                    leads: wave.windower.spec().leads.clone(),
                    samples_mv: mwin.samples_mv,
                    rr_s: Vec::new(),
                    features: Vec::new(),
                    quality_ok: self.bad_until <= src_start,
                });
            }
        }
    }

    fn time_of(&self, sample: u64) -> i64 {
        self.t_origin + self.sample_rate.samples_to_us(sample)
    }

    /// Device time the next frame should start at.
    fn expected_t0(&self) -> i64 {
        self.time_of(self.samples)
    }

    /// End (device µs) of the rhythm window at `end_sample`, on the stream's grid.
    fn window_end_us(&self, end_sample: u64, grid: &Grid) -> i64 {
        let p = self.phases.rhythm_us;
        snap(self.time_of(end_sample) - p, grid.hop_us) + p
    }

    /// Start (device µs) of the earliest window this analysis has yet to emit, less
    /// the warm-up: the signal a rebuild must replay.
    fn needed_from(&self, grid: &Grid, timings: &[ModelTiming], feature_models: &[usize]) -> i64 {
        let next_end = self.window_end_us(self.dsp.next_window_end(), grid);
        let mut need = next_end - grid.win_us;
        for &i in feature_models {
            let (t, p) = (timings[i], self.phases.model_us[i]);
            let mut m_end = ceil_to(next_end - p, t.hop_us) + p;
            while m_end - t.len_us < self.first_start_us {
                m_end += t.hop_us;
            }
            need = need.min(m_end - t.len_us);
        }
        for w in &self.waves {
            need = need.min(w.origin_us + w.emitted as i64 * w.timing.hop_us);
        }
        need - grid.warmup_us
    }

    /// Forgets frames no rebuild needs; the lowest offset of those it does.
    fn resume_offset(
        &mut self,
        grid: &Grid,
        timings: &[ModelTiming],
        feature_models: &[usize],
    ) -> Option<i64> {
        let need = self.needed_from(grid, timings, feature_models);
        while self.frames.front().is_some_and(|f| f.end_us <= need) {
            self.frames.pop_front();
        }
        self.frames.iter().map(|f| f.offset).min()
    }
}

/// Per-stream state: the sequencer and the current analysis.
#[derive(Debug)]
struct Stream {
    partition: i32,
    patient: PatientId,
    /// Next sequence number to process (`None` until the stream has started).
    next_seq: Option<u64>,
    /// Frames waiting for a missing predecessor (or for the start), by sequence number.
    pending: BTreeMap<u64, (Frame, i64)>,
    analysis: Option<Analysis>,
    /// Whether the next analysis follows a gap.
    gap_before_next: bool,
    last_seen: Instant,
    /// Lowest offset the stream still needs ([`Analysis::resume_offset`] and pending
    /// frames), as of the last batch it took part in.
    resume: Option<i64>,
    /// Took frames since `resume` was computed.
    dirty: bool,
}

impl Stream {
    fn update_resume(&mut self, grid: &Grid, timings: &[ModelTiming], feature_models: &[usize]) {
        self.resume = self
            .analysis
            .as_mut()
            .and_then(|a| a.resume_offset(grid, timings, feature_models))
            .into_iter()
            .chain(self.pending.values().map(|(_, o)| *o))
            .min();
        self.dirty = false;
    }
}

/// The synchronous part of the pipeline: frames in, findings out.
#[derive(Debug)]
pub struct Processor {
    streams: HashMap<StreamId, Stream>,
    /// Per partition, the offset after the highest message processed.
    high: HashMap<i32, i64>,
    models: Arc<Vec<Model>>,
    dsp: DspConfig,
    settings: StreamSettings,
    grid: Grid,
    timings: Vec<ModelTiming>,
    /// Indices of the feature (rhythm-window) models.
    feature_models: Vec<usize>,
    /// Most windows per ONNX Runtime run.
    max_batch: usize,
    metrics: Metrics,
    last_evict: Instant,
}

impl Processor {
    /// A processor scoring the given models, with default stream settings.
    pub fn new(
        dsp: DspConfig,
        model_hop_s: f32,
        models: Arc<Vec<Model>>,
        metrics: Metrics,
    ) -> Self {
        let model_len_us = models
            .iter()
            .filter(|m| m.manifest().input.kind != InputKind::Waveform)
            .map(|m| us(m.manifest().window_s))
            .max()
            .unwrap_or(0);
        let timings = models
            .iter()
            .map(|m| ModelTiming {
                len_us: us(m.manifest().window_s),
                hop_us: us(m.manifest().hop_s.unwrap_or(model_hop_s)).max(1),
            })
            .collect::<Vec<_>>();
        let feature_models = models
            .iter()
            .enumerate()
            .filter(|(_, m)| m.manifest().input.kind != InputKind::Waveform)
            .map(|(i, _)| i)
            .collect();
        let settings = StreamSettings::default();
        let grid = Grid {
            win_us: us(dsp.window_s).max(1),
            hop_us: us(dsp.hop_s).max(1),
            model_len_us,
            warmup_us: us(settings.warmup_s).max(0),
        };
        Self {
            streams: HashMap::new(),
            high: HashMap::new(),
            models,
            dsp,
            settings,
            grid,
            timings,
            feature_models,
            max_batch: 64,
            metrics,
            last_evict: Instant::now(),
        }
    }

    /// The same, with these stream settings.
    #[must_use]
    pub fn with_stream_settings(mut self, settings: StreamSettings) -> Self {
        self.grid.warmup_us = us(settings.warmup_s).max(0);
        self.settings = settings;
        self
    }

    /// The same, with at most `max_batch` windows per ONNX Runtime run.
    #[must_use]
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Streams with state.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Drops the state of streams on these partitions (revoked or lost): another
    /// consumer rebuilds it from the committed offset.
    pub fn drop_partitions(&mut self, partitions: &[i32]) {
        self.streams
            .retain(|_, s| !partitions.contains(&s.partition));
        for p in partitions {
            self.high.remove(p);
        }
        self.metrics.streams_active.set(self.streams.len() as i64);
    }

    /// Decodes and processes a batch of messages.
    pub fn process(&mut self, inputs: Vec<Input>) -> Output {
        let mut out = Output::default();
        let mut model_windows: Vec<Vec<Window>> = vec![Vec::new(); self.models.len()];
        // Per model window, when it closed (as `Output::closed_us`).
        let mut windows_closed: Vec<Vec<i64>> = vec![Vec::new(); self.models.len()];
        let mut taken_us = None;
        for input in inputs {
            let closed_us = input
                .timestamp_us
                .unwrap_or_else(|| *taken_us.get_or_insert_with(super::now_us));
            self.metrics.frames_consumed.inc();
            let next = input.offset + 1;
            let high = self.high.entry(input.partition).or_insert(next);
            *high = (*high).max(next);
            match codec::decode(&input.payload, input.content_type.as_deref()) {
                Ok(frame) => self.accept(
                    frame,
                    input.partition,
                    input.offset,
                    &mut out,
                    &mut model_windows,
                ),
                Err(e) => {
                    self.metrics
                        .frames_dead_lettered
                        .with_label_values(&[e.kind()])
                        .inc();
                    tracing::debug!(
                        kind = e.kind(),
                        partition = input.partition,
                        offset = input.offset,
                        "frame dead-lettered"
                    );
                    out.dead_letters.push(DeadLetter {
                        kind: e.kind(),
                        reason: e.to_string(),
                        input,
                    });
                }
            }
            // What this frame completed closed when it came.
            out.closed_us.resize(out.findings.len(), closed_us);
            for (closed, windows) in windows_closed.iter_mut().zip(&model_windows) {
                closed.resize(windows.len(), closed_us);
            }
        }
        self.score(&model_windows, &windows_closed, &mut out);
        debug_assert_eq!(out.findings.len(), out.closed_us.len());
        self.attach_strips(&mut out.findings);
        self.evict_idle();
        out.offsets = self.safe_offsets();
        self.metrics.streams_active.set(self.streams.len() as i64);
        out
    }

    /// Gives every present finding of a clinical condition the rhythm strip that
    /// ends with its window, where the stream's analysis still holds the signal.
    fn attach_strips(&self, findings: &mut [Finding]) {
        for f in findings.iter_mut().filter(|f| {
            f.status == FindingStatus::Present
                && !matches!(f.condition, Condition::SignalGap | Condition::ClockJump)
        }) {
            let Some(a) = self
                .streams
                .get(&f.stream)
                .and_then(|s| s.analysis.as_ref())
            else {
                continue;
            };
            let fs = a.sample_rate.hz();
            let end = ((f.window_end.0 - a.t_origin) as f64 * fs / 1e6).round();
            if end <= 0.0 {
                continue;
            }
            f.strip = a.strip.strip(end as u64, |n| a.time_of(n)).map(Box::new);
        }
    }

    /// Per partition with state, the next offset safe to commit. Streams that took
    /// frames in this batch recompute what they need, once.
    fn safe_offsets(&mut self) -> Vec<(i32, i64)> {
        let mut safe: BTreeMap<i32, i64> = self.high.iter().map(|(&p, &o)| (p, o)).collect();
        for s in self.streams.values_mut() {
            if s.dirty {
                s.update_resume(&self.grid, &self.timings, &self.feature_models);
            }
            if let (Some(r), Some(v)) = (s.resume, safe.get_mut(&s.partition)) {
                *v = (*v).min(r);
            }
        }
        safe.into_iter().collect()
    }

    fn evict_idle(&mut self) {
        if self.last_evict.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_evict = Instant::now();
        let idle = Duration::from_secs_f32(self.settings.idle_evict_s.max(0.0));
        let before = self.streams.len();
        self.streams.retain(|_, s| s.last_seen.elapsed() < idle);
        let evicted = before - self.streams.len();
        if evicted > 0 {
            self.metrics.streams_evicted.inc_by(evicted as u64);
            tracing::debug!(evicted, "idle streams dropped");
        }
    }

    /// Takes one validated frame read at `partition`/`offset` through the stream's
    /// sequencer and analysis.
    fn accept(
        &mut self,
        frame: Frame,
        partition: i32,
        offset: i64,
        out: &mut Output,
        model_windows: &mut [Vec<Window>],
    ) {
        let now = Instant::now();
        let last_sample_us = frame.t0.0
            + frame
                .sample_rate
                .samples_to_us(frame.samples_per_lead() as u64);
        let wall_us = super::now_us();
        self.metrics
            .device_to_ingested_seconds
            .observe((wall_us - last_sample_us).max(0) as f64 / 1e6);
        let st = self
            .streams
            .entry(frame.stream.clone())
            .or_insert_with(|| Stream {
                partition,
                patient: frame.patient.clone(),
                next_seq: None,
                pending: BTreeMap::new(),
                analysis: None,
                gap_before_next: false,
                last_seen: now,
                resume: None,
                dirty: false,
            });
        st.last_seen = now;
        st.partition = partition;
        st.dirty = true;
        if st.next_seq.is_some_and(|n| frame.seq < n) || st.pending.contains_key(&frame.seq) {
            self.metrics.frames_duplicate.inc();
            return;
        }
        let ahead = st.next_seq.is_some_and(|n| frame.seq > n);
        st.pending.insert(frame.seq, (frame, offset));
        if ahead {
            self.metrics.frames_reordered.inc();
        }
        let ctx = Ctx {
            dsp: &self.dsp,
            grid: &self.grid,
            settings: &self.settings,
            models: &self.models,
            timings: &self.timings,
            metrics: &self.metrics,
        };
        ctx.release(st, out, model_windows);
    }

    /// Scores each model's windows in runs of at most `max_batch` (windows of every
    /// stream in the consume batch together: the batch wait is the batching wait).
    /// A run that fails yields indeterminate findings, so the windows are accounted
    /// for rather than silently lost.
    fn score(&self, windows: &[Vec<Window>], closed_us: &[Vec<i64>], out: &mut Output) {
        for ((model, mine), closed) in self.models.iter().zip(windows).zip(closed_us) {
            let id = model.manifest().id.as_str();
            let batch = self.max_batch.max(1);
            for (chunk, closed) in mine.chunks(batch).zip(closed.chunks(batch)) {
                let chunk: Vec<&Window> = chunk.iter().collect();
                let t = Instant::now();
                let scored = match model.score(&chunk) {
                    Ok(scored) => {
                        self.metrics
                            .inference_seconds
                            .with_label_values(&[id])
                            .observe(t.elapsed().as_secs_f64());
                        scored
                    }
                    Err(e) => {
                        tracing::warn!(model = id, error = %e, "model scoring failed");
                        self.metrics
                            .windows_scored
                            .with_label_values(&[id, "failed"])
                            .inc_by(chunk.len() as u64);
                        vec![Scored::Indeterminate; chunk.len()]
                    }
                };
                let n_scored = scored
                    .iter()
                    .filter(|s| matches!(s, Scored::Probabilities(_)))
                    .count();
                if n_scored > 0 {
                    self.metrics
                        .inference_batch_size
                        .with_label_values(&[id])
                        .observe(n_scored as f64);
                }
                self.metrics
                    .windows_scored
                    .with_label_values(&[id, "scored"])
                    .inc_by(n_scored as u64);
                self.metrics
                    .windows_scored
                    .with_label_values(&[id, "indeterminate"])
                    .inc_by((scored.len() - n_scored) as u64);
                for ((w, s), &at) in chunk.iter().zip(&scored).zip(closed) {
                    out.findings.extend(model.findings(w, s));
                    out.closed_us.resize(out.findings.len(), at);
                }
            }
        }
    }
}

/// What the per-stream steps need of the processor (borrowed beside the stream).
struct Ctx<'a> {
    dsp: &'a DspConfig,
    grid: &'a Grid,
    settings: &'a StreamSettings,
    models: &'a [Model],
    timings: &'a [ModelTiming],
    metrics: &'a Metrics,
}

impl Ctx<'_> {
    /// Processes the stream's pending frames that are in order, or whose wait is over.
    fn release(&self, st: &mut Stream, out: &mut Output, mw: &mut [Vec<Window>]) {
        let horizon = i64::from(self.settings.reorder_horizon_ms) * 1000;
        loop {
            let Some((&first, _)) = st.pending.first_key_value() else {
                return;
            };
            if st.next_seq != Some(first) {
                // A hole (or the stream's start): wait until the horizon is full.
                let (Some((_, (head, _))), Some((_, (tail, _)))) =
                    (st.pending.first_key_value(), st.pending.last_key_value())
                else {
                    return;
                };
                let from = match (&st.analysis, st.next_seq) {
                    (Some(a), Some(_)) => a.expected_t0(),
                    _ => head.t0.0,
                };
                let tail_end = tail.t0.0
                    + tail
                        .sample_rate
                        .samples_to_us(tail.samples_per_lead() as u64);
                if tail_end - from < horizon && st.pending.len() < MAX_PENDING {
                    return;
                }
                if let Some(missing_from) = st.next_seq {
                    self.gap(st, missing_from, first, out);
                }
                st.next_seq = Some(first);
            }
            let Some((seq, (frame, offset))) = st.pending.pop_first() else {
                return;
            };
            st.next_seq = Some(seq + 1);
            self.run(st, &frame, offset, out, mw);
        }
    }

    /// Frames `missing_from..resume_at` never came: a signal gap; the analysis
    /// restarts at the next frame.
    fn gap(&self, st: &mut Stream, missing_from: u64, resume_at: u64, out: &mut Output) {
        let Some((_, (next, _))) = st.pending.first_key_value() else {
            return;
        };
        let start = st
            .analysis
            .as_ref()
            .map_or(next.t0.0, Analysis::expected_t0);
        let end = next.t0.0.max(start);
        self.metrics.signal_gaps.inc();
        tracing::debug!(
            missing_frames = resume_at - missing_from,
            seconds = (end - start) as f64 / 1e6,
            "signal gap"
        );
        out.findings.push(continuity_finding(
            &next.stream,
            &st.patient,
            Condition::SignalGap,
            start,
            end,
            (end - start) as f32 / 1e6,
        ));
        st.analysis = None;
        st.gap_before_next = true;
    }

    /// Runs one in-order frame through the analysis.
    fn run(
        &self,
        st: &mut Stream,
        frame: &Frame,
        offset: i64,
        out: &mut Output,
        mw: &mut [Vec<Window>],
    ) {
        if let Some(a) = &st.analysis {
            if a.sample_rate != frame.sample_rate || a.n_leads != frame.leads.len() {
                tracing::debug!("stream configuration changed; analysis restarted");
                st.analysis = None;
            } else {
                let jump = frame.t0.0 - a.expected_t0();
                if jump.abs() > i64::from(self.settings.clock_jump_ms) * 1000 {
                    self.metrics.clock_jumps.inc();
                    tracing::debug!(jump_s = jump as f64 / 1e6, "device clock jump");
                    let at = a.expected_t0();
                    out.findings.push(continuity_finding(
                        &frame.stream,
                        &st.patient,
                        Condition::ClockJump,
                        at,
                        at,
                        jump as f32 / 1e6,
                    ));
                    st.analysis = None;
                }
            }
        }
        st.patient = frame.patient.clone();
        let gap = std::mem::take(&mut st.gap_before_next);
        let a = st
            .analysis
            .get_or_insert_with(|| Analysis::new(self, frame, gap));
        let n = frame.samples_per_lead();
        a.scratch.clear();
        a.scratch
            .extend(frame.samples.iter().map(|&c| frame.scale.to_mv(c)));
        a.lead_off_in_window |= frame.lead_off.first().copied().unwrap_or(false);
        a.strip.push(&a.scratch[..n.min(a.scratch.len())]);
        a.events.clear();
        a.dsp.push(&a.scratch, &frame.lead_off, &mut a.events);
        let before = a.samples;
        a.samples += n as u64;
        if !a.waves.is_empty() {
            a.feed_waves(&frame.stream, &st.patient, before, n, mw);
        }
        a.frames.push_back(FrameMark {
            end_us: a.expected_t0(),
            offset,
        });
        self.metrics.samples_processed.inc_by(n as u64);
        let events = std::mem::take(&mut a.events);
        for ev in &events {
            match ev {
                DspEvent::Window(w) => self.window(a, &frame.stream, &st.patient, w, out, mw),
                DspEvent::Pause {
                    start_sample,
                    length_s,
                    asystole,
                } => {
                    let condition = if *asystole {
                        Condition::Asystole
                    } else {
                        Condition::Pause
                    };
                    let start = DeviceTimeUs(a.time_of(*start_sample));
                    let source = rhythm_source();
                    out.findings.push(Finding {
                        key: Finding::make_key(&frame.stream, &source, condition, start),
                        stream: frame.stream.clone(),
                        patient: st.patient.clone(),
                        source,
                        condition,
                        status: FindingStatus::Present,
                        window_start: start,
                        window_end: start.plus_us((f64::from(*length_s) * 1e6) as i64),
                        score: None,
                        value: Some(*length_s),
                        decision_support: false,
                        shadow: false,
                        strip: None,
                    });
                }
            }
        }
        a.events = events;
    }

    /// Findings, status and model windows of one closed rhythm window.
    fn window(
        &self,
        a: &mut Analysis,
        stream: &StreamId,
        patient: &PatientId,
        w: &RhythmWindow,
        out: &mut Output,
        mw: &mut [Vec<Window>],
    ) {
        let end_us = a.window_end_us(w.end_sample, self.grid);
        let start_us = end_us - self.grid.win_us;
        self.metrics
            .dsp_windows
            .with_label_values(&[if w.quality_ok { "good" } else { "poor" }])
            .inc();
        let at = WindowAt {
            stream,
            patient,
            start: DeviceTimeUs(start_us),
            end: DeviceTimeUs(end_us),
        };
        for (condition, status, value) in &w.calls {
            out.findings.push(at.rhythm(*condition, *status, *value));
        }
        let lead_off = std::mem::take(&mut a.lead_off_in_window);
        out.findings.push(at.rhythm(
            Condition::LeadOff,
            if lead_off {
                FindingStatus::Present
            } else {
                FindingStatus::Absent
            },
            None,
        ));
        if std::mem::take(&mut a.after_gap) {
            // The signal is back: lets a signal-gap alert clear.
            let mut f = at.rhythm(Condition::SignalGap, FindingStatus::Absent, None);
            f.source = ingest_source();
            f.key = Finding::make_key(stream, &f.source, f.condition, f.window_start);
            out.findings.push(f);
        }
        if w.quality_ok && !w.rr_s.is_empty() {
            let longest = w.rr_s.iter().copied().fold(0.0f32, f32::max);
            if longest < self.dsp.pause_s {
                for c in [Condition::Pause, Condition::Asystole] {
                    out.findings
                        .push(at.rhythm(c, FindingStatus::Absent, Some(longest)));
                }
            }
        }
        out.statuses.push(StreamStatus {
            stream: stream.clone(),
            patient: patient.clone(),
            heart_rate_bpm: (w.heart_rate_bpm.is_finite() && w.heart_rate_bpm > 0.0)
                .then_some(w.heart_rate_bpm),
            quality_ok: w.quality_ok,
            quality_reason: w.quality_reason.clone(),
            last_window_end: DeviceTimeUs(end_us),
        });
        self.cut_model_windows(a, &at, w, mw);
    }

    /// Model windows ending at this rhythm window's end when it is on the model grid
    /// (every model hop of device time), each as long as its model asks and never
    /// reaching before the analysis's first window.
    fn cut_model_windows(
        &self,
        a: &mut Analysis,
        at: &WindowAt<'_>,
        w: &RhythmWindow,
        mw: &mut [Vec<Window>],
    ) {
        let last = a.beats.back().copied();
        a.beats.extend(w.beats_after(last));
        if !w.quality_ok {
            a.bad_until = w.end_sample;
        }
        let fs = a.sample_rate.hz();
        let keep_from = w
            .end_sample
            .saturating_sub((self.grid.model_len_us as f64 * fs / 1e6) as u64);
        while a.beats.front().is_some_and(|&b| b < keep_from) {
            a.beats.pop_front();
        }
        let end_us = at.end.0;
        for (i, m) in self.models.iter().enumerate() {
            let timing = self.timings[i];
            if m.manifest().input.kind == InputKind::Waveform
                || (end_us - a.phases.model_us[i]).rem_euclid(timing.hop_us) != 0
            {
                continue;
            }
            let start_us = end_us - timing.len_us;
            if start_us < a.first_start_us {
                continue;
            }
            let len = (timing.len_us as f64 * fs / 1e6).round() as u64;
            let start = w.end_sample.saturating_sub(len);
            match m.manifest().input.kind {
                InputKind::AfRrV1 => {
                    let beats: Vec<u64> = a
                        .beats
                        .iter()
                        .copied()
                        .filter(|&b| b >= start && b < w.end_sample)
                        .collect();
                    let rr = rr_intervals(&beats, fs);
                    mw[i].push(Window {
                        stream: at.stream.clone(),
                        patient: at.patient.clone(),
                        start: DeviceTimeUs(start_us),
                        end: at.end,
                        sample_rate: a.sample_rate,
                        leads: Vec::new(),
                        samples_mv: Vec::new(),
                        features: af_features(&rr).to_vec(),
                        quality_ok: a.bad_until <= start && rr.len() >= 4,
                        rr_s: rr,
                    });
                }
                InputKind::Waveform => {}
            }
        }
    }
}

/// Where a rhythm window's findings belong.
struct WindowAt<'a> {
    stream: &'a StreamId,
    patient: &'a PatientId,
    start: DeviceTimeUs,
    end: DeviceTimeUs,
}

impl WindowAt<'_> {
    fn rhythm(&self, condition: Condition, status: FindingStatus, value: Option<f32>) -> Finding {
        let source = rhythm_source();
        Finding {
            key: Finding::make_key(self.stream, &source, condition, self.start),
            stream: self.stream.clone(),
            patient: self.patient.clone(),
            source,
            condition,
            status,
            window_start: self.start,
            window_end: self.end,
            score: None,
            value,
            decision_support: false,
            shadow: false,
            strip: None,
        }
    }
}

fn continuity_finding(
    stream: &StreamId,
    patient: &PatientId,
    condition: Condition,
    start: i64,
    end: i64,
    value: f32,
) -> Finding {
    let source = ingest_source();
    let start = DeviceTimeUs(start);
    Finding {
        key: Finding::make_key(stream, &source, condition, start),
        stream: stream.clone(),
        patient: patient.clone(),
        source,
        condition,
        status: FindingStatus::Present,
        window_start: start,
        window_end: DeviceTimeUs(end),
        score: None,
        value: Some(value),
        decision_support: false,
        shadow: false,
        strip: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many streams share the busiest slot, and how many slots are used.
    fn spread(values: &[i64]) -> (usize, usize) {
        let mut count = std::collections::BTreeMap::new();
        for v in values {
            *count.entry(*v).or_insert(0usize) += 1;
        }
        (count.values().copied().max().unwrap_or(0), count.len())
    }

    #[test]
    fn stream_phases_spread_over_the_hops_and_are_stable() {
        let rhythm = 5_000_000;
        let timings = [
            ModelTiming {
                len_us: 30_000_000,
                hop_us: 10_000_000,
            },
            ModelTiming {
                len_us: 10_000_000,
                hop_us: 300_000_000,
            },
        ];
        let phases: Vec<Phases> = (0..1000)
            .map(|i| Phases::of(&format!("bed-{i:04}.ecg"), rhythm, &timings))
            .collect();
        for p in &phases {
            assert!((0..rhythm).contains(&p.rhythm_us));
            assert_eq!(p.rhythm_us % PHASE_STEP_US, 0);
            for (m, t) in p.model_us.iter().zip(&timings) {
                assert!((0..t.hop_us).contains(m));
                assert_eq!(
                    (m - p.rhythm_us) % rhythm,
                    0,
                    "model windows end where rhythm windows do"
                );
            }
        }
        // Rhythm windows: 1,000 streams over 50 slots of 100 ms (20 each on average).
        let (busiest, used) = spread(&phases.iter().map(|p| p.rhythm_us).collect::<Vec<_>>());
        assert_eq!(used, 50);
        assert!(busiest <= 40, "no slot takes ~2x its share: {busiest}");
        // af-rr (10 s): 100 slots; ecg12 (300 s): 3,000 slots, 1,000 streams.
        for (m, slots) in [(0, 100), (1, 3000)] {
            let (busiest, used) = spread(&phases.iter().map(|p| p.model_us[m]).collect::<Vec<_>>());
            let share = 1000 / slots.min(1000);
            assert!(used >= slots.min(1000) / 2, "model {m}: {used} slots used");
            assert!(
                busiest <= (share * 3).max(5),
                "model {m}: busiest slot {busiest}"
            );
        }
        // Stable: a function of the stream id only.
        assert_eq!(Phases::of("bed-0001.ecg", rhythm, &timings), phases[1]);
        let one = Phases::of(
            "x",
            rhythm,
            &[ModelTiming {
                len_us: 1,
                hop_us: rhythm,
            }],
        );
        assert_eq!(
            one.model_us,
            vec![one.rhythm_us],
            "one slot: the rhythm phase"
        );
    }

    #[test]
    fn grid_arithmetic() {
        assert_eq!(ceil_to(10, 5), 10);
        assert_eq!(ceil_to(11, 5), 15);
        assert_eq!(ceil_to(-3, 5), 0);
        assert_eq!(snap(12, 5), 10);
        assert_eq!(snap(13, 5), 15);
        assert_eq!(
            snap(1_800_000_004_999_999, 5_000_000),
            1_800_000_005_000_000
        );
    }
}

//! The analyzer: sequenced frames in, rhythm findings and model inputs out.
//!
//! Per stream it runs the DSP chain ([`StreamDsp`]: filters, QRS detection, signal
//! quality, rhythm windows, pause events on lead 0), the lethal-arrhythmia detector
//! over the ECG leads and the pulse channels ([`LethalDetector`]: asystole, extreme
//! brady- and tachycardia, ventricular tachycardia, flutter/fibrillation; every lead,
//! but aVR, aVL and aVF where I, II and III are there:
//! [`analysed_leads`](ecg_dsp::lethal::analysed_leads)) and one
//! [`InputBuilder`] per model the stream can feed.
//!
//! A lethal alarm is published the moment the detector calls it present (and again
//! every [`LETHAL_REPEAT_S`] while it lasts, and with its last extent when it ends),
//! keyed on the event's start on a 1 s grid of device time, with the evidence in words (`reason`) and a strip of every lead
//! and pulse channel; its absence or indeterminacy is published with each rhythm
//! window, keyed on the window, so alerts can resolve. Windows sit on the stream's grids of device time
//! ([`crate::grid::Phases`]), and an analysis only emits windows that start a warm-up
//! after its first sample: an analysis rebuilt from any later frame cuts the same
//! windows with the same idempotency keys, and never a half-filled one.
//!
//! Its checkpoint hold ([`crate::commit::Holder::Analyzer`]) is, per partition, the
//! lowest offset of any frame a stream still needs to rebuild its next unfinished
//! window (with the warm-up). A stream silent for `commit_hold_s` no longer holds for
//! its unfinished window (it waits for frames that may never come), but a model window
//! it has cut and still holds is never given up that way: the stream holds for it
//! until the window is published. A stream that has stopped while its partition goes
//! on has its held windows published once it has been silent for `commit_hold_s` of
//! the partition's *live* time ([`LiveClock`]); a stall of the whole partition (the
//! broker, the consumer) adds no live time, so it never cuts a live stream's window
//! short. Eviction publishes what is still held.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecg_dsp::lethal::{Evidence, LethalAssessment, LethalCall, LethalDetector};
use ecg_dsp::pace::PaceBlanker;
use ecg_dsp::stream::{DspConfig, DspEvent, RhythmWindow, StreamDsp};
use ecg_inference::{Model, ModelMode};
use ecg_types::{
    seconds_to_us, Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, Lead,
    ModelInput, PatientId, PulseKind, Restart, SequencedFrame, StreamId, Strip, Timebase,
};
use serde::Serialize;

use crate::commit::{Checkpoint, Holder};
use crate::config::StreamSettings;
use crate::events::{Event, Sink};
use crate::grid::{Grid, ModelTiming, Phases};
use crate::inputs::{Cut, InputBuilder, WindowBeats};
use crate::sequencer::ingest_source;
use crate::strip::{Signal, StripBuffer};

/// The close time (`closed_us`) of a finding whose window never closed: a window
/// released when its stream was evicted or a replayed record ended, before the
/// rhythm windows covered it. Its finding is published and counted, not timed.
pub const UNTIMED: i64 = i64::MIN;

/// A lethal alarm that lasts is published again this often (s) while present.
pub const LETHAL_REPEAT_S: f64 = 5.0;

/// The source of lethal-arrhythmia findings.
pub fn lethal_source() -> FindingSource {
    FindingSource::Detector {
        name: "lethal".into(),
    }
}

/// The source of rule-based rhythm findings.
pub fn rhythm_source() -> FindingSource {
    FindingSource::Detector {
        name: "rhythm".into(),
    }
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

/// A model input on its way to the scorer.
#[derive(Debug, Clone)]
pub struct Scoring {
    /// Index of the model (in the analyzer's model list).
    pub model: usize,
    /// What the model scores.
    pub input: ModelInput,
    /// When the window closed (µs since the epoch).
    pub closed_us: i64,
    /// The ECG behind it, for a present finding of an active model.
    pub strip: Option<Box<Strip>>,
}

/// What the analyzer made of one epoch.
#[derive(Debug, Default)]
pub struct Analyzed {
    /// Rhythm findings (and pause/asystole events), in order.
    pub findings: Vec<Finding>,
    /// Per finding, when its window closed (µs since the epoch).
    pub closed_us: Vec<i64>,
    /// Model inputs, in order.
    pub inputs: Vec<Scoring>,
    /// Updated stream statuses.
    pub statuses: Vec<StreamStatus>,
}

impl Analyzed {
    /// Appends another part's output (another analyzer shard's streams) after this.
    pub fn append(&mut self, part: Analyzed) {
        self.findings.extend(part.findings);
        self.closed_us.extend(part.closed_us);
        self.inputs.extend(part.inputs);
        self.statuses.extend(part.statuses);
    }
}

/// Rhythm window timing in device microseconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    win_us: i64,
    hop_us: i64,
    warmup_us: i64,
}

/// A processed frame a rebuild may still need.
#[derive(Debug, Clone, Copy)]
struct FrameMark {
    end_us: i64,
    offset: i64,
}

/// One model's builder on one stream.
#[derive(Debug)]
struct Builder {
    model: usize,
    inputs: InputBuilder,
    /// Waveform models: source sample of the first window's start (the first sample
    /// fed) and that start's device time.
    feed_from: u64,
    origin_us: i64,
    emitted: u64,
    /// Waveform windows cut but not yet emitted: a model gets its window once the
    /// rhythm windows have covered it, so its quality is judged on the whole window
    /// and, for a model that reads a window's beats (an RR-feature input, AF episode
    /// tracking), every beat of it is known, as offline.
    held: VecDeque<Held>,
}

/// A waveform window waiting for the rhythm windows to cover it.
#[derive(Debug)]
struct Held {
    index: u64,
    /// First source sample, counted from the stream's first.
    from: u64,
    samples_mv: Vec<f32>,
}

/// DSP and model inputs of one stream since its last (re)start.
#[derive(Debug)]
struct Analysis {
    dsp: StreamDsp,
    phases: Phases,
    clock: Timebase,
    /// Samples per lead pushed.
    samples: u64,
    /// Start of the first rhythm window this analysis emits.
    first_start_us: i64,
    /// Started after a signal gap: the first window says the gap is over.
    after_gap: bool,
    lead_off_in_window: bool,
    frames: VecDeque<FrameMark>,
    builders: Vec<Builder>,
    sub: Vec<f32>,
    cuts: Vec<Cut>,
    events: Vec<DspEvent>,
    /// The first lead's recent signal, for the strips of present findings.
    strip: StripBuffer,
    /// The other leads' and the pulses' recent signal, for lethal alarms' strips.
    extra: Vec<StripBuffer>,
    /// The stream's leads and pulse channels (kind, Hz), as the analysis started: a
    /// frame with other leads (or the same in another order) restarts it.
    leads: Vec<Lead>,
    pulses: Vec<(PulseKind, u32)>,
    /// Over the leads [`analysed_leads`](ecg_dsp::lethal::analysed_leads) picks
    /// ([`LethalDetector::analysed`]).
    lethal: LethalDetector,
    assessments: Vec<LethalAssessment>,
    /// The ECG is held after each pacemaker pulse the device reports, before any
    /// detector sees it; the pulses' samples of the current frame.
    pace: PaceBlanker,
    pace_at: Vec<u64>,
    /// Per lethal condition (in `LETHAL_CONDITIONS` order): the latest call, and when
    /// the last present finding was published (device µs) while it lasts.
    latest: [Option<LethalCall>; 5],
    /// Per lethal condition, the episode present now.
    episodes: [Option<LethalEpisode>; 5],
}

/// A lethal condition present over consecutive assessments: published at its onset
/// (with the strip), again every [`LETHAL_REPEAT_S`] while it lasts and with its last
/// extent when it ends, always under one key (its start on a 1 s grid).
#[derive(Debug, Clone, Copy)]
struct LethalEpisode {
    start_us: i64,
    /// Device time the last published finding of it ended.
    published_end_us: i64,
    /// Its latest present call, and when that assessment ended.
    last: LethalCall,
    last_end_us: i64,
}

/// Gaps between a partition's frames up to this long count as its live time.
const LIVE_GAP: Duration = Duration::from_secs(2);

/// Wall-clock time during which a partition was delivering frames: the sum of the
/// gaps, up to [`LIVE_GAP`] each, between the epochs that carried its frames. A
/// stream silent for a stretch of it has stopped while its neighbours went on; a
/// stall that stops the whole partition does not advance it.
#[derive(Debug, Clone, Copy)]
struct LiveClock {
    last: Instant,
    live: Duration,
}

impl LiveClock {
    fn tick(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last);
        if gap <= LIVE_GAP {
            self.live += gap;
        }
        self.last = now;
    }
}

/// Per-stream state.
#[derive(Debug)]
struct Stream {
    partition: i32,
    patient: PatientId,
    analysis: Option<Analysis>,
    last_seen: Instant,
    /// Its partition's live time at `last_seen`.
    live_seen: Duration,
    /// Lowest offset the stream still needs, as of the last epoch it took part in.
    resume: Option<i64>,
    /// Took frames since `resume` was computed.
    dirty: bool,
}

/// What the per-stream steps need of the analyzer (borrowed beside the stream).
struct Ctx<'a> {
    dsp: &'a DspConfig,
    timing: Timing,
    models: &'a [Model],
    timings: &'a [ModelTiming],
    /// Which models are active (their present findings may alert, so their inputs
    /// carry strips).
    active: &'a [bool],
    telemetry: &'a Sink,
}

/// The analyzer stage; see the module documentation.
#[derive(Debug)]
pub struct Analyzer {
    streams: HashMap<StreamId, Stream>,
    clocks: HashMap<i32, LiveClock>,
    models: Arc<Vec<Model>>,
    dsp: DspConfig,
    settings: StreamSettings,
    timing: Timing,
    timings: Vec<ModelTiming>,
    active: Vec<bool>,
    telemetry: Sink,
    /// The frame being analysed in millivolts, lead-major: one buffer for every
    /// stream, warm in the cache from one frame to the next, where a buffer of the
    /// stream's own would be cold.
    frame_mv: Vec<f32>,
}

impl Analyzer {
    /// An analyzer for these models; model windows every `model_hop_s` seconds for
    /// models that set no hop of their own.
    pub fn new(
        dsp: DspConfig,
        model_hop_s: f32,
        models: Arc<Vec<Model>>,
        settings: StreamSettings,
        telemetry: Sink,
    ) -> Self {
        let timings = models
            .iter()
            .map(|m| {
                let man = m.manifest();
                ModelTiming::from_seconds(man.window_s, man.hop_s.unwrap_or(model_hop_s))
            })
            .collect();
        let active = models
            .iter()
            .map(|m| m.manifest().mode == ModelMode::Active)
            .collect();
        let timing = Timing {
            win_us: seconds_to_us(f64::from(dsp.window_s)).max(1),
            hop_us: seconds_to_us(f64::from(dsp.hop_s)).max(1),
            warmup_us: seconds_to_us(f64::from(settings.warmup_s)).max(0),
        };
        Self {
            streams: HashMap::new(),
            clocks: HashMap::new(),
            models,
            dsp,
            settings,
            timing,
            timings,
            active,
            telemetry,
            frame_mv: Vec::new(),
        }
    }

    /// The models, in the order [`Scoring::model`] indexes.
    pub fn models(&self) -> &Arc<Vec<Model>> {
        &self.models
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
        self.clocks.retain(|p, _| !partitions.contains(p));
    }

    /// Drops the state of streams the sequencer evicted; the model windows they
    /// still held (see [`Analyzer::release_held`]) come out first.
    pub fn drop_streams(&mut self, streams: &[StreamId]) -> Analyzed {
        let mut out = Analyzed::default();
        let dropped: Vec<(StreamId, Stream)> = streams
            .iter()
            .filter_map(|id| self.streams.remove_entry(id))
            .collect();
        let ctx = self.ctx();
        for (id, mut st) in dropped {
            ctx.release_held(&mut st, &id, UNTIMED, &mut out);
        }
        out
    }

    /// Emits every model window the streams still hold (each waits for the rhythm
    /// windows to cover it), judged and with the beats found so far, as the analyzer
    /// does for a stream it evicts: what a replay does at the end of a record, whose
    /// stream stops there.
    pub fn release_held(&mut self) -> Analyzed {
        let mut out = Analyzed::default();
        let mut streams = std::mem::take(&mut self.streams);
        let ctx = self.ctx();
        for (id, st) in &mut streams {
            ctx.release_held(st, id, UNTIMED, &mut out);
        }
        self.streams = streams;
        out
    }

    /// What the per-stream steps need (borrowed while the streams are taken out).
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            dsp: &self.dsp,
            timing: self.timing,
            models: &self.models,
            timings: &self.timings,
            active: &self.active,
            telemetry: &self.telemetry,
        }
    }

    /// Analyses one epoch's frames; adds what the analyzer still holds to
    /// `checkpoint`.
    pub fn process(
        &mut self,
        frames: Vec<SequencedFrame>,
        checkpoint: &mut Checkpoint,
    ) -> Analyzed {
        let mut out = Analyzed::default();
        let now = Instant::now();
        let mut streams = std::mem::take(&mut self.streams);
        let mut clocks = std::mem::take(&mut self.clocks);
        let mut frame_mv = std::mem::take(&mut self.frame_mv);
        let ctx = self.ctx();
        for sf in frames {
            let partition = sf.position.partition;
            let clock = clocks.entry(partition).or_insert(LiveClock {
                last: now,
                live: Duration::ZERO,
            });
            clock.tick(now);
            let live = clock.live;
            let st = streams
                .entry(sf.frame.stream.clone())
                .or_insert_with(|| Stream {
                    partition,
                    patient: sf.frame.patient.clone(),
                    analysis: None,
                    last_seen: now,
                    live_seen: live,
                    resume: None,
                    dirty: false,
                });
            st.partition = partition;
            st.last_seen = now;
            st.live_seen = live;
            st.dirty = true;
            let closed = sf.closed_us;
            ctx.run(st, sf, &mut frame_mv, &mut out);
            out.closed_us.resize(out.findings.len(), closed);
        }
        attach_strips(&streams, &mut out.findings);
        let hold = Duration::from_secs_f32(self.settings.commit_hold_s.max(0.0));
        for (id, s) in &mut streams {
            // Live time passes no faster than wall time: only a stream silent this
            // long (few of them; their analysis is not touched otherwise) can have
            // stopped while its partition went on.
            let silent = now.duration_since(s.last_seen) >= hold;
            let holds_window = silent && s.holds_window();
            if holds_window {
                let live = clocks.get(&s.partition).map_or(s.live_seen, |c| c.live);
                // Stopped while its partition went on: what it holds is published
                // now, with the beats found so far, rather than at eviction.
                if live.saturating_sub(s.live_seen) >= hold {
                    ctx.release_held(s, id, UNTIMED, &mut out);
                    s.dirty = true;
                }
            }
            if s.dirty {
                s.resume = s
                    .analysis
                    .as_mut()
                    .and_then(|a| a.resume_offset(self.timing, &self.timings));
                s.dirty = false;
            }
            if let Some(r) = s.resume {
                // A window it has cut is held for until it is published.
                if !silent || (holds_window && s.holds_window()) {
                    checkpoint.hold(Holder::Analyzer, s.partition, r);
                }
            }
        }
        self.streams = streams;
        self.clocks = clocks;
        self.frame_mv = frame_mv;
        out
    }
}

impl Stream {
    /// Whether it holds a model window cut but not yet published.
    fn holds_window(&self) -> bool {
        self.analysis
            .as_ref()
            .is_some_and(|a| a.builders.iter().any(|b| !b.held.is_empty()))
    }
}

/// Gives every present finding of a clinical condition the rhythm strip that ends
/// with its window, where the stream's analysis still holds the signal.
fn attach_strips(streams: &HashMap<StreamId, Stream>, findings: &mut [Finding]) {
    for f in findings.iter_mut().filter(|f| {
        f.status == FindingStatus::Present
            && f.strip.is_none()
            // Lethal alarms carry every lead's strip with their onset only.
            && !matches!(&f.source, FindingSource::Detector { name } if name == "lethal")
            && !matches!(f.condition, Condition::SignalGap | Condition::ClockJump)
    }) {
        if let Some(a) = streams.get(&f.stream).and_then(|s| s.analysis.as_ref()) {
            f.strip = a.strip_at(f.window_end.0);
        }
    }
}

impl Ctx<'_> {
    /// Runs one in-order frame through its stream's analysis; `mv` takes its samples
    /// in millivolts.
    fn run(&self, st: &mut Stream, sf: SequencedFrame, mv: &mut Vec<f32>, out: &mut Analyzed) {
        let frame = &sf.frame;
        if sf.restart.is_some() {
            self.end_analysis(st, &frame.stream, sf.closed_us, out);
        }
        if st.analysis.as_ref().is_some_and(|a| {
            a.clock.rate != frame.sample_rate
                || a.leads != frame.leads
                || !same_pulses(&a.pulses, frame)
        }) {
            tracing::debug!("stream configuration changed; analysis restarted");
            self.end_analysis(st, &frame.stream, sf.closed_us, out);
        }
        st.patient = frame.patient.clone();
        let after_gap = sf.restart == Some(Restart::AfterGap);
        let a = st
            .analysis
            .get_or_insert_with(|| Analysis::new(self, frame, after_gap));
        let n = frame.samples_per_lead();
        mv.clear();
        frame.extend_mv(mv);
        a.lead_off_in_window |= frame.lead_off.first().copied().unwrap_or(false);
        // The strips show the waveform as recorded ...
        a.strip.push(&mv[..n.min(mv.len())]);
        let n_leads = a.leads.len();
        for (i, b) in a.extra.iter_mut().enumerate() {
            if i + 1 < n_leads {
                let l = i + 1;
                b.push(&mv[l * n..((l + 1) * n).min(mv.len())]);
            } else if let Some(p) = frame.pulses.get(i + 1 - n_leads) {
                b.push(&p.samples);
            }
        }
        // ... every detector and model sees it with pacemaker pulses blanked.
        a.pace_at.clear();
        if a.pace_at.capacity() > 1024 {
            // A frame that flagged nonsense does not keep its memory.
            a.pace_at.shrink_to(64);
        }
        a.pace.apply(mv, &frame.pace, &mut a.pace_at);
        a.strip.mark_pace(&a.pace_at);
        a.events.clear();
        a.dsp.push(mv, &frame.lead_off, &mut a.events);
        // Pulse data of a frame goes to the lethal detector before its ECG.
        for (i, p) in frame.pulses.iter().enumerate() {
            a.lethal.push_pulse(i, &p.samples);
        }
        a.lethal.push_pace(&a.pace_at);
        a.assessments.clear();
        a.lethal.push_ecg(mv, &frame.lead_off, &mut a.assessments);
        let before = a.samples;
        a.samples += n as u64;
        a.feed_builders(
            self,
            mv,
            &frame.stream,
            &st.patient,
            before,
            n,
            sf.closed_us,
            out,
        );
        a.frames.push_back(FrameMark {
            end_us: a.clock.time_of(a.samples),
            offset: sf.position.offset,
        });
        self.telemetry.emit(&Event::SamplesAnalyzed(n as u64));
        self.lethal(a, &frame.stream, &st.patient, out);
        let events = std::mem::take(&mut a.events);
        for ev in &events {
            match ev {
                DspEvent::Window(w) => {
                    self.window(a, &frame.stream, &st.patient, w, sf.closed_us, out);
                }
                // Asystole is the lethal detector's, over every lead: lead 0 alone
                // reports the pause (and nothing more when it reaches asystole).
                DspEvent::Pause { asystole: true, .. } => {}
                DspEvent::Pause {
                    start_sample,
                    length_s,
                    asystole: false,
                } => {
                    let condition = Condition::Pause;
                    let start = DeviceTimeUs(a.clock.time_of(*start_sample));
                    out.findings.push(
                        Finding::new(
                            frame.stream.clone(),
                            st.patient.clone(),
                            rhythm_source(),
                            condition,
                            FindingStatus::Present,
                            start,
                            start.plus_us(seconds_to_us(f64::from(*length_s))),
                        )
                        .with_value(Some(*length_s)),
                    );
                }
            }
        }
        a.events = events;
    }

    /// Ends a stream's analysis (a restart, a changed configuration): the waveform
    /// windows it still holds are emitted with the beats found so far, not lost.
    fn end_analysis(&self, st: &mut Stream, stream: &StreamId, closed_us: i64, out: &mut Analyzed) {
        self.release_held(st, stream, closed_us, out);
        st.analysis = None;
    }

    /// Emits every model window the stream holds (see `Builder::held`), judged and
    /// with the beats found so far; the analysis goes on.
    fn release_held(&self, st: &mut Stream, stream: &StreamId, closed_us: i64, out: &mut Analyzed) {
        if let Some(a) = &mut st.analysis {
            let e = Emit {
                ctx: self,
                clock: &a.clock,
                strip: &a.strip,
                stream,
                patient: &st.patient,
                closed_us,
            };
            for b in a.builders.iter_mut().filter(|b| !b.held.is_empty()) {
                b.release(&e, None, out);
            }
        }
    }

    /// Lethal alarms the frame's assessments raised: published at once, one finding
    /// per event (keyed on its start on a 1 s grid), with the evidence and a strip of
    /// every lead and pulse channel.
    fn lethal(&self, a: &mut Analysis, stream: &StreamId, patient: &PatientId, out: &mut Analyzed) {
        let assessments = std::mem::take(&mut a.assessments);
        let finding = |a: &Analysis, ep: &LethalEpisode| {
            Finding::new(
                stream.clone(),
                patient.clone(),
                lethal_source(),
                ep.last.condition,
                FindingStatus::Present,
                DeviceTimeUs(ep.start_us),
                DeviceTimeUs(ep.last_end_us.max(ep.start_us)),
            )
            .with_value(ep.last.value)
            .with_reason(a.lethal_reason(&ep.last))
        };
        for asmt in &assessments {
            let end_us = a.clock.time_of(asmt.end_sample);
            for (i, call) in asmt.calls.iter().enumerate() {
                a.latest[i] = Some(*call);
                let start_us = Grid::new(0, 1_000_000).snap(a.clock.time_of(call.start_sample));
                // Consecutive present calls are one episode, keyed on its first call's
                // start (a lasting call's own start slides with its evidence window).
                let same = call.status == FindingStatus::Present && a.episodes[i].is_some();
                if !same {
                    // The episode before ended: its last extent.
                    if let Some(ep) = a.episodes[i].take() {
                        if ep.last_end_us > ep.published_end_us {
                            out.findings.push(finding(a, &ep));
                        }
                    }
                }
                if call.status != FindingStatus::Present {
                    continue;
                }
                match &mut a.episodes[i] {
                    Some(ep) => {
                        ep.last = *call;
                        ep.last_end_us = end_us;
                        if end_us - ep.published_end_us >= seconds_to_us(LETHAL_REPEAT_S) {
                            ep.published_end_us = end_us;
                            let ep = *ep;
                            out.findings.push(finding(a, &ep));
                        }
                    }
                    None => {
                        let ep = LethalEpisode {
                            start_us,
                            published_end_us: end_us,
                            last: *call,
                            last_end_us: end_us,
                        };
                        a.episodes[i] = Some(ep);
                        let mut f = finding(a, &ep);
                        f.strip = a.lethal_strip(asmt.end_sample);
                        out.findings.push(f);
                    }
                }
            }
        }
        a.assessments = assessments;
    }

    /// Findings, status and feature-model inputs of one closed rhythm window.
    fn window(
        &self,
        a: &mut Analysis,
        stream: &StreamId,
        patient: &PatientId,
        w: &RhythmWindow,
        closed_us: i64,
        out: &mut Analyzed,
    ) {
        let end_us = a.window_end_us(w.end_sample);
        let start_us = end_us - self.timing.win_us;
        self.telemetry
            .emit(&Event::RhythmWindow { good: w.quality_ok });
        let rhythm = |condition, status, value| {
            Finding::new(
                stream.clone(),
                patient.clone(),
                rhythm_source(),
                condition,
                status,
                DeviceTimeUs(start_us),
                DeviceTimeUs(end_us),
            )
            .with_value(value)
        };
        for (condition, status, value) in &w.calls {
            out.findings.push(rhythm(*condition, *status, *value));
        }
        let lead_off = std::mem::take(&mut a.lead_off_in_window);
        out.findings.push(rhythm(
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
            out.findings.push(Finding::new(
                stream.clone(),
                patient.clone(),
                ingest_source(),
                Condition::SignalGap,
                FindingStatus::Absent,
                DeviceTimeUs(start_us),
                DeviceTimeUs(end_us),
            ));
        }
        if w.quality_ok && !w.rr_s.is_empty() {
            let longest = w.rr_s.iter().copied().fold(0.0f32, f32::max);
            if longest < self.dsp.pause_s {
                out.findings.push(rhythm(
                    Condition::Pause,
                    FindingStatus::Absent,
                    Some(longest),
                ));
            }
        }
        // The lethal conditions' latest calls, when not present: lets their alerts
        // resolve (a suppressed candidate says what suppressed it).
        for call in a.latest.iter().flatten() {
            if call.status == FindingStatus::Present {
                continue;
            }
            let mut f = Finding::new(
                stream.clone(),
                patient.clone(),
                lethal_source(),
                call.condition,
                call.status,
                DeviceTimeUs(start_us),
                DeviceTimeUs(end_us),
            )
            .with_value(call.value);
            if call.evidence.suppressed_by.is_some() {
                f = f.with_reason(a.lethal_reason(call));
            }
            out.findings.push(f);
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
        // Feature models: a window ending here when this is on the model's grid,
        // never reaching before the analysis's first window.
        for b in &mut a.builders {
            b.inputs.push_rhythm(w);
        }
        // Held waveform windows the rhythm windows now cover.
        let e = Emit {
            ctx: self,
            clock: &a.clock,
            strip: &a.strip,
            stream,
            patient,
            closed_us,
        };
        for b in a.builders.iter_mut().filter(|b| !b.held.is_empty()) {
            b.release(&e, Some(w.end_sample), out);
        }
        for b in a.builders.iter().filter(|b| !b.inputs.is_waveform()) {
            let timing = self.timings[b.model];
            if !a.phases.models[b.model].contains(end_us) {
                continue;
            }
            let m_start_us = end_us - timing.len_us;
            if m_start_us < a.first_start_us {
                continue;
            }
            let len = a.clock.rate.us_to_samples(timing.len_us);
            let start = w.end_sample.saturating_sub(len);
            let (beats, ok) = b.inputs.features(start, w.end_sample);
            let input = b.inputs.input(
                stream,
                patient,
                DeviceTimeUs(m_start_us),
                DeviceTimeUs(end_us),
                Vec::new(),
                beats,
                ok,
            );
            out.inputs.push(Scoring {
                model: b.model,
                strip: self.active[b.model].then(|| a.strip_at(end_us)).flatten(),
                input,
                closed_us,
            });
        }
    }
}

impl Analysis {
    fn new(ctx: &Ctx<'_>, first: &ecg_types::Frame, after_gap: bool) -> Self {
        let t = ctx.timing;
        let clock = Timebase::new(first.t0, first.sample_rate);
        let pulses: Vec<(PulseKind, u32)> = first
            .pulses
            .iter()
            .map(|p| (p.kind, p.sample_rate.0))
            .collect();
        let t_origin = first.t0.0;
        let phases = Phases::of(first.stream.as_str(), t.hop_us, ctx.timings);
        let first_end_us = phases.rhythm.ceil(t_origin + t.warmup_us + t.win_us);
        let first_end = clock.sample_at(first_end_us);
        let first_start_us = first_end_us - t.win_us;
        let mut builders = Vec::new();
        for (i, m) in ctx.models.iter().enumerate() {
            let timing = ctx.timings[i];
            let hop_s = (timing.hop_us as f64 / 1e6) as f32;
            match InputBuilder::new(m.manifest(), hop_s, first.sample_rate, &first.leads) {
                Ok(inputs) => {
                    // Waveform windows start on the model's grid, at or after the
                    // analysis's first window; the builder is fed from there.
                    let origin_us =
                        Grid::new(phases.models[i].phase_us, timing.hop_us).ceil(first_start_us);
                    builders.push(Builder {
                        model: i,
                        feed_from: clock.sample_at(origin_us),
                        origin_us,
                        emitted: 0,
                        held: VecDeque::new(),
                        inputs,
                    });
                }
                Err(e) => {
                    tracing::debug!(model = %m.manifest().id, error = %e, "model not applicable to stream");
                }
            }
        }
        Self {
            dsp: StreamDsp::new(ctx.dsp, first.sample_rate.0, first.leads.len())
                .with_first_window_end(first_end),
            phases,
            clock,
            samples: 0,
            first_start_us,
            after_gap,
            lead_off_in_window: false,
            frames: VecDeque::new(),
            builders,
            sub: Vec::new(),
            cuts: Vec::new(),
            events: Vec::new(),
            strip: StripBuffer::new(
                first.leads.first().copied().unwrap_or(Lead::II),
                first.sample_rate.0,
                ctx.dsp.mains_hz,
            ),
            extra: first
                .leads
                .iter()
                .skip(1)
                .map(|&l| StripBuffer::extra(Signal::Ecg(l), first.sample_rate.0, ctx.dsp.mains_hz))
                .chain(first.pulses.iter().map(|p| {
                    StripBuffer::extra(Signal::Pulse(p.kind), p.sample_rate.0, ctx.dsp.mains_hz)
                }))
                .collect(),
            leads: first.leads.clone(),
            pulses: pulses.clone(),
            lethal: LethalDetector::for_leads(
                &ctx.dsp.lethal,
                first.sample_rate.0,
                &first.leads,
                &pulses,
            ),
            assessments: Vec::new(),
            pace: PaceBlanker::new(f64::from(first.sample_rate.0), first.leads.len()),
            pace_at: Vec::new(),
            latest: [None; 5],
            episodes: [None; 5],
        }
    }

    /// Feeds the block just pushed (source samples `before..before + n`, lead-major in
    /// `mv`) to the waveform builders; their completed windows go to `out`.
    #[allow(clippy::too_many_arguments)]
    fn feed_builders(
        &mut self,
        ctx: &Ctx<'_>,
        mv: &[f32],
        stream: &StreamId,
        patient: &PatientId,
        before: u64,
        n: usize,
        closed_us: i64,
        out: &mut Analyzed,
    ) {
        let n_leads = self.leads.len();
        for b in self.builders.iter_mut().filter(|b| b.inputs.is_waveform()) {
            let end = before + n as u64;
            if end <= b.feed_from {
                continue;
            }
            let skip = b.feed_from.saturating_sub(before) as usize;
            let block = if skip == 0 {
                &mv[..n_leads * n]
            } else {
                self.sub.clear();
                for l in 0..n_leads {
                    self.sub.extend_from_slice(&mv[l * n + skip..(l + 1) * n]);
                }
                &self.sub
            };
            self.cuts.clear();
            b.inputs.push(block, &mut self.cuts);
            let e = Emit {
                ctx,
                clock: &self.clock,
                strip: &self.strip,
                stream,
                patient,
                closed_us,
            };
            for cut in self.cuts.drain(..) {
                // Emitted once the rhythm windows cover it: now, when they already do
                // (the resampler's look-ahead can outlast the QRS detector's), else by
                // `Analyzer::window`.
                b.held.push_back(Held {
                    index: cut.index,
                    from: b.feed_from + cut.source_start,
                    samples_mv: cut.samples_mv,
                });
                b.release(&e, Some(b.inputs.rhythm_end()), out);
            }
        }
    }

    /// A lethal call's evidence in words ([`describe`]) over the analysed leads, and
    /// the stream's leads read through others named (a reader of a 12-lead alarm
    /// should not take aVR, aVL and aVF for missing).
    fn lethal_reason(&self, call: &LethalCall) -> String {
        let analysed = self.lethal.analysed();
        let leads: Vec<Lead> = analysed.iter().map(|&i| self.leads[i]).collect();
        let mut r = describe(call, &leads, &self.pulses);
        if analysed.len() < self.leads.len() {
            let through: Vec<&str> = (0..self.leads.len())
                .filter(|i| !analysed.contains(i))
                .map(|i| self.leads[i].name())
                .collect();
            r.push_str(&format!(
                "; {} read through I, II and III",
                through.join(", ")
            ));
        }
        r
    }

    /// The strip of a lethal alarm ending at ECG sample `end`: the first lead, with
    /// every other lead and every pulse channel as further traces.
    fn lethal_strip(&self, end: u64) -> Option<Box<Strip>> {
        let mut strip = self.strip.strip(end, |s| self.clock.time_of(s))?;
        let ecg_rate = u64::from(self.clock.rate.0.max(1));
        for (i, b) in self.extra.iter().enumerate() {
            let trace = if i + 1 < self.leads.len() {
                b.trace(end, |s| self.clock.time_of(s))
            } else {
                let (_, rate) = self.pulses[i + 1 - self.leads.len()];
                let pulse_clock = Timebase::new(self.clock.origin, ecg_types::SampleRate(rate));
                b.trace(end * u64::from(rate) / ecg_rate, |s| pulse_clock.time_of(s))
            };
            strip.more.extend(trace);
        }
        Some(Box::new(strip))
    }

    /// The strip ending at device time `end_us`, if the signal is still held.
    fn strip_at(&self, end_us: i64) -> Option<Box<Strip>> {
        strip_ending(&self.clock, &self.strip, end_us)
    }

    /// End (device µs) of the rhythm window at `end_sample`, on the stream's grid.
    fn window_end_us(&self, end_sample: u64) -> i64 {
        self.phases.rhythm.snap(self.clock.time_of(end_sample))
    }

    /// Start (device µs) of the earliest window this analysis has yet to emit, less
    /// the warm-up: the signal a rebuild must replay.
    fn needed_from(&self, timing: Timing, timings: &[ModelTiming]) -> i64 {
        let next_end = self.window_end_us(self.dsp.next_window_end());
        let mut need = next_end - timing.win_us;
        for b in &self.builders {
            let t = timings[b.model];
            if b.inputs.is_waveform() {
                need = need.min(b.origin_us + b.emitted as i64 * t.hop_us);
            } else {
                let mut m_end = self.phases.models[b.model].ceil(next_end);
                while m_end - t.len_us < self.first_start_us {
                    m_end += t.hop_us;
                }
                need = need.min(m_end - t.len_us);
            }
        }
        need - timing.warmup_us
    }

    /// Forgets frames no rebuild needs; the lowest offset of those it does.
    fn resume_offset(&mut self, timing: Timing, timings: &[ModelTiming]) -> Option<i64> {
        let need = self.needed_from(timing, timings);
        while self.frames.front().is_some_and(|f| f.end_us <= need) {
            self.frames.pop_front();
        }
        self.frames.iter().map(|f| f.offset).min()
    }
}

/// A waveform window ready for its model: its cut, and the RR intervals and
/// features of its beats (empty for a model that reads no beats).
struct Wave {
    index: u64,
    samples_mv: Vec<f32>,
    beats: WindowBeats,
    /// Signal good in the rhythm windows that judge it (`InputBuilder::quality_of`).
    quality_ok: bool,
}

/// Where one stream's waveform windows go, and what their inputs and strips need.
struct Emit<'a, 'c> {
    ctx: &'a Ctx<'c>,
    clock: &'a Timebase,
    strip: &'a StripBuffer,
    stream: &'a StreamId,
    patient: &'a PatientId,
    closed_us: i64,
}

impl Emit<'_, '_> {
    /// Emits a waveform model's window: its input, with the strip behind it for an
    /// active model.
    fn waveform(&self, b: &mut Builder, wave: Wave, out: &mut Analyzed) {
        let timing = self.ctx.timings[b.model];
        let start_us = b.origin_us + wave.index as i64 * timing.hop_us;
        let end_us = start_us + timing.len_us;
        b.emitted = b.emitted.max(wave.index + 1);
        let input = b.inputs.input(
            self.stream,
            self.patient,
            DeviceTimeUs(start_us),
            DeviceTimeUs(end_us),
            wave.samples_mv,
            wave.beats,
            wave.quality_ok,
        );
        let strip = self.ctx.active[b.model]
            .then(|| strip_ending(self.clock, self.strip, end_us))
            .flatten();
        out.inputs.push(Scoring {
            model: b.model,
            input,
            closed_us: self.closed_us,
            strip,
        });
    }
}

impl Builder {
    /// Emits the held windows the rhythm windows have covered up to source sample
    /// `upto` (every held window when `None`: the analysis ends), with the RR
    /// intervals and features of their beats.
    fn release(&mut self, e: &Emit<'_, '_>, upto: Option<u64>, out: &mut Analyzed) {
        let len = e.clock.rate.us_to_samples(e.ctx.timings[self.model].len_us);
        while self
            .held
            .front()
            .is_some_and(|h| upto.is_none_or(|u| h.from + len <= u))
        {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            let end = h.from + len;
            let beats = if self.inputs.collects_beats() {
                self.inputs.beats_in(h.from, end)
            } else {
                WindowBeats::default()
            };
            let wave = Wave {
                index: h.index,
                samples_mv: h.samples_mv,
                beats,
                quality_ok: self.inputs.quality_of(h.from, end),
            };
            e.waveform(self, wave, out);
        }
        self.inputs
            .hold_beats_from(self.held.front().map(|h| h.from));
    }
}

/// The strip of the first lead ending at device time `end_us`, if the signal is
/// still held.
fn strip_ending(clock: &Timebase, strip: &StripBuffer, end_us: i64) -> Option<Box<Strip>> {
    if end_us <= clock.origin.0 {
        return None;
    }
    strip
        .strip(clock.sample_at(end_us), |s| clock.time_of(s))
        .map(Box::new)
}

/// Whether a frame carries the pulse channels (kind and rate, in order) an analysis
/// started with.
fn same_pulses(pulses: &[(PulseKind, u32)], frame: &ecg_types::Frame) -> bool {
    pulses.len() == frame.pulses.len()
        && pulses
            .iter()
            .zip(&frame.pulses)
            .all(|(a, b)| a.0 == b.kind && a.1 == b.sample_rate.0)
}

/// The leads whose bits are set, by name.
fn lead_names(mask: u32, leads: &[Lead]) -> Vec<&'static str> {
    leads
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 32 && mask & (1 << i) != 0)
        .map(|(_, l)| l.name())
        .collect()
}

/// A lethal call's evidence in words, for the finding's `reason` and the alert's
/// summary: which leads raised it (and their quality), what was measured, the pulse,
/// and what suppressed it if something did. No sample values, no identifiers.
pub fn describe(call: &LethalCall, leads: &[Lead], pulses: &[(PulseKind, u32)]) -> String {
    let e: &Evidence = &call.evidence;
    let mut parts = Vec::new();
    let usable = lead_names(e.leads_usable, leads);
    let voted = lead_names(e.leads_for, leads);
    let quality: Vec<String> = leads
        .iter()
        .zip(e.lead_quality.iter())
        .map(|(l, q)| format!("{} {:.2}", l.name(), q))
        .collect();
    match e.suppressed_by {
        Some(s) => parts.push(format!(
            "suppressed ({}): the ECG met the criterion on {}",
            s.as_str(),
            if voted.is_empty() {
                "no usable lead".to_owned()
            } else {
                voted.join(", ")
            }
        )),
        None => parts.push(format!(
            "raised by {} of {} usable lead(s): {}",
            voted.len(),
            usable.len(),
            if voted.is_empty() {
                "the fused beats".to_owned()
            } else {
                voted.join(", ")
            }
        )),
    }
    parts.push(format!("lead quality {}", quality.join(", ")));
    if let Some(hr) = e.heart_rate_bpm {
        parts.push(format!("heart rate {hr:.0} bpm"));
    }
    if let Some(v) = e.ventricular_beats {
        parts.push(format!("{v} ventricular beats"));
    }
    if let Some(hz) = e.dominant_hz {
        parts.push(format!("dominant frequency {hz:.1} Hz"));
    }
    if let Some(p) = e.pace_pulses {
        parts.push(format!("{p} pacemaker pulse(s) reported (blanked)"));
    }
    match &e.pulse {
        Some(p) => parts.push(format!(
            "{} {}: {} pulse(s){}{}",
            p.kind.as_str(),
            if p.usable { "usable" } else { "not usable" },
            p.pulses,
            p.rate_bpm
                .map(|r| format!(" at {r:.0}/min"))
                .unwrap_or_default(),
            if p.regular { ", regular" } else { "" }
        )),
        None if pulses.is_empty() => parts.push("no pulse channel".into()),
        None => {}
    }
    parts.join("; ")
}

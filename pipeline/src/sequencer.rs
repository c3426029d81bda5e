//! The sequencer: records in, validated frames out in stream order.
//!
//! Per record: decode and validate ([`ecg_ingest::codec`]); a record that fails goes
//! to the dead-letter topic with its reason. Per stream, frames are released in
//! sequence-number order:
//!
//! - a frame whose sequence number the stream has already passed (or holds) is a
//!   **duplicate**, dropped and counted;
//! - a frame ahead of a missing one **waits** in the stream's reorder buffer until the
//!   missing ones come or the wait ends: when the buffered frames span
//!   `reorder_horizon_ms` of device time, when the oldest has waited
//!   `reorder_wait_ms` of wall-clock time, or when the buffer holds
//!   `max_reorder_bytes` — then the missing frames are a **signal gap** (a finding)
//!   and the analysis restarts after it;
//! - a frame ahead of the stream whose device time does not fit its sequence number
//!   (more than `clock_jump_ms`, plus 10 % of the distance, off the time the stream's
//!   frames predict for it) is **late** (older) or from the **future** (newer): it
//!   goes to the dead-letter topic with `error.kind` `late` or `future`, so it never
//!   pins a commit and never takes the place of the genuine frame of that number;
//! - an in-order frame whose device time is off the stream's sample count by more
//!   than `clock_jump_ms` is a **device-clock jump** (a finding): the analysis
//!   restarts on the new clock;
//! - a stream silent for `idle_evict_s` is forgotten (the analyzer first emits the
//!   model windows it still holds); a record of a new stream when
//!   `max_streams` streams are held goes to the dead-letter topic as `stream_limit`.
//!
//! The sequencer holds back its partitions' commits only for frames in reorder
//! buffers ([`crate::commit::Holder::Sequencer`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ecg_ingest::codec;
use ecg_types::{
    Condition, DeadLetter, DeviceTimeUs, Finding, FindingSource, FindingStatus, Frame, PatientId,
    Restart, SequencedFrame, SourceRecord, StreamId,
};

use crate::commit::{Checkpoint, Holder};
use crate::config::StreamSettings;
use crate::events::{Event, Sink};

/// Most frames one stream's reorder buffer holds, whatever their size.
pub const MAX_PENDING: usize = 1024;

/// The source of stream-continuity findings (signal gaps, clock jumps).
pub fn ingest_source() -> FindingSource {
    FindingSource::Detector {
        name: "ingest".into(),
    }
}

/// A buffered frame.
#[derive(Debug)]
struct Waiting {
    frame: Frame,
    offset: i64,
    closed_us: i64,
    since: Instant,
    bytes: usize,
}

/// Device time of a stream as its sample count tells it, since the analysis last
/// (re)started: what the next frame's start should be.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    base: ecg_types::Timebase,
    n_leads: usize,
    samples: u64,
    /// Length of the last frame (µs).
    frame_us: i64,
}

impl Timeline {
    fn expected_t0(&self) -> i64 {
        self.base.time_of(self.samples)
    }
}

/// Per-stream sequencing state.
#[derive(Debug)]
struct Stream {
    partition: i32,
    patient: PatientId,
    /// Next sequence number to release (`None` until the stream has started).
    next_seq: Option<u64>,
    /// The stream's clock since the analysis last (re)started.
    timeline: Option<Timeline>,
    /// Frames waiting for a missing predecessor (or for the start), by sequence number.
    pending: BTreeMap<u64, Waiting>,
    pending_bytes: usize,
    /// Whether the next frame released follows a gap.
    gap_before_next: bool,
    last_seen: Instant,
}

/// What the sequencer made of one epoch.
#[derive(Debug, Default)]
pub struct Sequenced {
    /// Frames released, in order per stream.
    pub frames: Vec<SequencedFrame>,
    /// Continuity findings (signal gaps, clock jumps).
    pub findings: Vec<Finding>,
    /// Per finding, when it closed (µs since the epoch).
    pub closed_us: Vec<i64>,
    /// Records bound for the dead-letter topic.
    pub dead_letters: Vec<DeadLetter>,
    /// Streams forgotten after a long silence: later stages drop them too.
    pub evicted: Vec<StreamId>,
}

/// The sequencer stage; see the module documentation.
#[derive(Debug)]
pub struct Sequencer {
    streams: HashMap<StreamId, Stream>,
    /// Per partition, one past the highest offset read.
    high: BTreeMap<i32, i64>,
    settings: StreamSettings,
    telemetry: Sink,
    last_evict: Instant,
    /// When the stream limit was last logged.
    limit_logged: Option<Instant>,
}

impl Sequencer {
    /// A sequencer with these settings, reporting to `telemetry`.
    pub fn new(settings: StreamSettings, telemetry: Sink) -> Self {
        Self {
            streams: HashMap::new(),
            high: BTreeMap::new(),
            settings,
            telemetry,
            last_evict: Instant::now(),
            limit_logged: None,
        }
    }

    /// Streams held.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Forgets the streams of revoked (or lost) partitions.
    pub fn drop_partitions(&mut self, partitions: &[i32]) {
        self.streams
            .retain(|_, s| !partitions.contains(&s.partition));
        for p in partitions {
            self.high.remove(p);
        }
    }

    /// Decodes and sequences one epoch's records; adds what the sequencer still holds
    /// to `checkpoint`.
    pub fn process(
        &mut self,
        records: Vec<SourceRecord>,
        now_us: impl Fn() -> i64,
        checkpoint: &mut Checkpoint,
    ) -> Sequenced {
        let mut out = Sequenced::default();
        let mut taken_us = None;
        let now = Instant::now();
        for record in records {
            self.telemetry.emit(&Event::RecordConsumed);
            let closed_us = record
                .timestamp_us
                .unwrap_or_else(|| *taken_us.get_or_insert_with(&now_us));
            let pos = record.position;
            let high = self.high.entry(pos.partition).or_insert(pos.offset + 1);
            *high = (*high).max(pos.offset + 1);
            match codec::decode(&record.payload, record.content_type.as_deref()) {
                Ok(frame) => {
                    let last_sample_us = frame.end().0;
                    self.telemetry.emit(&Event::FrameIngested {
                        device_lag_s: (now_us() - last_sample_us).max(0) as f64 / 1e6,
                    });
                    self.accept(frame, record, closed_us, now, &mut out);
                }
                Err(e) => self.dead_letter(record, e.kind(), e.to_string(), &mut out),
            }
            out.closed_us.resize(out.findings.len(), closed_us);
        }
        self.expire_waits(now, &mut out);
        self.evict_idle(now, &mut out);
        checkpoint.high = self.high.clone();
        for s in self.streams.values() {
            if let Some(o) = s.pending.values().map(|w| w.offset).min() {
                checkpoint.hold(Holder::Sequencer, s.partition, o);
            }
        }
        self.telemetry
            .emit(&Event::StreamsActive(self.streams.len()));
        out
    }

    fn dead_letter(
        &self,
        record: SourceRecord,
        kind: &'static str,
        reason: String,
        out: &mut Sequenced,
    ) {
        self.telemetry.emit(&Event::RecordDeadLettered { kind });
        tracing::debug!(
            kind,
            partition = record.position.partition,
            offset = record.position.offset,
            "record dead-lettered"
        );
        out.dead_letters.push(DeadLetter {
            record,
            kind,
            reason,
        });
    }

    /// Takes one validated frame through its stream's sequencing.
    fn accept(
        &mut self,
        frame: Frame,
        record: SourceRecord,
        closed_us: i64,
        now: Instant,
        out: &mut Sequenced,
    ) {
        let partition = record.position.partition;
        let known = self.streams.contains_key(&frame.stream);
        if !known && self.streams.len() >= self.settings.max_streams {
            self.telemetry.emit(&Event::StreamLimitReached);
            if self
                .limit_logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
            {
                self.limit_logged = Some(now);
                tracing::warn!(
                    max_streams = self.settings.max_streams,
                    "stream limit reached: records of new streams go to the dead-letter topic (kind stream_limit) until streams are evicted; raise pipeline.streams.max_streams or add pipeline instances"
                );
            }
            let reason = format!(
                "this pipeline instance already holds {} streams (pipeline.streams.max_streams)",
                self.settings.max_streams
            );
            self.dead_letter(record, "stream_limit", reason, out);
            return;
        }
        if !known {
            // The id is copied for a new stream only.
            self.streams.insert(
                frame.stream.clone(),
                Stream {
                    partition,
                    patient: frame.patient.clone(),
                    next_seq: None,
                    timeline: None,
                    pending: BTreeMap::new(),
                    pending_bytes: 0,
                    gap_before_next: false,
                    last_seen: now,
                },
            );
        }
        let st = self
            .streams
            .get_mut(&frame.stream)
            .expect("the stream is known or was just inserted");
        st.last_seen = now;
        st.partition = partition;
        if st.next_seq.is_some_and(|n| frame.seq < n) || st.pending.contains_key(&frame.seq) {
            self.telemetry.emit(&Event::FrameDuplicate);
            return;
        }
        if let (Some(next), Some(tl)) = (st.next_seq, st.timeline) {
            let (expected_t0, frame_us) = (tl.expected_t0(), tl.frame_us);
            if frame.seq > next {
                // Where this sequence number should sit on the stream's clock.
                let ahead = i64::try_from(frame.seq - next).unwrap_or(i64::MAX);
                let predicted = expected_t0.saturating_add(ahead.saturating_mul(frame_us));
                let tolerance = i64::from(self.settings.clock_jump_ms) * 1000
                    + ahead.saturating_mul(frame_us) / 10;
                let off = frame.t0.0.saturating_sub(predicted);
                if off.abs() > tolerance {
                    let (kind, word) = if off < 0 {
                        ("late", "before")
                    } else {
                        ("future", "after")
                    };
                    let reason = format!(
                        "frame seq {} starts {:.3} s {word} where its stream's frames put that sequence number (tolerance {:.3} s)",
                        frame.seq,
                        off.unsigned_abs() as f64 / 1e6,
                        tolerance as f64 / 1e6
                    );
                    self.dead_letter(record, kind, reason, out);
                    return;
                }
            }
        }
        let st = self
            .streams
            .get_mut(&frame.stream)
            .expect("the stream was just inserted");
        if st.next_seq.is_some_and(|n| frame.seq > n) {
            self.telemetry.emit(&Event::FrameReordered);
        }
        let bytes = frame.samples.len() * std::mem::size_of::<i32>()
            + frame
                .pulses
                .iter()
                .map(|p| p.samples.len() * std::mem::size_of::<f32>())
                .sum::<usize>()
            + frame.pace.len() * std::mem::size_of::<u32>();
        let seq = frame.seq;
        let w = Waiting {
            frame,
            offset: record.position.offset,
            closed_us,
            since: now,
            bytes,
        };
        if st.pending.is_empty() && st.next_seq == Some(seq) {
            // The next frame with none waiting: out at once, as `release` would let it
            // out of the buffer.
            emit(st, &self.settings, &self.telemetry, w, out);
            return;
        }
        st.pending_bytes += bytes;
        st.pending.insert(seq, w);
        release(st, &self.settings, &self.telemetry, now, out);
    }

    /// Ends the waits that have lasted `reorder_wait_ms` of wall-clock time.
    fn expire_waits(&mut self, now: Instant, out: &mut Sequenced) {
        let wait = Duration::from_millis(self.settings.reorder_wait_ms);
        for st in self.streams.values_mut() {
            if st
                .pending
                .values()
                .any(|w| now.duration_since(w.since) >= wait)
            {
                release(st, &self.settings, &self.telemetry, now, out);
            }
        }
    }

    fn evict_idle(&mut self, now: Instant, out: &mut Sequenced) {
        if now.duration_since(self.last_evict) < Duration::from_secs(1) {
            return;
        }
        self.last_evict = now;
        let idle = Duration::from_secs_f32(self.settings.idle_evict_s.max(0.0));
        let before = out.evicted.len();
        self.streams.retain(|id, s| {
            let keep = now.duration_since(s.last_seen) < idle;
            if !keep {
                out.evicted.push(id.clone());
            }
            keep
        });
        let evicted = out.evicted.len() - before;
        if evicted > 0 {
            self.telemetry.emit(&Event::StreamsEvicted(evicted));
            tracing::debug!(evicted, "idle streams dropped");
        }
    }
}

/// Releases the stream's pending frames that are in order, or whose wait is over.
fn release(
    st: &mut Stream,
    settings: &StreamSettings,
    telemetry: &Sink,
    now: Instant,
    out: &mut Sequenced,
) {
    let horizon = i64::from(settings.reorder_horizon_ms) * 1000;
    let wait = Duration::from_millis(settings.reorder_wait_ms);
    loop {
        let Some((&first, _)) = st.pending.first_key_value() else {
            return;
        };
        if st.next_seq != Some(first) {
            // A hole (or the stream's start): wait until the horizon is full, the
            // buffer reaches its budget, or the wait has lasted too long.
            let (Some((_, head)), Some((_, tail))) =
                (st.pending.first_key_value(), st.pending.last_key_value())
            else {
                return;
            };
            let from = match (st.timeline, st.next_seq) {
                (Some(tl), Some(_)) => tl.expected_t0(),
                _ => head.frame.t0.0,
            };
            let full = tail.frame.end().0 - from >= horizon || st.pending.len() >= MAX_PENDING;
            let over_budget = st.pending_bytes > settings.max_reorder_bytes;
            let expired = st
                .pending
                .values()
                .any(|w| now.duration_since(w.since) >= wait);
            if !(full || over_budget || expired) {
                return;
            }
            if over_budget && !full {
                telemetry.emit(&Event::ReorderBudgetExceeded);
                tracing::warn!(
                    pending_bytes = st.pending_bytes,
                    max_reorder_bytes = settings.max_reorder_bytes,
                    "reorder buffer over its byte budget: missing frames declared a gap"
                );
            } else if expired && !full {
                telemetry.emit(&Event::ReorderWaitExpired);
            }
            if let Some(missing_from) = st.next_seq {
                gap(st, missing_from, first, telemetry, out);
            }
            st.next_seq = Some(first);
        }
        let Some((seq, w)) = st.pending.pop_first() else {
            return;
        };
        st.pending_bytes -= w.bytes;
        debug_assert_eq!(seq, w.frame.seq);
        emit(st, settings, telemetry, w, out);
    }
}

/// Frames `missing_from..resume_at` never came: a signal gap; the analysis restarts
/// at the next frame.
fn gap(st: &mut Stream, missing_from: u64, resume_at: u64, telemetry: &Sink, out: &mut Sequenced) {
    let Some((_, next)) = st.pending.first_key_value() else {
        return;
    };
    let start = st.timeline.map_or(next.frame.t0.0, |tl| tl.expected_t0());
    let end = next.frame.t0.0.max(start);
    telemetry.emit(&Event::SignalGap);
    tracing::debug!(
        missing_frames = resume_at - missing_from,
        seconds = (end - start) as f64 / 1e6,
        "signal gap"
    );
    out.findings.push(continuity_finding(
        &next.frame.stream,
        &st.patient,
        Condition::SignalGap,
        start,
        end,
        (end - start) as f32 / 1e6,
    ));
    st.timeline = None;
    st.gap_before_next = true;
}

/// Releases one in-order frame, flagging a restart after a gap or a clock jump.
fn emit(
    st: &mut Stream,
    settings: &StreamSettings,
    telemetry: &Sink,
    w: Waiting,
    out: &mut Sequenced,
) {
    let frame = w.frame;
    // The stream's next frame is the one after this.
    st.next_seq = Some(frame.seq + 1);
    let mut restart = std::mem::take(&mut st.gap_before_next).then_some(Restart::AfterGap);
    // A new rate or lead set restarts the analysis on the frame's own clock.
    if st
        .timeline
        .is_some_and(|tl| tl.base.rate != frame.sample_rate || tl.n_leads != frame.leads.len())
    {
        st.timeline = None;
    }
    if let Some(tl) = st.timeline {
        let expected = tl.expected_t0();
        let jump = frame.t0.0 - expected;
        if restart.is_none() && jump.abs() > i64::from(settings.clock_jump_ms) * 1000 {
            telemetry.emit(&Event::ClockJump);
            tracing::debug!(jump_s = jump as f64 / 1e6, "device clock jump");
            out.findings.push(continuity_finding(
                &frame.stream,
                &st.patient,
                Condition::ClockJump,
                expected,
                expected,
                jump as f32 / 1e6,
            ));
            restart = Some(Restart::ClockJump);
            st.timeline = None;
        }
    }
    if st.patient != frame.patient {
        st.patient = frame.patient.clone();
    }
    let n = frame.samples_per_lead() as u64;
    let tl = st.timeline.get_or_insert(Timeline {
        base: ecg_types::Timebase::new(frame.t0, frame.sample_rate),
        n_leads: frame.leads.len(),
        samples: 0,
        frame_us: 1,
    });
    tl.samples += n;
    tl.frame_us = frame.sample_rate.samples_to_us(n).max(1);
    out.frames.push(SequencedFrame {
        frame,
        position: ecg_types::Position {
            partition: st.partition,
            offset: w.offset,
        },
        closed_us: w.closed_us,
        restart,
    });
}

/// A present continuity finding (signal gap, clock jump) from the ingest detector.
pub fn continuity_finding(
    stream: &StreamId,
    patient: &PatientId,
    condition: Condition,
    start: i64,
    end: i64,
    value: f32,
) -> Finding {
    Finding::new(
        stream.clone(),
        patient.clone(),
        ingest_source(),
        condition,
        FindingStatus::Present,
        DeviceTimeUs(start),
        DeviceTimeUs(end),
    )
    .with_value(Some(value))
}

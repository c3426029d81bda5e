//! What the stages report as they work: typed internal events.
//!
//! Every stage emits [`Event`]s to a [`Telemetry`] subscriber instead of updating
//! metrics itself; the Prometheus metrics ([`crate::metrics::PipelineMetrics`]) are
//! one subscriber, a test can be another ([`Recorder`]). Events carry no sample data
//! and no patient, device or stream identifiers: only counts, durations and fixed
//! label values (error kinds, model ids, conditions).

use std::sync::{Arc, Mutex};

use ecg_types::{Condition, FindingStatus};

/// A stage's report of something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The source read a record from the frames topic (valid or not).
    RecordConsumed,
    /// A record went to the dead-letter topic, by error kind.
    RecordDeadLettered {
        /// `DecodeError::kind`, or a sequencing policy (`late`, `future`,
        /// `stream_limit`).
        kind: &'a str,
    },
    /// A frame was decoded: how far behind its last sample (device clock) the pipeline
    /// saw it.
    FrameIngested {
        /// Seconds from the frame's last sample to its decoding (≥ 0).
        device_lag_s: f64,
    },
    /// A frame whose sequence number its stream had already seen was dropped.
    FrameDuplicate,
    /// A frame arrived ahead of a missing one and waited in the reorder buffer.
    FrameReordered,
    /// Frames never came: a signal gap.
    SignalGap,
    /// A device clock jumped.
    ClockJump,
    /// A stream's reorder buffer reached its byte budget: the wait for its missing
    /// frames ended early.
    ReorderBudgetExceeded,
    /// A stream's buffered frames waited the longest wall-clock time allowed: the
    /// missing frames became a gap.
    ReorderWaitExpired,
    /// A record of a new stream was turned away because the process already holds
    /// the most streams it may.
    StreamLimitReached,
    /// Streams with state in this process, now.
    StreamsActive(usize),
    /// Streams whose state was dropped after a long silence.
    StreamsEvicted(usize),
    /// Samples (per lead) through the analyzer.
    SamplesAnalyzed(u64),
    /// A rhythm window closed, of good or poor signal.
    RhythmWindow {
        /// Whether the signal was good.
        good: bool,
    },
    /// One ONNX Runtime run of a model.
    ModelRun {
        /// Model id.
        model: &'a str,
        /// Windows scored by the run.
        windows: usize,
        /// Seconds the run took.
        seconds: f64,
    },
    /// Model windows by outcome.
    WindowsScored {
        /// Model id.
        model: &'a str,
        /// What became of them.
        outcome: ScoreOutcome,
        /// How many.
        count: usize,
    },
    /// A model run failed with a transient fault and is tried again.
    ScoreRetry {
        /// Model id.
        model: &'a str,
    },
    /// A finding was acknowledged by the broker.
    FindingPublished {
        /// What about.
        condition: Condition,
        /// Present, absent or indeterminate.
        status: FindingStatus,
        /// Seconds from its window's end (device time) to now, and from its window
        /// closing (the Kafka timestamp of the frame that completed it) to now;
        /// `None` for a window that never closed ([`crate::analyzer::UNTIMED`]).
        latency: Option<(f64, f64)>,
    },
    /// Consumption paused because the stages behind the source were full.
    BackpressurePause,
    /// A consumer-group rebalance, by kind (`assign`, `revoke`, `lost`).
    Rebalance {
        /// The kind.
        kind: &'static str,
    },
    /// Partitions of the frames topic assigned to this process, now.
    PartitionsAssigned(usize),
    /// Messages between the committed offset and the end of a partition.
    ConsumerLag {
        /// The partition.
        partition: i32,
        /// The lag (-1 while unknown).
        lag: i64,
    },
}

/// What became of model windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreOutcome {
    /// Scored.
    Scored,
    /// Not scored: poor signal.
    Indeterminate,
    /// Not scored: the window or the model failed permanently.
    Failed,
}

impl ScoreOutcome {
    /// Every outcome.
    pub const ALL: [ScoreOutcome; 3] = [
        ScoreOutcome::Scored,
        ScoreOutcome::Indeterminate,
        ScoreOutcome::Failed,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreOutcome::Scored => "scored",
            ScoreOutcome::Indeterminate => "indeterminate",
            ScoreOutcome::Failed => "failed",
        }
    }
}

/// A subscriber of the stages' events.
pub trait Telemetry: Send + Sync + std::fmt::Debug {
    /// Takes one event. Called on the stages' threads: keep it cheap.
    fn emit(&self, event: &Event<'_>);
}

/// A shared subscriber.
pub type Sink = Arc<dyn Telemetry>;

/// A subscriber that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Telemetry for Discard {
    fn emit(&self, _: &Event<'_>) {}
}

/// A subscriber that keeps a description of every event, for tests that check what
/// a stage emitted.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Vec<String>>,
}

impl Recorder {
    /// Every event so far, as `{:?}` strings.
    pub fn events(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many events so far start with `prefix` (their `{:?}` form).
    pub fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

impl Telemetry for Recorder {
    fn emit(&self, event: &Event<'_>) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{event:?}"));
    }
}

/// Several subscribers as one.
#[derive(Debug, Clone, Default)]
pub struct Fanout(pub Vec<Sink>);

impl Telemetry for Fanout {
    fn emit(&self, event: &Event<'_>) {
        for s in &self.0 {
            s.emit(event);
        }
    }
}

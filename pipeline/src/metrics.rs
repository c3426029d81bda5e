//! The pipeline's Prometheus metrics: one subscriber of the stages' [`Event`]s.
//!
//! Labels are fixed sets only (error kind, model id, outcome, condition, status,
//! partition, limit); never a patient, device or stream id. Series of every model and
//! every fixed label value exist from start-up at zero, so dashboards never show
//! "no data" for a quiet model.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::events::{Event, ScoreOutcome, Telemetry};

/// Bucket bounds (s) of the latency histograms.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Dead-letter kinds of the sequencing policies (beside `DecodeError::KINDS`).
pub const POLICY_KINDS: [&str; 3] = ["late", "future", "stream_limit"];

/// Every pipeline metric.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    /// Records read from the frames topic (valid or not).
    pub frames_consumed: IntCounter,
    /// Records sent to the dead-letter topic, by error kind.
    pub frames_dead_lettered: IntCounterVec,
    /// Samples (per lead) that went through the analyzer.
    pub samples_processed: IntCounter,
    /// Rhythm windows closed, by quality (good, poor).
    pub dsp_windows: IntCounterVec,
    /// Model windows, by model and outcome (scored, indeterminate, failed).
    pub windows_scored: IntCounterVec,
    /// Windows per ONNX Runtime run, by model.
    pub inference_batch_size: HistogramVec,
    /// Seconds per ONNX Runtime run, by model.
    pub inference_seconds: HistogramVec,
    /// Runs tried again after a transient fault, by model.
    pub inference_retries: IntCounterVec,
    /// Findings published, by condition and status.
    pub findings_published: IntCounterVec,
    /// Seconds from the end of a window (device time) to its finding being published.
    pub window_to_finding_seconds: Histogram,
    /// Seconds from a window closing to its finding being published.
    pub window_closed_to_finding_seconds: Histogram,
    /// Seconds from a frame's last sample (device time) to the pipeline decoding it.
    pub device_to_ingested_seconds: Histogram,
    /// Streams with state in this process.
    pub streams_active: IntGauge,
    /// Frames dropped because their stream had already seen their sequence number.
    pub frames_duplicate: IntCounter,
    /// Frames that waited in a reorder buffer.
    pub frames_reordered: IntCounter,
    /// Signal gaps.
    pub signal_gaps: IntCounter,
    /// Device-clock jumps.
    pub clock_jumps: IntCounter,
    /// Sequencer limits reached, by limit (reorder_budget, reorder_wait, stream_limit).
    pub sequencer_limits: IntCounterVec,
    /// Streams dropped after a long silence.
    pub streams_evicted: IntCounter,
    /// Times consumption paused because the stages were full.
    pub backpressure_pauses: IntCounter,
    /// Rebalance events, by kind.
    pub rebalances: IntCounterVec,
    /// Partitions of the frames topic assigned to this process.
    pub partitions_assigned: IntGauge,
    /// Committed offset to end of each assigned frames partition.
    pub consumer_lag: IntGaugeVec,
}

impl PipelineMetrics {
    /// Creates every metric, hands each to `register` (which adds it to a registry),
    /// and creates the series of `models` and of every fixed label value at zero.
    ///
    /// # Errors
    /// When a metric's name or labels are invalid (a programming error, caught by the
    /// tests).
    pub fn new(
        models: &[String],
        register: &mut dyn FnMut(Box<dyn Collector>),
    ) -> prometheus::Result<Self> {
        let mut reg = |c: Box<dyn Collector>| register(c);
        macro_rules! add {
            ($m:expr) => {{
                let m = $m;
                reg(Box::new(m.clone()));
                m
            }};
        }
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let counters = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let latency = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
        };
        let m = PipelineMetrics {
            frames_consumed: add!(counter(
                "cardiostream_ingest_frames_consumed_total",
                "Frames read from the frames topic, valid or not.",
            )?),
            frames_dead_lettered: add!(counters(
                "cardiostream_ingest_frames_dead_lettered_total",
                "Frames sent to the dead-letter topic, by error kind.",
                &["kind"],
            )?),
            samples_processed: add!(counter(
                "cardiostream_dsp_samples_total",
                "Samples per lead that went through the DSP stage.",
            )?),
            dsp_windows: add!(counters(
                "cardiostream_dsp_windows_total",
                "Rhythm windows closed by the DSP stage, by signal quality.",
                &["quality"],
            )?),
            windows_scored: add!(counters(
                "cardiostream_inference_windows_total",
                "Model windows, by model and outcome (scored, indeterminate, failed).",
                &["model", "outcome"],
            )?),
            inference_batch_size: add!(HistogramVec::new(
                HistogramOpts::new(
                    "cardiostream_inference_batch_size",
                    "Windows per ONNX Runtime run."
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                &["model"],
            )?),
            inference_seconds: add!(HistogramVec::new(
                HistogramOpts::new(
                    "cardiostream_inference_seconds",
                    "Seconds per ONNX Runtime run."
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["model"],
            )?),
            inference_retries: add!(counters(
                "cardiostream_inference_retries_total",
                "ONNX Runtime runs tried again after a transient fault, by model.",
                &["model"],
            )?),
            findings_published: add!(counters(
                "cardiostream_findings_published_total",
                "Findings published to the findings topic, by condition and status.",
                &["condition", "status"],
            )?),
            window_to_finding_seconds: add!(latency(
                "cardiostream_window_to_finding_seconds",
                "Seconds from the end of a window (device time) to its finding being published.",
            )?),
            window_closed_to_finding_seconds: add!(latency(
                "cardiostream_window_closed_to_finding_seconds",
                "Seconds from a window closing (the Kafka timestamp of the frame that completed it) to its finding being published.",
            )?),
            device_to_ingested_seconds: add!(latency(
                "cardiostream_device_to_ingested_seconds",
                "Seconds from a frame's last sample (device time) to the pipeline decoding it.",
            )?),
            streams_active: add!(IntGauge::new(
                "cardiostream_streams_active",
                "Streams with DSP state in this process.",
            )?),
            frames_duplicate: add!(counter(
                "cardiostream_ingest_frames_duplicate_total",
                "Frames dropped because their stream had already seen their sequence number.",
            )?),
            frames_reordered: add!(counter(
                "cardiostream_ingest_frames_reordered_total",
                "Frames that arrived ahead of a missing one and waited in the reorder buffer.",
            )?),
            signal_gaps: add!(counter(
                "cardiostream_ingest_signal_gaps_total",
                "Signal gaps: frames missing beyond the reorder horizon.",
            )?),
            clock_jumps: add!(counter(
                "cardiostream_ingest_clock_jumps_total",
                "Device-clock jumps beyond tolerance.",
            )?),
            sequencer_limits: add!(counters(
                "cardiostream_ingest_sequencer_limits_total",
                "Sequencer limits reached, by limit (reorder_budget, reorder_wait, stream_limit).",
                &["kind"],
            )?),
            streams_evicted: add!(counter(
                "cardiostream_streams_evicted_total",
                "Streams whose state was dropped after a long silence.",
            )?),
            backpressure_pauses: add!(counter(
                "cardiostream_ingest_backpressure_pauses_total",
                "Times consumption was paused because processing was behind.",
            )?),
            rebalances: add!(counters(
                "cardiostream_ingest_rebalances_total",
                "Consumer-group rebalance events, by kind.",
                &["kind"],
            )?),
            partitions_assigned: add!(IntGauge::new(
                "cardiostream_ingest_partitions_assigned",
                "Partitions of the frames topic assigned to this process.",
            )?),
            consumer_lag: add!(IntGaugeVec::new(
                Opts::new(
                    "cardiostream_ingest_consumer_lag",
                    "Messages between the committed offset and the end of each assigned frames partition.",
                ),
                &["partition"],
            )?),
        };
        for kind in ecg_ingest::codec::DecodeError::KINDS
            .iter()
            .chain(&POLICY_KINDS)
        {
            m.frames_dead_lettered.with_label_values(&[kind]);
        }
        for q in ["good", "poor"] {
            m.dsp_windows.with_label_values(&[q]);
        }
        for kind in ["reorder_budget", "reorder_wait", "stream_limit"] {
            m.sequencer_limits.with_label_values(&[kind]);
        }
        m.init_models(models);
        Ok(m)
    }

    /// Creates the per-model series of these models at zero.
    pub fn init_models(&self, models: &[String]) {
        for model in models {
            for o in ScoreOutcome::ALL {
                self.windows_scored.with_label_values(&[model, o.as_str()]);
            }
            self.inference_batch_size.with_label_values(&[model]);
            self.inference_seconds.with_label_values(&[model]);
            self.inference_retries.with_label_values(&[model]);
        }
    }
}

impl Telemetry for PipelineMetrics {
    fn emit(&self, event: &Event<'_>) {
        match *event {
            Event::RecordConsumed => self.frames_consumed.inc(),
            Event::RecordDeadLettered { kind } => {
                self.frames_dead_lettered.with_label_values(&[kind]).inc();
            }
            Event::FrameIngested { device_lag_s } => {
                self.device_to_ingested_seconds.observe(device_lag_s);
            }
            Event::FrameDuplicate => self.frames_duplicate.inc(),
            Event::FrameReordered => self.frames_reordered.inc(),
            Event::SignalGap => self.signal_gaps.inc(),
            Event::ClockJump => self.clock_jumps.inc(),
            Event::ReorderBudgetExceeded => self
                .sequencer_limits
                .with_label_values(&["reorder_budget"])
                .inc(),
            Event::ReorderWaitExpired => self
                .sequencer_limits
                .with_label_values(&["reorder_wait"])
                .inc(),
            Event::StreamLimitReached => self
                .sequencer_limits
                .with_label_values(&["stream_limit"])
                .inc(),
            Event::StreamsActive(n) => self.streams_active.set(n as i64),
            Event::StreamsEvicted(n) => self.streams_evicted.inc_by(n as u64),
            Event::SamplesAnalyzed(n) => self.samples_processed.inc_by(n),
            Event::RhythmWindow { good } => self
                .dsp_windows
                .with_label_values(&[if good { "good" } else { "poor" }])
                .inc(),
            Event::ModelRun {
                model,
                windows,
                seconds,
            } => {
                self.inference_seconds
                    .with_label_values(&[model])
                    .observe(seconds);
                if windows > 0 {
                    self.inference_batch_size
                        .with_label_values(&[model])
                        .observe(windows as f64);
                }
            }
            Event::WindowsScored {
                model,
                outcome,
                count,
            } => self
                .windows_scored
                .with_label_values(&[model, outcome.as_str()])
                .inc_by(count as u64),
            Event::ScoreRetry { model } => {
                self.inference_retries.with_label_values(&[model]).inc();
            }
            Event::FindingPublished {
                condition,
                status,
                latency,
            } => {
                self.findings_published
                    .with_label_values(&[condition.as_str(), status.as_str()])
                    .inc();
                if let Some((since_window_end_s, since_closed_s)) = latency {
                    self.window_to_finding_seconds
                        .observe(since_window_end_s.max(0.0));
                    self.window_closed_to_finding_seconds
                        .observe(since_closed_s.max(0.0));
                }
            }
            Event::BackpressurePause => self.backpressure_pauses.inc(),
            Event::Rebalance { kind } => self.rebalances.with_label_values(&[kind]).inc(),
            Event::PartitionsAssigned(n) => self.partitions_assigned.set(n as i64),
            Event::ConsumerLag { partition, lag } => self
                .consumer_lag
                .with_label_values(&[&partition.to_string()])
                .set(lag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{Condition, FindingStatus};

    #[test]
    fn every_model_has_its_series_from_the_start() {
        let registry = prometheus::Registry::new();
        let mut register = |c: Box<dyn Collector>| {
            registry.register(c).expect("unique");
        };
        let m = PipelineMetrics::new(&["af-cnn".into(), "ecg12-attia".into()], &mut register)
            .expect("valid metrics");
        let families = registry.gather();
        let series = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        assert_eq!(series("cardiostream_inference_windows_total"), 6);
        assert_eq!(series("cardiostream_inference_seconds"), 2);
        assert_eq!(series("cardiostream_inference_retries_total"), 2);
        m.emit(&Event::WindowsScored {
            model: "af-cnn",
            outcome: ScoreOutcome::Scored,
            count: 3,
        });
        assert_eq!(
            m.windows_scored
                .with_label_values(&["af-cnn", "scored"])
                .get(),
            3
        );
    }

    #[test]
    fn a_finding_of_a_window_that_never_closed_is_counted_not_timed() {
        let m = PipelineMetrics::new(&[], &mut |_| {}).expect("valid metrics");
        let published = |latency| Event::FindingPublished {
            condition: Condition::AtrialFibrillation,
            status: FindingStatus::Present,
            latency,
        };
        m.emit(&published(Some((2.5, 0.2))));
        m.emit(&published(None));
        let count = m
            .findings_published
            .with_label_values(&["atrial_fibrillation", "present"])
            .get();
        assert_eq!(count, 2);
        assert_eq!(m.window_to_finding_seconds.get_sample_count(), 1);
        assert_eq!(m.window_closed_to_finding_seconds.get_sample_count(), 1);
        assert!((m.window_closed_to_finding_seconds.get_sample_sum() - 0.2).abs() < 1e-9);
    }
}

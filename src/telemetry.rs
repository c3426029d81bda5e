//! Prometheus metrics of the process. Labels never carry patient, device or stream
//! ids: only fixed sets (error kind, model id, condition, priority, state).

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the binary exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Name and label names of every metric, as registered.
    catalogue: Vec<(String, Vec<String>)>,
    /// Frames read from `ecg.frames.v1` (valid or not).
    pub frames_consumed: IntCounter,
    /// Frames sent to the dead-letter topic, by error kind.
    pub frames_dead_lettered: IntCounterVec,
    /// Samples (per lead) that went through the DSP stage.
    pub samples_processed: IntCounter,
    /// Rhythm windows closed by the DSP stage, by quality (good, poor).
    pub dsp_windows: IntCounterVec,
    /// Model windows, by model and outcome (scored, indeterminate).
    pub windows_scored: IntCounterVec,
    /// Windows per ONNX Runtime run, by model.
    pub inference_batch_size: HistogramVec,
    /// Seconds per ONNX Runtime run, by model.
    pub inference_seconds: HistogramVec,
    /// Findings published to `ecg.findings.v1`, by condition and status.
    pub findings_published: IntCounterVec,
    /// Seconds from the end of a window (device time) to its finding being published.
    pub window_to_finding_seconds: Histogram,
    /// Seconds from a window closing (the Kafka timestamp of the frame that completed
    /// it, detector look-ahead included) to its finding being published.
    pub window_closed_to_finding_seconds: Histogram,
    /// Seconds from a frame's last sample (device time) to the pipeline decoding it.
    pub device_to_ingested_seconds: Histogram,
    /// Alert state changes, by priority and state.
    pub alerts: IntCounterVec,
    /// Findings the alert service consumed, by outcome (applied, undecodable, retried).
    pub alert_findings: IntCounterVec,
    /// Findings older than the alert service's staleness horizon (recorded, not paged).
    pub alert_stale_findings: IntCounter,
    /// Rows the alert store's retention deleted, by kind (alerts, audit, deliveries,
    /// silences).
    pub alert_store_pruned: IntCounterVec,
    /// Notifications to receivers, by receiver kind and outcome (delivered, failed).
    pub alert_deliveries: IntCounterVec,
    /// Seconds from a finding consumed to its notification delivered, by receiver kind.
    pub alert_delivery_seconds: HistogramVec,
    /// Seconds from an alert's first notification to its acknowledgement, by priority.
    pub alert_time_to_ack_seconds: HistogramVec,
    /// Clinicians' verdicts on alerts, by rule, model and verdict (from the store).
    pub alert_verdicts: IntGaugeVec,
    /// Confirmed / (confirmed + false alarm) per rule and model (from the store).
    pub alert_precision: GaugeVec,
    /// Streams with DSP state in this process.
    pub streams_active: IntGauge,
    /// Frames produced by the simulator (demo and `sim`).
    pub sim_frames_produced: IntCounter,
    /// Frames dropped because their stream had already seen their sequence number.
    pub frames_duplicate: IntCounter,
    /// Frames that arrived ahead of a missing one and waited in the reorder buffer.
    pub frames_reordered: IntCounter,
    /// Signal gaps (frames missing beyond the reorder horizon).
    pub signal_gaps: IntCounter,
    /// Device-clock jumps (frame times off the sample count beyond tolerance).
    pub clock_jumps: IntCounter,
    /// Streams whose state was dropped after a long silence.
    pub streams_evicted: IntCounter,
    /// Times consumption was paused because processing was behind.
    pub backpressure_pauses: IntCounter,
    /// Rebalance events, by kind (assign, revoke, lost).
    pub rebalances: IntCounterVec,
    /// Partitions of the frames topic assigned to this process.
    pub partitions_assigned: IntGauge,
    /// Messages between this consumer's position and the end of each assigned
    /// partition of the frames topic (librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// HTTP connections refused or cut by a limit, by reason (`limit`,
    /// `header_timeout`, `idle_timeout`, `shutdown`).
    pub http_connections_closed: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: names are static and unique (checked by a test).
    #[allow(clippy::expect_used)]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let catalogue = std::cell::RefCell::new(Vec::new());
        let reg = |m: Box<dyn prometheus::core::Collector>| {
            for d in m.desc() {
                catalogue
                    .borrow_mut()
                    .push((d.fq_name.clone(), d.variable_labels.clone()));
            }
            registry.register(m).expect("unique metric");
        };
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let hv = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let m = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let h = |name: &str, help: &str| {
            let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency.clone()))
                .expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let window_to_finding = h(
            "cardiostream_window_to_finding_seconds",
            "Seconds from the end of a window (device time) to its finding being published.",
        );
        let window_closed_to_finding = h(
            "cardiostream_window_closed_to_finding_seconds",
            "Seconds from a window closing (the Kafka timestamp of the frame that completed it) to its finding being published.",
        );
        let device_to_ingested = h(
            "cardiostream_device_to_ingested_seconds",
            "Seconds from a frame's last sample (device time) to the pipeline decoding it.",
        );
        let streams_active = IntGauge::new(
            "cardiostream_streams_active",
            "Streams with DSP state in this process.",
        )
        .expect("valid metric");
        reg(Box::new(streams_active.clone()));
        let m = Metrics {
            frames_consumed: c(
                "cardiostream_ingest_frames_consumed_total",
                "Frames read from the frames topic, valid or not.",
            ),
            frames_dead_lettered: cv(
                "cardiostream_ingest_frames_dead_lettered_total",
                "Frames sent to the dead-letter topic, by error kind.",
                &["kind"],
            ),
            samples_processed: c(
                "cardiostream_dsp_samples_total",
                "Samples per lead that went through the DSP stage.",
            ),
            dsp_windows: cv(
                "cardiostream_dsp_windows_total",
                "Rhythm windows closed by the DSP stage, by signal quality.",
                &["quality"],
            ),
            windows_scored: cv(
                "cardiostream_inference_windows_total",
                "Model windows, by model and outcome (scored or indeterminate).",
                &["model", "outcome"],
            ),
            inference_batch_size: hv(
                "cardiostream_inference_batch_size",
                "Windows per ONNX Runtime run.",
                &["model"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            inference_seconds: hv(
                "cardiostream_inference_seconds",
                "Seconds per ONNX Runtime run.",
                &["model"],
                latency.clone(),
            ),
            findings_published: cv(
                "cardiostream_findings_published_total",
                "Findings published to the findings topic, by condition and status.",
                &["condition", "status"],
            ),
            window_to_finding_seconds: window_to_finding,
            window_closed_to_finding_seconds: window_closed_to_finding,
            device_to_ingested_seconds: device_to_ingested,
            alerts: cv(
                "cardiostream_alerts_total",
                "Alert state changes, by priority and state.",
                &["priority", "state"],
            ),
            alert_findings: cv(
                "cardiostream_alert_findings_total",
                "Findings the alert service consumed, by outcome.",
                &["outcome"],
            ),
            alert_stale_findings: c(
                "cardiostream_alert_stale_findings_total",
                "Findings older than the staleness horizon: recorded, never paged.",
            ),
            alert_store_pruned: cv(
                "cardiostream_alert_store_pruned_total",
                "Rows the alert store's retention deleted, by kind.",
                &["kind"],
            ),
            alert_deliveries: cv(
                "cardiostream_alert_deliveries_total",
                "Notifications to receivers, by receiver kind and outcome.",
                &["kind", "outcome"],
            ),
            alert_delivery_seconds: hv(
                "cardiostream_alert_delivery_seconds",
                "Seconds from a finding consumed to its notification delivered, by receiver kind.",
                &["kind"],
                latency.clone(),
            ),
            alert_time_to_ack_seconds: hv(
                "cardiostream_alert_time_to_ack_seconds",
                "Seconds from an alert's first notification to its acknowledgement, by priority.",
                &["priority"],
                vec![5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0],
            ),
            alert_verdicts: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "cardiostream_alert_verdicts",
                        "Clinicians' verdicts on alerts, by rule, model and verdict.",
                    ),
                    &["rule", "model", "verdict"],
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            alert_precision: {
                let g = GaugeVec::new(
                    Opts::new(
                        "cardiostream_alert_precision",
                        "Confirmed / (confirmed + false alarm) per rule and model.",
                    ),
                    &["rule", "model"],
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            streams_active,
            frames_duplicate: c(
                "cardiostream_ingest_frames_duplicate_total",
                "Frames dropped because their stream had already seen their sequence number.",
            ),
            frames_reordered: c(
                "cardiostream_ingest_frames_reordered_total",
                "Frames that arrived ahead of a missing one and waited in the reorder buffer.",
            ),
            signal_gaps: c(
                "cardiostream_ingest_signal_gaps_total",
                "Signal gaps: frames missing beyond the reorder horizon.",
            ),
            clock_jumps: c(
                "cardiostream_ingest_clock_jumps_total",
                "Device-clock jumps beyond tolerance.",
            ),
            streams_evicted: c(
                "cardiostream_streams_evicted_total",
                "Streams whose state was dropped after a long silence.",
            ),
            backpressure_pauses: c(
                "cardiostream_ingest_backpressure_pauses_total",
                "Times consumption was paused because processing was behind.",
            ),
            rebalances: cv(
                "cardiostream_ingest_rebalances_total",
                "Consumer-group rebalance events, by kind.",
                &["kind"],
            ),
            partitions_assigned: {
                let g = IntGauge::new(
                    "cardiostream_ingest_partitions_assigned",
                    "Partitions of the frames topic assigned to this process.",
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "cardiostream_ingest_consumer_lag",
                        "Messages between the consumer's position and the end of each assigned frames partition.",
                    ),
                    &["partition"],
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            sim_frames_produced: c(
                "cardiostream_sim_frames_produced_total",
                "Frames produced by the device simulator.",
            ),
            http_connections_closed: cv(
                "cardiostream_http_connections_closed_total",
                "HTTP connections refused or cut by a limit, by reason.",
                &["reason"],
            ),
            registry,
            catalogue: Vec::new(),
        };
        let mut m = m;
        m.catalogue = catalogue.into_inner();
        for kind in ecg_ingest::codec::DecodeError::KINDS {
            m.frames_dead_lettered.with_label_values(&[kind]);
        }
        for reason in ["limit", "header_timeout", "idle_timeout", "shutdown"] {
            m.http_connections_closed.with_label_values(&[reason]);
        }
        m
    }

    /// Name and label names of every metric this process exports.
    pub fn catalogue(&self) -> &[(String, Vec<String>)] {
        &self.catalogue
    }

    /// The metrics in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels with a fixed, small set of values. Nothing that names a patient, device
    /// or stream may ever be a label.
    const ALLOWED_LABELS: [&str; 12] = [
        "kind",
        "reason",
        "rule",
        "verdict",
        "quality",
        "model",
        "outcome",
        "condition",
        "status",
        "priority",
        "state",
        "partition",
    ];

    #[test]
    fn every_metric_is_documented_and_labels_carry_no_identifiers() {
        let m = Metrics::new();
        let doc = include_str!("../docs/metrics.md");
        assert!(m.catalogue().len() >= 20);
        for (name, labels) in m.catalogue() {
            assert!(
                doc.contains(&format!("`{name}`")) || doc.contains(&format!("`{name}{{")),
                "{name} is missing from docs/metrics.md"
            );
            for l in labels {
                assert!(ALLOWED_LABELS.contains(&l.as_str()), "{name} has label {l}");
            }
        }
        // And the document names no metric that does not exist.
        for word in doc.split('`').filter(|w| w.starts_with("cardiostream_")) {
            let base = word.split('{').next().unwrap_or(word);
            assert!(
                m.catalogue().iter().any(|(n, _)| n == base),
                "docs/metrics.md names {base}, which is not exported"
            );
        }
    }
}

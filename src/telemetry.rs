//! Prometheus metrics of the process: the pipeline's (its stages' events, see
//! `ecg_pipeline::metrics`), the alert service's and the simulator's, in one
//! registry. Labels never carry patient, device or stream ids: only fixed sets
//! (error kind, model id, condition, priority, state).

use std::sync::Arc;
use std::time::Duration;

use ecg_alerts::server::{Closed, OnClosed};
use ecg_alerts::service::{FindingOutcome, Hooks};
use ecg_alerts::store::{PrecisionRow, Pruned, Verdict};
use ecg_pipeline::{PipelineMetrics, Sink};
use ecg_types::{Alert, Priority};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the binary exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Name and label names of every metric, as registered.
    catalogue: Vec<(String, Vec<String>)>,
    /// The pipeline's metrics: the subscriber of its stages' events.
    pub pipeline: Arc<PipelineMetrics>,
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
    /// Frames produced by the simulator (demo and `sim`).
    pub sim_frames_produced: IntCounter,
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
        let latency = ecg_pipeline::metrics::LATENCY_BUCKETS.to_vec();
        let pipeline =
            Arc::new(PipelineMetrics::new(&[], &mut |m| reg(m)).expect("valid pipeline metrics"));
        let m = Metrics {
            pipeline,
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
        for reason in Closed::ALL {
            m.http_connections_closed
                .with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// The HTTP server's subscriber: counts the connections it closed, by reason.
    pub fn on_http_closed(&self) -> OnClosed {
        let counter = self.http_connections_closed.clone();
        Arc::new(move |reason: Closed, n| {
            counter.with_label_values(&[reason.as_str()]).inc_by(n);
        })
    }

    /// The subscriber of the pipeline stages' events (the pipeline metrics), with
    /// the series of `models` created at zero.
    pub fn pipeline_sink(&self, models: &[String]) -> Sink {
        self.pipeline.init_models(models);
        self.pipeline.clone()
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

/// The alert service's metrics: a subscriber of its [`Hooks`] events.
#[derive(Debug)]
pub struct AlertMetrics {
    metrics: Metrics,
}

impl AlertMetrics {
    /// The subscriber, with every fixed series created (at zero) so that rates and
    /// dashboards work before the first notification or acknowledgement.
    pub fn new(metrics: &Metrics) -> Arc<Self> {
        for kind in ["webhook", "fhir", "hl7_mllp"] {
            for outcome in ["delivered", "failed"] {
                metrics.alert_deliveries.with_label_values(&[kind, outcome]);
            }
            metrics.alert_delivery_seconds.with_label_values(&[kind]);
        }
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            metrics
                .alert_time_to_ack_seconds
                .with_label_values(&[p.as_str()]);
        }
        for outcome in FindingOutcome::ALL {
            metrics
                .alert_findings
                .with_label_values(&[outcome.as_str()]);
        }
        for (kind, _) in Pruned::default().by_kind() {
            metrics.alert_store_pruned.with_label_values(&[kind]);
        }
        Arc::new(Self {
            metrics: metrics.clone(),
        })
    }
}

impl Hooks for AlertMetrics {
    fn alert(&self, alert: &Alert) {
        self.metrics
            .alerts
            .with_label_values(&[alert.priority.as_str(), alert.state.as_str()])
            .inc();
    }

    fn delivery(&self, kind: &str, ok: bool, since_finding: Option<Duration>) {
        let outcome = if ok { "delivered" } else { "failed" };
        self.metrics
            .alert_deliveries
            .with_label_values(&[kind, outcome])
            .inc();
        if let (true, Some(d)) = (ok, since_finding) {
            self.metrics
                .alert_delivery_seconds
                .with_label_values(&[kind])
                .observe(d.as_secs_f64());
        }
    }

    fn acknowledged(&self, priority: Priority, after: Duration) {
        self.metrics
            .alert_time_to_ack_seconds
            .with_label_values(&[priority.as_str()])
            .observe(after.as_secs_f64());
    }

    fn stale_finding(&self) {
        self.metrics.alert_stale_findings.inc();
    }

    fn pruned(&self, p: &Pruned) {
        for (kind, n) in p.by_kind() {
            self.metrics
                .alert_store_pruned
                .with_label_values(&[kind])
                .inc_by(n);
        }
    }

    fn precision(&self, rows: &[PrecisionRow]) {
        for r in rows {
            let model = r.model.as_deref().unwrap_or("none");
            for (verdict, n) in [
                (Verdict::Confirmed, r.confirmed),
                (Verdict::FalseAlarm, r.false_alarm),
                (Verdict::NotSure, r.not_sure),
            ] {
                self.metrics
                    .alert_verdicts
                    .with_label_values(&[&r.rule, model, verdict.as_str()])
                    .set(n);
            }
            if let Some(p) = r.precision {
                self.metrics
                    .alert_precision
                    .with_label_values(&[&r.rule, model])
                    .set(p);
            }
        }
    }

    fn finding(&self, outcome: FindingOutcome) {
        self.metrics
            .alert_findings
            .with_label_values(&[outcome.as_str()])
            .inc();
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

    /// The server's closed connections reach the metric under their reason, and
    /// every reason's series exists from start-up.
    #[test]
    fn http_closed_connections_are_counted_by_reason() {
        let m = Metrics::new();
        let render = m.render();
        for reason in Closed::ALL {
            let series = format!(
                "cardiostream_http_connections_closed_total{{reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(render.contains(&series), "{series} missing");
        }
        let on_closed = m.on_http_closed();
        on_closed(Closed::Limit, 1);
        on_closed(Closed::IdleTimeout, 2);
        let count = |r: Closed| {
            m.http_connections_closed
                .with_label_values(&[r.as_str()])
                .get()
        };
        assert_eq!(count(Closed::Limit), 1);
        assert_eq!(count(Closed::IdleTimeout), 2);
        assert_eq!(count(Closed::Shutdown), 0);
    }
}

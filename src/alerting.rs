//! The alerts deployable's Kafka side: findings in, alerts out to the receivers.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use ecg_alerts::AlertEngine;
use ecg_ingest::kafka;
use ecg_types::{Alert, AlertState, Finding};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use crate::telemetry::Metrics;

/// Settings of the alert service.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Kafka connection settings (bootstrap servers, security).
    pub connection: rdkafka::ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Topic of findings.
    pub findings_topic: String,
    /// Topic alerts are published to.
    pub alerts_topic: String,
}

impl AlertsConfig {
    /// Defaults for a given cluster connection.
    pub fn new(connection: rdkafka::ClientConfig) -> Self {
        Self {
            connection,
            group_id: "cardiostream-alerts".into(),
            findings_topic: "ecg.findings.v1".into(),
            alerts_topic: "ecg.alerts.v1".into(),
        }
    }
}

/// Where alerts go besides Kafka.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    /// Write each alert state change as one JSON line on stdout.
    pub stdout_json: bool,
    /// A channel that receives every alert state change (tests, the demo summary).
    pub channel: Option<mpsc::UnboundedSender<Alert>>,
}

/// Runs the alert service until `shutdown` turns true.
///
/// # Errors
/// Fails if the Kafka clients cannot be created or the subscription fails.
pub async fn run(
    cfg: AlertsConfig,
    engine: Arc<Mutex<AlertEngine>>,
    receivers: Receivers,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = kafka::consumer_config(&cfg.connection, &cfg.group_id)
        .create()
        .context("creating the findings consumer")?;
    consumer
        .subscribe(&[&cfg.findings_topic])
        .with_context(|| format!("subscribing to {}", cfg.findings_topic))?;
    let producer: FutureProducer = kafka::producer_config(&cfg.connection, 0)
        .create()
        .context("creating the alerts producer")?;
    tracing::info!(topic = %cfg.findings_topic, "alert service consuming");
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consume error");
                continue;
            }
        };
        let finding: Finding = match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "undecodable finding skipped");
                let _ = consumer.store_offset_from_message(&msg);
                continue;
            }
        };
        let changed = {
            let mut e = engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            e.on_finding(&finding, SystemTime::now())
        };
        let mut delivered = Vec::new();
        for alert in changed {
            deliver(&alert, &producer, &cfg, &receivers).await?;
            metrics
                .alerts
                .with_label_values(&[priority_label(&alert), state_label(alert.state)])
                .inc();
            if alert.state == AlertState::Firing {
                delivered.push(alert.id.clone());
            }
        }
        if !delivered.is_empty() {
            let mut e = engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            e.mark_notified(&delivered, SystemTime::now());
        }
        // Delivery is done before the finding's offset is stored.
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "storing offset failed");
        }
    }
    tracing::info!("alert service stopped");
    Ok(())
}

async fn deliver(
    alert: &Alert,
    producer: &FutureProducer,
    cfg: &AlertsConfig,
    receivers: &Receivers,
) -> anyhow::Result<()> {
    let json = serde_json::to_string(alert).context("serialising an alert")?;
    producer
        .send(
            FutureRecord::to(&cfg.alerts_topic)
                .key(alert.id.as_str())
                .payload(json.as_str()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing alert failed: {e}"))?;
    if receivers.stdout_json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    if let Some(tx) = &receivers.channel {
        let _ = tx.send(alert.clone());
    }
    Ok(())
}

fn priority_label(a: &Alert) -> &'static str {
    match a.priority {
        ecg_types::Priority::High => "high",
        ecg_types::Priority::Medium => "medium",
        ecg_types::Priority::Low => "low",
    }
}

fn state_label(s: AlertState) -> &'static str {
    match s {
        AlertState::Firing => "firing",
        AlertState::Notified => "notified",
        AlertState::Acknowledged => "acknowledged",
        AlertState::Escalated => "escalated",
        AlertState::Resolved => "resolved",
    }
}

//! The alert service on Kafka (the alerts deployable's core): findings in from the
//! findings topic, through [`AlertService`], alert state changes out to the alerts
//! topic, and the due-work ticker (group waits, escalations, repeats).
//!
//! A finding's offset is stored only after the service has put everything it
//! decided into the store (the alert, its audit entry, claimed notifications); when
//! the store is unavailable the finding is retried, not skipped. What happens is told
//! to the process through [`Hooks`] (its metrics are one subscriber).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ecg_ingest::kafka;
use ecg_types::{Alert, Finding};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use crate::config::ServiceConfig;
use crate::service::{AlertService, FindingOutcome, Hooks};
use crate::store::Store;

/// Kafka settings of the alert service (`Debug` redacts secrets of the connection).
#[derive(Clone)]
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

impl std::fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsConfig")
            .field("connection", &kafka::RedactedClient(&self.connection))
            .field("group_id", &self.group_id)
            .field("findings_topic", &self.findings_topic)
            .field("alerts_topic", &self.alerts_topic)
            .finish()
    }
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

/// Where alert state changes go besides `ecg.alerts.v1`.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Write each alert state change as one JSON line on stdout.
    pub stdout_json: bool,
    /// A channel that receives every alert state change (tests, the demo summary).
    pub channel: Option<mpsc::UnboundedSender<Alert>>,
}

/// The service and the queue of its alert state changes, to hand to [`run`].
#[derive(Debug)]
pub struct Built {
    /// The service (also behind the HTTP API).
    pub service: Arc<AlertService>,
    changes: mpsc::UnboundedReceiver<Alert>,
}

/// Opens the store and builds the service and its receivers; `hooks` hear what it
/// does.
///
/// # Errors
/// When the store cannot be opened or migrated, or the config is inconsistent.
pub async fn build(cfg: ServiceConfig, hooks: Arc<dyn Hooks>) -> anyhow::Result<Built> {
    let store = Store::open(&cfg.store.url, cfg.store.max_connections)
        .await
        .with_context(|| {
            format!(
                "opening the alert store ({})",
                crate::config::redact_url(&cfg.store.url)
            )
        })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let instance = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "alerts".into()),
        std::process::id()
    );
    let service = AlertService::new(cfg, store, instance, hooks)
        .context("alerts config")?
        .with_changes(tx);
    Ok(Built {
        service: Arc::new(service),
        changes: rx,
    })
}

/// Runs the alert service until `shutdown` turns true: the findings consumer, the
/// ticker (group waits, escalations, repeats) and the publisher of alert changes.
///
/// # Errors
/// Fails if the Kafka clients cannot be created or the subscription fails.
pub async fn run(
    cfg: AlertsConfig,
    built: Built,
    outputs: Outputs,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Built {
        service,
        mut changes,
    } = built;
    let consumer: StreamConsumer = findings_consumer_config(&cfg, service.config())
        .create()
        .context("creating the findings consumer")?;
    consumer
        .subscribe(&[&cfg.findings_topic])
        .with_context(|| format!("subscribing to {}", cfg.findings_topic))?;
    let producer: FutureProducer = kafka::producer_config(&cfg.connection, 0)
        .create()
        .context("creating the alerts producer")?;
    tracing::info!(topic = %cfg.findings_topic, store = if service.store().is_postgres() { "postgres" } else { "sqlite" }, "alert service consuming");

    {
        // On shutdown, a finding stuck on an unavailable store gives up (unstored).
        let service = Arc::clone(&service);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
            service.stop();
        });
    }
    let ticker = {
        let service = Arc::clone(&service);
        let mut shutdown = shutdown.clone();
        let every = Duration::from_millis(service.config().tick_ms);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = t.tick() => {}
                }
                if let Err(e) = service.tick().await {
                    tracing::warn!(error = %e, "alert ticker: store unavailable");
                }
            }
        })
    };
    let publisher = {
        let topic = cfg.alerts_topic.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let alert = tokio::select! {
                    a = changes.recv() => a,
                    _ = shutdown.changed() => {
                        // Drain what is queued, then stop.
                        while let Ok(a) = changes.try_recv() {
                            publish(&producer, &topic, &outputs, a).await;
                        }
                        break;
                    }
                };
                let Some(alert) = alert else { break };
                publish(&producer, &topic, &outputs, alert).await;
            }
        })
    };

    let result = consume(&consumer, &service, shutdown).await;
    let _ = ticker.await;
    let _ = publisher.await;
    // AF burden counted since the last tick (docs/alerts.md); a store that does not
    // answer does not hold up the shutdown.
    match tokio::time::timeout(Duration::from_secs(5), service.flush_af_burden()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "storing the AF burden at shutdown failed"),
        Err(_) => tracing::warn!("storing the AF burden at shutdown timed out"),
    }
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    tracing::info!("alert service stopped");
    result
}

/// The findings consumer's settings: the shared consumer settings (offsets stored
/// only after the store has what a finding decided), and where a group with no
/// committed offset starts (`alerts.start_offset`, `latest` unless configured).
pub fn findings_consumer_config(cfg: &AlertsConfig, svc: &ServiceConfig) -> rdkafka::ClientConfig {
    let mut c = kafka::consumer_config(&cfg.connection, &cfg.group_id);
    c.set("auto.offset.reset", svc.start_offset.as_str());
    c
}

/// Publishes one alert state change to the alerts topic and the extra outputs.
async fn publish(producer: &FutureProducer, topic: &str, outputs: &Outputs, alert: Alert) {
    let json = match serde_json::to_string(&alert) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %e, "serialising an alert failed");
            return;
        }
    };
    let record = FutureRecord::to(topic)
        .key(alert.id.as_str())
        .payload(json.as_str());
    match kafka::enqueue(producer, record).await {
        Ok(delivery) => {
            if let Ok(Err((e, _))) = delivery.await {
                tracing::warn!(error = %e, "publishing an alert change failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "publishing an alert change failed"),
    }
    if outputs.stdout_json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
    if let Some(tx) = &outputs.channel {
        let _ = tx.send(alert);
    }
}

async fn consume(
    consumer: &StreamConsumer,
    service: &Arc<AlertService>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consume error");
                continue;
            }
        };
        let consumed = Instant::now();
        let finding: Finding = match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(f) => f,
            Err(e) => {
                service.hooks().finding(FindingOutcome::Undecodable);
                tracing::warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "undecodable finding skipped");
                let _ = consumer.store_offset_from_message(&msg);
                continue;
            }
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match service.on_finding(&finding, consumed).await {
                Ok(()) => break,
                Err(e) => {
                    service.hooks().finding(FindingOutcome::Retried);
                    tracing::warn!(error = %e, "alert store unavailable; retrying the finding");
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        service.hooks().finding(FindingOutcome::Applied);
        // Everything the finding caused is in the store: its offset may be stored.
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "storing offset failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, item 5: a new consumer group starts at the end of the findings topic
    /// unless configured otherwise; committed offsets are used either way.
    #[test]
    fn a_new_group_starts_from_the_latest_offset_unless_configured() {
        let cfg = AlertsConfig::new(kafka::connection("127.0.0.1:9092"));
        let svc = ServiceConfig::default();
        let c = findings_consumer_config(&cfg, &svc);
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("cardiostream-alerts"));
        let svc: ServiceConfig = toml::from_str("start_offset = \"earliest\"").unwrap();
        let c = findings_consumer_config(&cfg, &svc);
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert!(toml::from_str::<ServiceConfig>("start_offset = \"beginning\"").is_err());
    }
}

//! `cardiostream pipeline` and `cardiostream alerts`: the two deployables against a
//! real Kafka cluster, configured from `config/default.toml`, a file and the
//! environment. Each serves `/metrics` and `/healthz` (the alerts service also its
//! API and console) and stops cleanly on Ctrl-C or SIGTERM, committing its offsets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecg_alerts::api::{ApiState, Tokens};
use ecg_alerts::server;
use rdkafka::ClientConfig;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::telemetry::{AlertMetrics, Metrics};
use ecg_alerts::kafka::{self as alerting, AlertsConfig, Outputs};
use ecg_pipeline::{PipelineConfig, ScorerSettings};

/// Resolves on Ctrl-C or SIGTERM.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the pipeline deployable until `stop` resolves.
///
/// # Errors
/// When models, Kafka clients or the HTTP listener cannot be set up, or a component fails.
pub async fn run_pipeline(
    cfg: Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let models = Arc::new(ecg_inference::load_models(
        &cfg.pipeline.models_dir,
        cfg.pipeline.model_threads,
    )?);
    let model_ids: Vec<String> = models.iter().map(|m| m.manifest().id.clone()).collect();
    let sink = metrics.pipeline_sink(&model_ids);
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let listener = http::bind(cfg.http.addr).await?;
    let mut pc = PipelineConfig::new(cfg.kafka_client(ClientConfig::new()));
    pc.group_id = cfg.pipeline.group_id.clone();
    pc.frames_topic = cfg.topics.frames.clone();
    pc.findings_topic = cfg.topics.findings.clone();
    pc.dlq_topic = cfg.topics.dlq.clone();
    pc.batch_max = cfg.pipeline.batch_max;
    pc.batch_wait = Duration::from_millis(cfg.pipeline.batch_wait_ms);
    pc.dsp = cfg.pipeline.dsp.clone();
    pc.model_hop_s = cfg.pipeline.model_hop_s;
    pc.channel_batches = cfg.pipeline.channel_batches;
    pc.analyzer_threads = cfg.pipeline.analyzer_threads;
    pc.streams = cfg.pipeline.streams.clone();
    pc.af_episodes = cfg.pipeline.af_episodes.clone();
    pc.scorer = ScorerSettings {
        max_batch: cfg.pipeline.model_max_batch,
        ..cfg.pipeline.scorer.clone()
    };
    let state = AppState {
        metrics: metrics.clone(),
        alerts: None,
        statuses: Some(statuses.clone()),
    };
    tracing::info!(addr = %cfg.http.addr, models = models.len(), "pipeline starting");
    let limits = cfg.http.limits();
    supervise(stop, |rx| {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(ecg_pipeline::run(pc, models, sink, statuses, rx.clone()));
        set.spawn(async move {
            let on_closed = Some(metrics.on_http_closed());
            server::serve_with(listener, http::router(state), limits, on_closed, rx)
                .await
                .map_err(Into::into)
        });
        set
    })
    .await
}

/// Runs the alerts deployable until `stop` resolves.
///
/// # Errors
/// When Kafka clients or the HTTP listener cannot be set up, or a component fails.
pub async fn run_alerts(
    cfg: Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let listener = http::bind(cfg.http.addr).await?;
    let mut ac = AlertsConfig::new(cfg.kafka_client(ClientConfig::new()));
    ac.group_id = cfg.alerts.group_id.clone();
    ac.findings_topic = cfg.topics.findings.clone();
    ac.alerts_topic = cfg.topics.alerts.clone();
    let tokens = Tokens::from_config(&cfg.alerts.tokens)?;
    if cfg.alerts.tokens.is_empty() {
        tracing::warn!("no [[alerts.tokens]] configured: the API and console accept no one");
    }
    let models_dir = cfg
        .alerts
        .models_dir
        .clone()
        .unwrap_or_else(|| cfg.pipeline.models_dir.clone());
    let built = alerting::build(cfg.alerts.clone(), AlertMetrics::new(&metrics)).await?;
    let state = AppState {
        metrics: metrics.clone(),
        alerts: Some(ApiState {
            service: built.service.clone(),
            tokens: Arc::new(tokens),
            models_dir: Some(models_dir),
        }),
        statuses: None,
    };
    tracing::info!(addr = %cfg.http.addr, "alert service starting");
    let limits = cfg.http.limits();
    supervise(stop, |rx| {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(alerting::run(ac, built, Outputs::default(), rx.clone()));
        set.spawn(async move {
            let on_closed = Some(metrics.on_http_closed());
            server::serve_with(listener, http::router(state), limits, on_closed, rx)
                .await
                .map_err(Into::into)
        });
        set
    })
    .await
}

/// Starts the tasks, waits for `stop` or the first task to end, then shuts all down.
async fn supervise(
    stop: impl std::future::Future<Output = ()>,
    start: impl FnOnce(watch::Receiver<bool>) -> tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let (tx, rx) = watch::channel(false);
    let mut set = start(rx);
    let first = tokio::select! {
        _ = stop => None,
        r = set.join_next() => r,
    };
    let _ = tx.send(true);
    let mut result = Ok(());
    if let Some(r) = first {
        result = flatten(r);
        if result.is_ok() {
            result = Err(anyhow::anyhow!("a component stopped unexpectedly"));
        }
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = flatten(r) {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

fn flatten(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("a component panicked: {e}"))?
}

//! `cardiostream demo`: the whole flow in one process, on production code.
//!
//! An in-process Kafka cluster (librdkafka's mock cluster) stands in for the
//! broker; simulated patients publish wire-format frames to `ecg.frames.v1` as
//! device gateways would; the pipeline consumes them through a real consumer
//! group, runs the DSP chain and the bundled ONNX models, and publishes findings to
//! `ecg.findings.v1`; the alert service consumes those and routes alerts to Kafka
//! `ecg.alerts.v1`, stdout (`--alerts-json`) and the web console.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ecg_alerts::api::{ApiState, Tokens};
use ecg_alerts::config::{NamedReceiver, ServiceConfig};
use ecg_alerts::receivers::webhook::WebhookConfig;
use ecg_alerts::receivers::{ReceiverConfig, Secret};
use ecg_alerts::service::Caller;
use ecg_ingest::codec::{self, Encoding};
use ecg_sim::{FrameSource, Preset};
use ecg_types::{Alert, DeviceId, Lead, PatientId, StreamId};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use crate::devices::{publish, PublishOptions, Source};
use crate::http::{self, AppState};
use crate::telemetry::{AlertMetrics, Metrics};
use ecg_alerts::kafka::{self as alerting, AlertsConfig, Outputs};
use ecg_pipeline::PipelineConfig;

/// The mix of simulated patients, repeated when more than its length are asked for.
/// Twenty patients: nine in sinus rhythm (some noisy, one with a lead coming off), one
/// paced (its pacemaker pulses flagged in the frames and marked on its strips), the
/// rest with the rhythms a monitoring service exists to catch.
pub const PATIENT_MIX: [Preset; 20] = [
    Preset::NormalSinus,
    Preset::AtrialFibrillation,
    Preset::NormalSinus,
    Preset::Bradycardia,
    Preset::NormalSinus,
    Preset::Asystole,
    Preset::NormalSinus,
    Preset::Tachycardia,
    Preset::NoisyNormalSinus,
    Preset::AtrialFibrillation,
    Preset::NormalSinus,
    Preset::Pvcs,
    Preset::NormalSinus,
    Preset::VentricularTachycardia,
    Preset::LeadOffNormalSinus,
    Preset::Bradycardia,
    Preset::VentricularPaced,
    Preset::AtrialFibrillation,
    Preset::NoisyNormalSinus,
    Preset::Asystole,
];

/// Settings of a demo run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Simulated patients.
    pub patients: usize,
    /// Stop after this long (wall clock); run until Ctrl-C if unset.
    pub duration: Option<Duration>,
    /// Where the console and `/metrics` listen.
    pub http_addr: SocketAddr,
    /// Write alerts as JSON lines on stdout.
    pub alerts_json: bool,
    /// Bearer token of the console and API; a random one if unset.
    pub api_token: Option<String>,
    /// Alert store URL; in-memory SQLite if unset.
    pub alerts_store: Option<String>,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Seed of the simulated patients.
    pub seed: u64,
    /// Sampling rate of the simulated devices.
    pub sample_rate: u32,
    /// Directory searched for model manifests (`*/*.toml`).
    pub models_dir: PathBuf,
}

/// A simulated patient of the demo.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    /// Pseudonymous id.
    pub patient: PatientId,
    /// Its stream.
    pub stream: StreamId,
    /// The simulated rhythm.
    pub preset: Preset,
}

/// What a demo run did.
#[derive(Debug)]
pub struct DemoReport {
    /// The simulated patients.
    pub patients: Vec<DemoPatient>,
    /// Every alert state change, in order.
    pub alerts: Vec<Alert>,
    /// The metrics at the end.
    pub metrics: Metrics,
}

/// The bundled models directory: `./models` when there is one, else this source
/// tree's ([`ecg_inference::bundled_models_dir`]).
pub fn default_models_dir() -> PathBuf {
    ecg_inference::bundled_models_dir()
}

fn patients(n: usize) -> Vec<DemoPatient> {
    (0..n)
        .map(|i| {
            let preset = PATIENT_MIX[i % PATIENT_MIX.len()];
            DemoPatient {
                // Pseudonyms only; the demo has no identifiers to protect, but shows the habit.
                patient: PatientId::new(format!("pt-{:04}", i + 1))
                    .unwrap_or_else(|_| unreachable_id()),
                stream: StreamId::new(format!("bed-{:02}.ecg", i + 1))
                    .unwrap_or_else(|_| unreachable_id()),
                preset,
            }
        })
        .collect()
}

/// The demo's alert service: `config/demo-alerts.toml` plus the ward station's
/// webhook, which the demo itself receives at `/demo/webhook`.
fn demo_service_config(
    http_addr: SocketAddr,
    secret: &str,
    store: Option<&str>,
) -> anyhow::Result<ServiceConfig> {
    let mut c: ServiceConfig = toml::from_str(include_str!("../config/demo-alerts.toml"))
        .context("config/demo-alerts.toml")?;
    c.receivers.push(NamedReceiver {
        name: "ward-3-station".into(),
        config: ReceiverConfig::Webhook(WebhookConfig {
            url: format!("http://{http_addr}/demo/webhook"),
            secret_env: None,
            secret: Some(Secret::new(secret)),
            timeout_ms: 2000,
            max_attempts: 3,
            backoff_ms: 100,
            max_backoff_ms: 1000,
        }),
    });
    c.console_url = Some(format!("http://{http_addr}"));
    c.models_dir = Some(default_models_dir());
    if let Some(url) = store {
        c.store.url = url.to_owned();
    }
    Ok(c)
}

/// The ward station's webhook endpoint: refuses notifications whose HMAC signature
/// does not verify, as a receiving system should.
fn station_router(secret: String) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode};
    async fn hook(
        axum::extract::State(secret): axum::extract::State<Arc<String>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        if ecg_alerts::receivers::webhook::verify_request(secret.as_bytes(), &headers, &body) {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
    axum::Router::new()
        .route("/demo/webhook", axum::routing::post(hook))
        .with_state(Arc::new(secret))
}

/// 128 random bits, hex.
fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn unreachable_id<T>() -> T {
    panic!("demo ids are valid by construction")
}

/// Runs the demo until `duration` has passed or `stop` resolves.
///
/// # Errors
/// When a component fails to start (ONNX Runtime missing, HTTP address taken, …).
pub async fn run(
    cfg: DemoConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<DemoReport> {
    let metrics = Metrics::new();
    let models = Arc::new(ecg_inference::load_models(&cfg.models_dir, 1)?);
    let cluster = MockCluster::new(1).context("starting the in-process kafka cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    for (topic, partitions) in [
        ("ecg.frames.v1", 4),
        ("ecg.findings.v1", 4),
        ("ecg.frames.dlq", 1),
        ("ecg.alerts.v1", 1),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    let listener = http::bind(cfg.http_addr).await?;
    let http_addr = listener.local_addr().context("reading the http address")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let (alert_tx, mut alert_rx) = mpsc::unbounded_channel();
    let token = cfg.api_token.clone().unwrap_or_else(random_token);
    let hook_secret = random_token();
    let service_cfg = demo_service_config(http_addr, &hook_secret, cfg.alerts_store.as_deref())?;
    let built = alerting::build(service_cfg, AlertMetrics::new(&metrics)).await?;
    let mut tokens = Tokens::default();
    tokens.add(
        &token,
        Caller {
            team: "telemetry".into(),
            actor: "demo-clinician".into(),
        },
    );

    let pats = patients(cfg.patients);
    eprintln!(
        "cardiostream demo: {} simulated patients at {} Hz, speed {}x, models: {}",
        pats.len(),
        cfg.sample_rate,
        cfg.speed,
        models
            .iter()
            .map(|m| format!("{}@{}", m.manifest().id, m.manifest().version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("  console:  http://{http_addr}/#token={token}");
    eprintln!("  api:      http://{http_addr}/api/v1/alerts  (Authorization: Bearer {token})");
    eprintln!("  metrics:  http://{http_addr}/metrics");
    eprintln!("  kafka:    {bootstrap} (in-process mock cluster)");
    eprintln!("  findings are decision support for clinicians, not diagnoses");

    let mut tasks = tokio::task::JoinSet::new();
    let model_ids: Vec<String> = models.iter().map(|m| m.manifest().id.clone()).collect();
    tasks.spawn(ecg_pipeline::run(
        PipelineConfig::new(ecg_ingest::kafka::connection(&bootstrap)),
        models,
        metrics.pipeline_sink(&model_ids),
        statuses.clone(),
        shutdown_rx.clone(),
    ));
    let api = ApiState {
        service: built.service.clone(),
        tokens: Arc::new(tokens),
        models_dir: Some(cfg.models_dir.clone()),
    };
    tasks.spawn(alerting::run(
        AlertsConfig::new(ecg_ingest::kafka::connection(&bootstrap)),
        built,
        Outputs {
            stdout_json: cfg.alerts_json,
            channel: Some(alert_tx),
        },
        shutdown_rx.clone(),
    ));
    {
        let state = AppState {
            metrics: metrics.clone(),
            alerts: Some(api),
            statuses: Some(statuses),
        };
        let router = http::router(state).merge(station_router(hook_secret));
        let rx = shutdown_rx.clone();
        tasks.spawn(async move {
            ecg_alerts::server::serve(listener, router, rx)
                .await
                .map_err(Into::into)
        });
    }
    tasks.spawn(simulate(
        bootstrap.clone(),
        pats.clone(),
        cfg.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    ));

    let timer = async {
        match cfg.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut failed = None;
    tokio::select! {
        _ = timer => {}
        _ = stop => eprintln!("cardiostream demo: stopping"),
        r = tasks.join_next() => failed = Some(r),
    }
    let _ = shutdown_tx.send(true);
    if let Some(Some(r)) = failed {
        r.context("a demo task panicked")?
            .context("a demo task failed")?;
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a demo task panicked")?
            .context("a demo task failed")?;
    }
    drop(cluster);
    let mut alerts = Vec::new();
    while let Ok(a) = alert_rx.try_recv() {
        alerts.push(a);
    }
    Ok(DemoReport {
        patients: pats,
        alerts,
        metrics,
    })
}

/// Publishes simulated frames as device gateways would: protobuf, keyed by stream,
/// at the simulated real-time rate (times `speed`). One malformed frame from a
/// misconfigured gateway is sent first, to show the dead-letter path.
async fn simulate(
    bootstrap: String,
    pats: Vec<DemoPatient>,
    cfg: DemoConfig,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let producer: FutureProducer =
        ecg_ingest::kafka::producer_config(&ecg_ingest::kafka::connection(&bootstrap), 5)
            .create()
            .context("creating the simulator producer")?;
    let frame_samples = (cfg.sample_rate / 5).max(1) as usize; // 200 ms frames
    let t0_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut sources = Vec::with_capacity(pats.len());
    for (i, p) in pats.iter().enumerate() {
        let device = ecg_sim::Device::new(p.preset.config(
            cfg.seed.wrapping_add(i as u64),
            cfg.sample_rate,
            vec![Lead::II, Lead::V5],
        ))
        .with_context(|| format!("configuring simulated device {}", p.stream))?;
        sources.push(FrameSource::new(
            device,
            p.stream.clone(),
            DeviceId::new(format!("sim-{:04}", i + 1)).context("device id")?,
            p.patient.clone(),
            t0_us,
            frame_samples,
            1000,
        ));
    }
    // A gateway that reports a sample rate of 0 Hz: dead-lettered, nothing else stops.
    if let Some(src) = sources.first() {
        let mut bad = codec::to_pb(&src.clone().next_frame());
        bad.sample_rate_hz = 0;
        let payload = prost::Message::encode_to_vec(&bad);
        let _ = producer
            .send(
                FutureRecord::to("ecg.frames.v1")
                    .key("bed-misconfigured.ecg")
                    .payload(&payload),
                Duration::from_secs(5),
            )
            .await;
    }
    let sources = sources
        .into_iter()
        .map(|s| Source::Sim(Box::new(s)))
        .collect();
    let opts = PublishOptions {
        topic: "ecg.frames.v1".into(),
        encoding: Encoding::Protobuf,
        speed: cfg.speed,
        duration: None,
    };
    publish(
        &producer,
        sources,
        &opts,
        || metrics.sim_frames_produced.inc(),
        shutdown,
    )
    .await?;
    Ok(())
}

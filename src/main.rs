//! `cardiostream`: streaming ECG and remote-monitoring diagnostics.

use anyhow::Context as _;
use cardiostream::{demo, devices};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// mimalloc as the process's allocator (docs/performance.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streaming ECG and remote-monitoring diagnostics: device frames on Kafka → DSP →
/// ONNX Runtime models → alerts for care teams. Findings are decision support for
/// clinicians, not diagnoses.
#[derive(Debug, Parser)]
#[command(name = "cardiostream", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Also log each pipeline stage span (`ingest`, `sequence`, `analyze`, `score`,
    /// `publish`) as it closes, with its fields and busy/idle time: one line per epoch
    /// and stage.
    #[arg(long, global = true)]
    log_spans: bool,
    /// Export trace spans over OTLP/HTTP to this collector (e.g.
    /// `http://otel-collector:4318`); needs a build with `--features otlp`.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: simulated patients, an in-process Kafka cluster,
    /// the pipeline, the bundled models, the alert service, console and metrics.
    Demo(DemoArgs),
    /// The pipeline deployable: frames from Kafka → DSP → models → findings to Kafka.
    Pipeline(ConfigArgs),
    /// The alerts deployable: findings from Kafka → alerts to care teams.
    Alerts(ConfigArgs),
    /// Simulated patients' devices publishing frames to a Kafka cluster.
    Sim(SimArgs),
    /// Recorded ECG (WFDB records) published to a Kafka cluster as device streams.
    Replay(ReplayArgs),
    /// Model tools.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Accuracy and data tools on annotated records.
    #[command(subcommand)]
    Eval(ecg_eval::EvalCommand),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Simulated patients (a fixed mix of rhythms, repeated).
    #[arg(long, default_value_t = 20)]
    patients: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Address of the console and `/metrics`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Write each alert state change as one JSON object per line on stdout.
    #[arg(long)]
    alerts_json: bool,
    /// Bearer token of the console and API (default: a random one, printed).
    #[arg(long, env = "CARDIOSTREAM_DEMO_TOKEN")]
    api_token: Option<String>,
    /// Alert store URL (default: an in-memory SQLite database).
    #[arg(long)]
    alerts_store: Option<String>,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the simulated patients.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Sampling rate of the simulated devices, Hz.
    #[arg(long, default_value_t = 250)]
    sample_rate: u32,
    /// Models directory (manifests at `DIR/*/*.toml`).
    #[arg(long)]
    models: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// Configuration file (TOML) over the embedded defaults; environment variables
    /// `CARDIOSTREAM_SECTION__KEY` override both. See config/default.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration's validation result and exit.
    #[arg(long)]
    check: bool,
}

/// Where and how device frames are published.
#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "CARDIOSTREAM_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Topic of frames.
    #[arg(long, default_value = "ecg.frames.v1")]
    topic: String,
    /// Wire encoding: protobuf or json.
    #[arg(long, default_value = "protobuf", value_parser = parse_encoding)]
    encoding: ecg_ingest::codec::Encoding,
    /// Device seconds per wall-clock second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Stop after this many seconds (wall clock).
    #[arg(long)]
    duration: Option<f64>,
}

fn parse_encoding(s: &str) -> Result<ecg_ingest::codec::Encoding, String> {
    match s {
        "protobuf" | "pb" => Ok(ecg_ingest::codec::Encoding::Protobuf),
        "json" => Ok(ecg_ingest::codec::Encoding::Json),
        other => Err(format!("unknown encoding {other:?} (protobuf or json)")),
    }
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    #[command(flatten)]
    publish: PublishArgs,
    /// Simulated patients (the demo's mix of rhythms, repeated).
    #[arg(long, default_value_t = 20)]
    patients: usize,
    /// Sampling rate, Hz.
    #[arg(long, default_value_t = 250)]
    sample_rate: u32,
    /// Leads, comma-separated (e.g. `II,V5` or the 12 standard leads `I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6`).
    #[arg(long, value_delimiter = ',', default_value = "II,V5")]
    leads: Vec<ecg_types::Lead>,
    /// Seed of the simulated patients.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Frame length, milliseconds.
    #[arg(long, default_value_t = 200)]
    frame_ms: u32,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    publish: PublishArgs,
    /// Folder of WFDB records.
    #[arg(long)]
    db: PathBuf,
    /// Record names, comma-separated (default: every `*.hea` in the folder).
    #[arg(long, value_delimiter = ',')]
    records: Vec<String>,
    /// Frame length, milliseconds.
    #[arg(long, default_value_t = 200)]
    frame_ms: u32,
    /// At most this many seconds of each record.
    #[arg(long)]
    seconds: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Load a manifest and its ONNX file, verify the contract, score one window.
    Check {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Agreement of a shadow model with the active one on the findings both recorded
    /// (from the findings topic or a JSON-lines file).
    Compare(ecg_eval::compare::CompareArgs),
}

/// Keeps the OTLP exporter of a `--features otlp` build alive; flushes it on drop.
#[derive(Default)]
struct TracingGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

fn init_tracing(cli: &Cli) -> anyhow::Result<TracingGuard> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},ort=warn,rdkafka=warn", cli.log)));
    let span_events = if cli.log_spans {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_span_events(span_events)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if cli.log_json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &cli.otlp_endpoint {
        use opentelemetry::trace::TracerProvider as _;
        let provider = otlp_provider(endpoint)?;
        let tracer = provider.tracer("cardiostream");
        registry
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .init();
        return Ok(TracingGuard {
            provider: Some(provider),
        });
    }
    registry.init();
    #[cfg(not(feature = "otlp"))]
    if cli.otlp_endpoint.is_some() {
        tracing::warn!("an OTLP endpoint is set, but this build has no OTLP export (build with --features otlp); spans are not exported");
    }
    Ok(TracingGuard::default())
}

/// The OTLP/HTTP span exporter: batches on its own thread, service name `cardiostream`.
#[cfg(feature = "otlp")]
fn otlp_provider(endpoint: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP exporter to {endpoint}: {e}"))?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("cardiostream")
                .build(),
        )
        .build())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _tracing = match init_tracing(&cli) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Pipeline(args) => run_deployable(&args, Deployable::Pipeline),
        Command::Alerts(args) => run_deployable(&args, Deployable::Alerts),
        Command::Sim(args) => run_sim(args),
        Command::Replay(args) => run_replay(args),
        Command::Model(ModelCommand::Check { manifest }) => model_check(&manifest),
        Command::Model(ModelCommand::Compare(args)) => ecg_eval::compare::run(&args),
        Command::Eval(cmd) => ecg_eval::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.speed <= 0.0 || !args.speed.is_finite() {
        anyhow::bail!("--speed must be a positive number, got {}", args.speed);
    }
    let cfg = demo::DemoConfig {
        patients: args.patients,
        duration: args.duration.map(Duration::from_secs_f64),
        http_addr: args.http_addr,
        alerts_json: args.alerts_json,
        api_token: args.api_token,
        alerts_store: args.alerts_store,
        speed: args.speed,
        seed: args.seed,
        sample_rate: args.sample_rate,
        models_dir: args.models.unwrap_or_else(demo::default_models_dir),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(demo::run(cfg, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    let mut by_condition = std::collections::BTreeMap::<String, usize>::new();
    for a in report
        .alerts
        .iter()
        .filter(|a| a.state == ecg_types::AlertState::Firing)
    {
        *by_condition.entry(a.condition.to_string()).or_default() += 1;
    }
    eprintln!("cardiostream demo: stopped cleanly; alerts raised by condition: {by_condition:?}");
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Deployable {
    Pipeline,
    Alerts,
}

fn run_deployable(args: &ConfigArgs, which: Deployable) -> anyhow::Result<()> {
    let cfg = cardiostream::config::Config::load(args.config.as_deref())?;
    if args.check {
        eprintln!("configuration is valid");
        return Ok(());
    }
    let rt = runtime()?;
    rt.block_on(async {
        let stop = cardiostream::deployables::termination();
        match which {
            Deployable::Pipeline => cardiostream::deployables::run_pipeline(cfg, stop).await,
            Deployable::Alerts => cardiostream::deployables::run_alerts(cfg, stop).await,
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Publishes `sources` as `args` says, stopping on Ctrl-C.
fn publish_sources(args: &PublishArgs, sources: Vec<devices::Source>) -> anyhow::Result<()> {
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        anyhow::bail!("--speed must be 0 or a positive number, got {}", args.speed);
    }
    let n = sources.len();
    let opts = devices::PublishOptions {
        topic: args.topic.clone(),
        encoding: args.encoding,
        speed: args.speed,
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let rt = runtime()?;
    let sent = rt.block_on(async {
        let producer: rdkafka::producer::FutureProducer = ecg_ingest::kafka::producer_config(
            &ecg_ingest::kafka::connection(&args.bootstrap_servers),
            5,
        )
        .create()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        devices::publish(&producer, sources, &opts, || {}, rx).await
    })?;
    eprintln!(
        "published {sent} frames of {n} streams to {} on {}",
        args.topic, args.bootstrap_servers
    );
    Ok(())
}

fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let t0 = now_us();
    let mut sources = Vec::with_capacity(args.patients);
    for i in 0..args.patients {
        let preset = demo::PATIENT_MIX[i % demo::PATIENT_MIX.len()];
        let dev = ecg_sim::Device::new(preset.config(
            args.seed.wrapping_add(i as u64),
            args.sample_rate,
            args.leads.clone(),
        ))
        .map_err(|e| anyhow::anyhow!("simulated device {}: {e}", i + 1))?;
        let frame_samples =
            (u64::from(args.sample_rate) * u64::from(args.frame_ms.max(1)) / 1000).max(1) as usize;
        sources.push(devices::Source::Sim(Box::new(ecg_sim::FrameSource::new(
            dev,
            ecg_types::StreamId::new(format!("sim-{:05}.ecg", i + 1))?,
            ecg_types::DeviceId::new(format!("sim-{:05}", i + 1))?,
            ecg_types::PatientId::new(format!("pt-{:05}", i + 1))?,
            t0,
            frame_samples,
            1000,
        ))));
    }
    publish_sources(&args.publish, sources)
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    let names = if args.records.is_empty() {
        ecg_eval::record_names(&args.db)?
    } else {
        args.records.clone()
    };
    let t0 = now_us();
    let mut sources = Vec::with_capacity(names.len());
    for name in &names {
        // A long record is read from its files as its frames go out (one file open
        // per signal file, a block in memory), a short one whole: memory does not
        // grow with a record's length.
        let src = devices::RecordSource::open(&args.db.join(name), t0, args.frame_ms, args.seconds)
            .with_context(|| format!("reading record {name}"))?;
        sources.push(devices::Source::Record(Box::new(src)));
    }
    publish_sources(&args.publish, sources)
}

fn model_check(manifest: &std::path::Path) -> anyhow::Result<()> {
    let model = ecg_inference::Model::load(manifest, 1)?;
    let m = model.manifest();
    eprintln!(
        "{}@{}: contract ok (input {:?} {:?} [batch, {}] float32{}, output {:?} labels {:?}, mode {:?})",
        m.id,
        m.version,
        m.input.name,
        m.input.kind,
        m.input
            .dims(m.window_s)
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        m.input.rr_features.as_ref().map_or(String::new(), |rr| format!(
            ", RR-feature input {rr:?} [batch, {}] float32{}",
            m.input.rr_len(),
            if m.input.atrial_features {
                " (RR features, then atrial activity)"
            } else {
                ""
            }
        )),
        m.output.name,
        m.output.labels,
        m.mode
    );
    let w = ecg_eval::synthetic_window(model.manifest())?;
    let scored = model.score(&[&w])?;
    match &scored[0] {
        ecg_inference::Scored::Probabilities(p) => {
            let sum: f32 = p.iter().sum();
            let in_range = p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v));
            // Several labels: a distribution; one label: a probability.
            if !in_range || (p.len() > 1 && (sum - 1.0).abs() > 1e-3) {
                anyhow::bail!("model output {p:?} is not a probability distribution");
            }
            eprintln!(
                "scored one synthetic sinus-rhythm window: {:?}",
                m.output.labels.iter().zip(p).collect::<Vec<_>>()
            );
        }
        other => anyhow::bail!(
            "synthetic window was not scored: {}",
            other.reason().unwrap_or_default()
        ),
    }
    let card = m.model_card_path();
    if !card.is_file() {
        anyhow::bail!("model card {} is missing", card.display());
    }
    eprintln!("model card: {}", card.display());
    Ok(())
}

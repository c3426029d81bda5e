//! `cardiostream`: streaming ECG and remote-monitoring diagnostics.

use cardiostream::{demo, eval};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: simulated patients, an in-process Kafka cluster,
    /// the pipeline, the bundled models, the alert service, console and metrics.
    Demo(DemoArgs),
    /// Model tools.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Accuracy and data tools on annotated records.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
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

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Load a manifest and its ONNX file, verify the contract, score one window.
    Check {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
}

fn init_tracing(cli: &Cli) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},ort=warn,rdkafka=warn", cli.log)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let result = match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Model(ModelCommand::Check { manifest }) => model_check(&manifest),
        Command::Eval(cmd) => eval::run(cmd),
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

fn model_check(manifest: &std::path::Path) -> anyhow::Result<()> {
    let model = ecg_inference::Model::load(manifest, 1)?;
    let m = model.manifest();
    eprintln!(
        "{}@{}: contract ok (input {:?} [batch, {}] float32, output {:?} labels {:?})",
        m.id, m.version, m.input.name, m.input.len, m.output.name, m.output.labels
    );
    let w = eval::synthetic_window(model.manifest())?;
    let scored = model.score(&[&w])?;
    match &scored[0] {
        ecg_inference::Scored::Probabilities(p) => {
            let sum: f32 = p.iter().sum();
            if p.iter().any(|v| !v.is_finite() || *v < 0.0) || (sum - 1.0).abs() > 1e-3 {
                anyhow::bail!("model output {p:?} is not a probability distribution");
            }
            eprintln!(
                "scored one synthetic sinus-rhythm window: {:?}",
                m.output.labels.iter().zip(p).collect::<Vec<_>>()
            );
        }
        ecg_inference::Scored::Indeterminate => anyhow::bail!("synthetic window was not scored"),
    }
    let card = m.model_card_path();
    if !card.is_file() {
        anyhow::bail!("model card {} is missing", card.display());
    }
    eprintln!("model card: {}", card.display());
    Ok(())
}

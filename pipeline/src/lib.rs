//! cardiostream's pipeline core: the stages between the frames topic and the
//! findings topic, each named for what it does, one message type per hop (in
//! `ecg-types`) and a bounded queue between each pair.
//!
//! ```text
//!  source ──Vec<SourceRecord>──► sequencer ──Vec<SequencedFrame>──► analyzer ──┬─ findings ───────────┐
//!  (tokio: Kafka consumer,       (thread: decode,                  (thread: DSP, │                      ▼
//!   epochs, back-pressure)        dedup, reorder, gaps,             rhythm,      └─Vec<ModelInput>─► scorer ──► publisher
//!                                 dead letters)                     model inputs)     (thread: ONNX Runtime,  (tokio: Kafka producer,
//!                                                                                      retries)               commit tracker)
//! ```
//!
//! - [`source`]: reads records in numbered epochs and pauses the consumer when the
//!   stages behind are full;
//! - [`sequencer`]: decodes and validates, puts each stream's frames in order,
//!   declares gaps and clock jumps, dead-letters what cannot be processed;
//! - [`analyzer`]: per-stream DSP, rhythm findings, and model inputs on the stream's
//!   window grids ([`grid`]) built by the one model-input builder ([`inputs`]); with
//!   `analyzer_threads` above one, streams are split over that many analyzers
//!   ([`shards`]);
//! - [`scorer`]: ONNX Runtime runs, transient faults retried, permanent ones narrowed
//!   to the window at fault — on its own thread, so scoring never stalls DSP;
//! - [`publisher`]: findings and dead letters to Kafka; the [`commit`] tracker stores
//!   an epoch's offsets once all of it is acknowledged.
//!
//! Stages emit typed [`events`]; the Prometheus [`metrics`] are one subscriber. The
//! same stages run on the calling thread in [`offline::Processor`] for tests,
//! benchmarks and `cardiostream eval`.

pub mod analyzer;
pub mod commit;
pub mod config;
pub mod episodes;
pub mod events;
pub mod grid;
pub mod inputs;
pub mod metrics;
pub mod offline;
pub mod publisher;
pub mod scorer;
pub mod sequencer;
pub mod shards;
pub mod source;
mod strip;

use std::sync::Arc;

use anyhow::Context as _;
use ecg_inference::Model;
use ecg_ingest::kafka;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};
use tracing::field::Empty;

pub use analyzer::{rhythm_source, Analyzer, Scoring, StreamStatus};
pub use commit::{Checkpoint, CommitTracker};
pub use config::{PipelineConfig, ScorerSettings, StreamSettings};
pub use events::{Event, Sink, Telemetry};
pub use inputs::InputBuilder;
pub use metrics::PipelineMetrics;
pub use offline::{Output, Processor};
pub use publisher::Statuses;
pub use scorer::{Runner, Scorer};
pub use sequencer::{ingest_source, Sequencer};
pub use shards::Shards;
pub use source::record_from;

use crate::commit::Checkpoint as Cp;
use crate::publisher::{DirectPart, ScoredPart};
use crate::sequencer::Sequenced;
use crate::source::{SourceContext, Work};

/// The sequencer's output of one epoch, for the analyzer.
#[derive(Debug)]
enum Sequencing {
    Epoch(Cp, Sequenced),
    Revoked(Cp),
}

/// An epoch's model inputs, for the scorer.
#[derive(Debug)]
struct ScoreJob {
    epoch: u64,
    inputs: Vec<Scoring>,
    /// Streams evicted at this epoch: the scorer forgets their episodes.
    evicted: Vec<ecg_types::StreamId>,
}

/// Runs the pipeline against Kafka until `shutdown` turns true.
///
/// # Errors
/// Fails if the Kafka clients cannot be created, the subscription fails, a finding
/// cannot be published, or scoring fails past its retry budget (the offsets of
/// unpublished work are not stored).
pub async fn run(
    cfg: PipelineConfig,
    models: Arc<Vec<Model>>,
    telemetry: Sink,
    statuses: Statuses,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let context = SourceContext::new(cfg.frames_topic.clone(), telemetry.clone());
    let mut consumer_cfg = kafka::consumer_config(&cfg.connection, &cfg.group_id);
    if consumer_cfg.get("statistics.interval.ms").is_none() {
        consumer_cfg.set("statistics.interval.ms", "5000");
    }
    let consumer: Arc<source::FramesConsumer> = Arc::new(
        consumer_cfg
            .create_with_context(context)
            .context("creating the frames consumer")?,
    );
    consumer
        .subscribe(&[&cfg.frames_topic])
        .with_context(|| format!("subscribing to {}", cfg.frames_topic))?;
    let producer: FutureProducer = kafka::producer_config(&cfg.connection, 5)
        .set("enable.idempotence", "true")
        .create()
        .context("creating the findings producer")?;
    let depth = cfg.channel_batches.max(1);
    let (work_tx, work_rx) = mpsc::channel::<Work>(depth);
    let (seq_tx, seq_rx) = mpsc::channel::<Sequencing>(depth);
    let (direct_tx, direct_rx) = mpsc::channel::<DirectPart>(depth);
    let (job_tx, job_rx) = mpsc::channel::<ScoreJob>(depth);
    let (scored_tx, scored_rx) = mpsc::channel::<ScoredPart>(depth);

    let sequencer = Sequencer::new(cfg.streams.clone(), telemetry.clone());
    let analyzer = Shards::new(
        cfg.analyzer_threads,
        &cfg.dsp,
        cfg.model_hop_s,
        &models,
        &cfg.streams,
        &telemetry,
    );
    let scorer = Scorer::new(
        &models,
        cfg.scorer.clone(),
        &cfg.af_episodes,
        &cfg.dsp.af,
        telemetry.clone(),
    );
    let threads = [
        spawn("cardiostream-sequencer", move || {
            sequencer_stage(sequencer, work_rx, &seq_tx);
        })?,
        spawn("cardiostream-analyzer", move || {
            analyzer_stage(analyzer, seq_rx, &direct_tx, &job_tx);
        })?,
        spawn("cardiostream-scorer", move || {
            scorer_stage(&scorer, job_rx, &scored_tx);
        })?,
    ];
    let source = tokio::spawn(source::run(
        consumer.clone(),
        cfg.clone(),
        telemetry.clone(),
        work_tx,
        shutdown,
    ));
    tracing::info!(topic = %cfg.frames_topic, group = %cfg.group_id, "pipeline consuming");
    let published = publisher::run(
        producer,
        consumer.clone(),
        publisher::Topics {
            findings: cfg.findings_topic.clone(),
            dlq: cfg.dlq_topic.clone(),
            frames: cfg.frames_topic.clone(),
        },
        // Both parts of `channel_batches` epochs.
        2 * depth,
        telemetry,
        statuses,
        direct_rx,
        scored_rx,
    )
    .await;
    if let Err(e) = published {
        source.abort();
        return Err(e);
    }
    source.await.context("source task failed")??;
    for t in threads {
        if t.join().is_err() {
            anyhow::bail!("a pipeline stage thread panicked");
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    tracing::info!("pipeline stopped");
    Ok(())
}

fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .with_context(|| format!("starting the {name} thread"))
}

/// The sequencer stage: decodes and sequences epochs, applies revocations in order.
fn sequencer_stage(
    mut sequencer: Sequencer,
    mut work: mpsc::Receiver<Work>,
    out: &mpsc::Sender<Sequencing>,
) {
    while let Some(w) = work.blocking_recv() {
        let next = match w {
            Work::Revoked { epoch, partitions } => {
                sequencer.drop_partitions(&partitions);
                let mut cp = Cp::new(epoch);
                cp.revoked = partitions;
                Sequencing::Revoked(cp)
            }
            Work::Epoch { epoch, records } => {
                let span = tracing::info_span!(
                    "sequence",
                    epoch,
                    records = records.len(),
                    frames = Empty,
                    dead_letters = Empty,
                );
                let _entered = span.enter();
                let mut cp = Cp::new(epoch);
                let s = sequencer.process(records, offline::now_us, &mut cp);
                span.record("frames", s.frames.len());
                span.record("dead_letters", s.dead_letters.len());
                Sequencing::Epoch(cp, s)
            }
        };
        if out.blocking_send(next).is_err() {
            return;
        }
    }
}

/// The analyzer stage: DSP of each epoch; its findings straight to the publisher,
/// its model inputs to the scorer.
fn analyzer_stage(
    mut analyzer: Shards,
    mut input: mpsc::Receiver<Sequencing>,
    direct: &mpsc::Sender<DirectPart>,
    jobs: &mpsc::Sender<ScoreJob>,
) {
    while let Some(s) = input.blocking_recv() {
        let (part, job) = match s {
            Sequencing::Revoked(cp) => {
                analyzer.drop_partitions(&cp.revoked);
                let epoch = cp.epoch;
                (
                    DirectPart {
                        checkpoint: cp,
                        findings: Vec::new(),
                        closed_us: Vec::new(),
                        dead_letters: Vec::new(),
                        statuses: Vec::new(),
                        evicted: Vec::new(),
                    },
                    ScoreJob {
                        epoch,
                        inputs: Vec::new(),
                        evicted: Vec::new(),
                    },
                )
            }
            Sequencing::Epoch(mut cp, seq) => {
                let span = tracing::info_span!(
                    "analyze",
                    epoch = cp.epoch,
                    frames = seq.frames.len(),
                    findings = Empty,
                    model_inputs = Empty,
                );
                let _entered = span.enter();
                let mut a = analyzer.drop_streams(&seq.evicted);
                a.append(analyzer.process(seq.frames, &mut cp));
                span.record("findings", a.findings.len());
                span.record("model_inputs", a.inputs.len());
                let epoch = cp.epoch;
                let mut findings = seq.findings;
                let mut closed_us = seq.closed_us;
                findings.extend(a.findings);
                closed_us.extend(a.closed_us);
                (
                    DirectPart {
                        checkpoint: cp,
                        findings,
                        closed_us,
                        dead_letters: seq.dead_letters,
                        statuses: a.statuses,
                        evicted: seq.evicted.clone(),
                    },
                    ScoreJob {
                        epoch,
                        inputs: a.inputs,
                        evicted: seq.evicted,
                    },
                )
            }
        };
        if direct.blocking_send(part).is_err() || jobs.blocking_send(job).is_err() {
            return;
        }
    }
}

/// The scorer stage: each epoch's model inputs, in order.
fn scorer_stage(
    scorer: &Scorer,
    mut jobs: mpsc::Receiver<ScoreJob>,
    out: &mpsc::Sender<ScoredPart>,
) {
    while let Some(job) = jobs.blocking_recv() {
        // An empty epoch (an idle one, say) gets no span.
        let span = if job.inputs.is_empty() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "score",
                epoch = job.epoch,
                windows = job.inputs.len(),
                findings = Empty,
            )
        };
        // Evicted streams' last held windows are in `inputs`: forgotten once scored.
        let scored = span.in_scope(|| scorer.score_epoch(job.inputs, &job.evicted));
        let part = match scored {
            Ok(s) => {
                span.record("findings", s.findings.len());
                ScoredPart::Findings {
                    epoch: job.epoch,
                    findings: s.findings,
                    closed_us: s.closed_us,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "scoring failed past its retry budget; stopping before the epoch's offsets are stored");
                let _ = out.blocking_send(ScoredPart::Failed(e));
                return;
            }
        };
        if out.blocking_send(part).is_err() {
            return;
        }
    }
}

//! The pipeline deployable: frames in, findings out.
//!
//! [`Processor`] is the synchronous heart — decode and validate, per-stream
//! sequencing, DSP, model windows and batched scoring (see [`processor`]). [`run`]
//! drives it from Kafka as three stages joined by bounded channels:
//!
//! 1. **consume** (async): a consumer in a group reads `ecg.frames.v1` into batches;
//!    when the processing stage is behind, the assigned partitions are *paused*
//!    (librdkafka stops fetching) until there is room, so memory stays bounded;
//! 2. **process** (a dedicated thread): sequencing, DSP and inference;
//! 3. **publish** (async): findings to `ecg.findings.v1` keyed by stream, bad frames to
//!    the dead-letter topic, and only once the broker has acknowledged all of them are
//!    the batch's safe offsets stored (`enable.auto.offset.store = false`), to be
//!    committed in the background. A crash therefore replays rather than loses. Up to
//!    `channel_batches` batches are in flight to the broker at once, completed in
//!    order, so the broker's acknowledgement latency does not cap the findings rate.
//!
//! Rebalances: before partitions are revoked the stored offsets are committed and the
//! streams of those partitions are dropped; the new owner rebuilds them from the
//! committed offset (the processor keeps that offset early enough for a warm-up and
//! the unfinished windows). Shutdown drains all three stages and commits.

mod processor;
mod strip;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ecg_dsp::stream::DspConfig;
use ecg_inference::Model;
use ecg_ingest::codec::CONTENT_TYPE_JSON;
use ecg_ingest::kafka;
use ecg_types::StreamId;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::field::Empty;
use tracing::Instrument as _;

pub use processor::{
    ingest_source, rhythm_source, DeadLetter, Input, Output, Processor, StreamSettings,
    StreamStatus,
};

use crate::telemetry::Metrics;

/// Settings of the pipeline deployable.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Kafka connection settings (bootstrap servers, security).
    pub connection: rdkafka::ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Topic of incoming frames.
    pub frames_topic: String,
    /// Topic of findings.
    pub findings_topic: String,
    /// Dead-letter topic for frames that fail validation.
    pub dlq_topic: String,
    /// Most messages per processing batch.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub batch_wait: Duration,
    /// Batches that may wait between stages (and be in flight to the broker)
    /// before consumption pauses.
    pub channel_batches: usize,
    /// DSP settings.
    pub dsp: DspConfig,
    /// Seconds between model windows of one stream.
    pub model_hop_s: f32,
    /// Sequencing, warm-up and eviction settings.
    pub streams: StreamSettings,
    /// Most windows per ONNX Runtime run.
    pub model_max_batch: usize,
}

impl PipelineConfig {
    /// Defaults for a given cluster connection.
    pub fn new(connection: rdkafka::ClientConfig) -> Self {
        Self {
            connection,
            group_id: "cardiostream-pipeline".into(),
            frames_topic: "ecg.frames.v1".into(),
            findings_topic: "ecg.findings.v1".into(),
            dlq_topic: "ecg.frames.dlq".into(),
            batch_max: 512,
            batch_wait: Duration::from_millis(20),
            channel_batches: 16,
            dsp: DspConfig::default(),
            model_hop_s: 10.0,
            streams: StreamSettings::default(),
            model_max_batch: 64,
        }
    }
}

/// Now, µs since the epoch.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Consumer context: commits stored offsets before partitions are revoked and
/// reports the revocations, in order, to the consume loop.
#[derive(Debug)]
struct PipelineContext {
    topic: String,
    metrics: Metrics,
    revoked: Mutex<Vec<Vec<i32>>>,
}

impl PipelineContext {
    fn take_revoked(&self) -> Vec<Vec<i32>> {
        std::mem::take(
            &mut *self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for PipelineContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer lag per
    /// assigned partition of the frames topic (-1 while unknown).
    fn stats(&self, stats: rdkafka::Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                if *p >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            if !lost {
                // Offsets stored so far cover published work only.
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "commit before revocation");
                }
            }
            let parts = self.partitions(tpl);
            self.metrics
                .rebalances
                .with_label_values(&[if lost { "lost" } else { "revoke" }])
                .inc();
            tracing::info!(partitions = ?parts, lost, "partitions revoked");
            self.revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(parts);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                tracing::info!(partitions = ?self.partitions(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics.partitions_assigned.set(n as i64);
    }
}

type FramesConsumer = StreamConsumer<PipelineContext>;

/// Work for the processing stage, in consumption order.
#[derive(Debug)]
enum Work {
    Batch(Vec<Input>),
    Revoked(Vec<i32>),
}

/// Runs the pipeline against Kafka until `shutdown` turns true.
///
/// # Errors
/// Fails if the Kafka clients cannot be created, the subscription fails, or a
/// finding cannot be published (the offsets of unpublished work are not stored).
pub async fn run(
    cfg: PipelineConfig,
    models: Arc<Vec<Model>>,
    metrics: Metrics,
    statuses: Arc<Mutex<HashMap<StreamId, StreamStatus>>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let context = PipelineContext {
        topic: cfg.frames_topic.clone(),
        metrics: metrics.clone(),
        revoked: Mutex::new(Vec::new()),
    };
    let mut consumer_cfg = kafka::consumer_config(&cfg.connection, &cfg.group_id);
    if consumer_cfg.get("statistics.interval.ms").is_none() {
        consumer_cfg.set("statistics.interval.ms", "5000");
    }
    let consumer: Arc<FramesConsumer> = Arc::new(
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
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(depth);
    let processor = Processor::new(cfg.dsp.clone(), cfg.model_hop_s, models, metrics.clone())
        .with_stream_settings(cfg.streams.clone())
        .with_max_batch(cfg.model_max_batch);
    let worker = std::thread::Builder::new()
        .name("cardiostream-process".into())
        .spawn(move || process_stage(processor, work_rx, &out_tx))
        .context("starting the processing thread")?;
    let consume = tokio::spawn(consume_stage(
        consumer.clone(),
        cfg.clone(),
        metrics.clone(),
        work_tx,
        shutdown,
    ));
    tracing::info!(topic = %cfg.frames_topic, group = %cfg.group_id, "pipeline consuming");

    // Up to `channel_batches` batches are in flight to the broker at once (their
    // acknowledgements awaited in order), so that a broker's acknowledgement latency
    // caps the findings rate at `channel_batches` batches per round trip rather than
    // at one.
    let max_in_flight = cfg.channel_batches.max(1);
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(max_in_flight);
    let mut stored: HashMap<i32, i64> = HashMap::new();
    let mut open = true;
    let mut failure = None;
    while open || !in_flight.is_empty() {
        let n = in_flight.len();
        let event = tokio::select! {
            biased;
            acked = oldest_acked(&mut in_flight), if n > 0 => Event::Acked(acked),
            out = out_rx.recv(), if open && n < max_in_flight => Event::Output(out),
        };
        match event {
            Event::Output(None) => open = false,
            Event::Output(Some(out)) => {
                // A finding that cannot be published stops the pipeline before its
                // offsets are stored: the restart replays the batch instead of losing it.
                match enqueue_output(&producer, &cfg, &metrics, out).await {
                    Ok(f) => in_flight.push_back(f),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            Event::Acked(Err(e)) => {
                failure = Some(e);
                break;
            }
            Event::Acked(Ok(())) => {
                let Some(done) = in_flight.pop_front() else {
                    continue;
                };
                for p in &done.revoked {
                    stored.remove(p);
                }
                {
                    let mut s = statuses
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for st in done.statuses {
                        s.insert(st.stream.clone(), st);
                    }
                }
                // Everything up to these offsets is published: they may be committed.
                let mut tpl = TopicPartitionList::new();
                for (p, o) in done.offsets {
                    if stored.get(&p).is_none_or(|&s| o > s) {
                        stored.insert(p, o);
                        if let Err(e) =
                            tpl.add_partition_offset(&cfg.frames_topic, p, Offset::Offset(o))
                        {
                            tracing::warn!(error = %e, partition = p, "offset not storable");
                        }
                    }
                }
                if tpl.count() > 0 {
                    if let Err(e) = consumer.store_offsets(&tpl) {
                        // Partitions revoked since the batch was read: the new owner replays.
                        tracing::debug!(error = %e, "storing offsets");
                    }
                }
            }
        }
    }
    if let Some(e) = failure {
        consume.abort();
        return Err(e);
    }
    consume.await.context("consume task failed")??;
    if worker.join().is_err() {
        anyhow::bail!("processing thread panicked");
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    tracing::info!("pipeline stopped");
    Ok(())
}

/// The processing stage: applies revocations and processes batches in order.
fn process_stage(
    mut processor: Processor,
    mut work: mpsc::Receiver<Work>,
    out: &mpsc::Sender<Output>,
) {
    while let Some(w) = work.blocking_recv() {
        let o = match w {
            Work::Revoked(parts) => {
                let _span = tracing::info_span!("revoke", partitions = parts.len()).entered();
                processor.drop_partitions(&parts);
                Output {
                    revoked: parts,
                    ..Output::default()
                }
            }
            Work::Batch(inputs) => {
                let span = tracing::info_span!(
                    "process",
                    batch_size = inputs.len(),
                    findings = Empty,
                    dead_letters = Empty,
                    streams = Empty,
                );
                let _entered = span.enter();
                let o = processor.process(inputs);
                span.record("findings", o.findings.len());
                span.record("dead_letters", o.dead_letters.len());
                span.record("streams", o.statuses.len());
                o
            }
        };
        if out.blocking_send(o).is_err() {
            return;
        }
    }
}

/// The consume stage: batches of messages, revocations in order between them, and
/// back-pressure by pausing the assignment while the processing stage is full.
async fn consume_stage(
    consumer: Arc<FramesConsumer>,
    cfg: PipelineConfig,
    metrics: Metrics,
    work: mpsc::Sender<Work>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let to = Handoff {
        consumer: &consumer,
        metrics: &metrics,
        work: &work,
    };
    let mut batch: Vec<Input> = Vec::with_capacity(cfg.batch_max);
    'outer: loop {
        // One span per batch, from its first wait to its hand-off (not entered across
        // awaits: the hand-off is instrumented with it).
        let span = ingest_span();
        let deadline = tokio::time::sleep(cfg.batch_wait);
        tokio::pin!(deadline);
        let mut first = true;
        while batch.len() < cfg.batch_max {
            let m = tokio::select! {
                _ = shutdown.changed() => break 'outer,
                _ = &mut deadline, if !first => break,
                m = consumer.recv() => m,
            };
            first = false;
            // Rebalance callbacks run inside `recv`: their revocations come before `m`.
            for parts in consumer.context().take_revoked() {
                to.send(Work::Batch(std::mem::take(&mut batch))).await?;
                to.send(Work::Revoked(parts)).await?;
            }
            match m {
                Ok(m) => batch.push(input_from(&m)),
                Err(e) => tracing::warn!(parent: &span, error = %e, "consume error"),
            }
        }
        record_ingest(&span, &metrics, batch.len());
        to.send(Work::Batch(std::mem::take(&mut batch)))
            .instrument(span)
            .await?;
    }
    let span = ingest_span();
    record_ingest(&span, &metrics, batch.len());
    to.send(Work::Batch(batch)).instrument(span).await
}

/// The span of one consumed batch: `batch_size` messages read while `partitions`
/// partitions were assigned. Stable fields only, never a stream or patient id.
fn ingest_span() -> tracing::Span {
    tracing::info_span!("ingest", batch_size = Empty, partitions = Empty)
}

fn record_ingest(span: &tracing::Span, metrics: &Metrics, batch_size: usize) {
    span.record("batch_size", batch_size);
    // As of the last rebalance (the gauge the rebalance callbacks keep).
    span.record("partitions", metrics.partitions_assigned.get());
}

/// Where the consume stage hands work to the processing stage.
struct Handoff<'a> {
    consumer: &'a FramesConsumer,
    metrics: &'a Metrics,
    work: &'a mpsc::Sender<Work>,
}

impl Handoff<'_> {
    /// Sends `w` (an empty batch is nothing to send); while the processing stage is
    /// full, fetching is paused.
    async fn send(&self, w: Work) -> anyhow::Result<()> {
        if matches!(&w, Work::Batch(b) if b.is_empty()) {
            return Ok(());
        }
        let w = match self.work.try_send(w) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                anyhow::bail!("processing stage stopped")
            }
            Err(mpsc::error::TrySendError::Full(w)) => w,
        };
        self.metrics.backpressure_pauses.inc();
        let paused = self.consumer.assignment().ok().filter(|a| a.count() > 0);
        if let Some(a) = &paused {
            if let Err(e) = self.consumer.pause(a) {
                tracing::debug!(error = %e, "pausing partitions");
            }
        }
        let sent = self.work.send(w).await;
        if let Some(a) = &paused {
            if let Err(e) = self.consumer.resume(a) {
                tracing::debug!(error = %e, "resuming partitions");
            }
        }
        sent.map_err(|_| anyhow::anyhow!("processing stage stopped"))
    }
}

/// The pipeline's copy of a consumed message (payload, content type, source position).
pub fn input_from(m: &rdkafka::message::BorrowedMessage<'_>) -> Input {
    Input {
        payload: m.payload().unwrap_or_default().to_vec(),
        content_type: kafka::content_type(m),
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_us: m.timestamp().to_millis().map(|ms| ms * 1000),
    }
}

/// What the publish stage waits for next.
enum Event {
    Output(Option<Output>),
    Acked(anyhow::Result<()>),
}

/// One processed batch on its way to the broker: its acknowledgements (awaited in a
/// task) and what to do once they are all in.
struct InFlight {
    acks: tokio::task::JoinHandle<anyhow::Result<()>>,
    statuses: Vec<StreamStatus>,
    offsets: Vec<(i32, i64)>,
    revoked: Vec<i32>,
}

/// Waits for the oldest batch in flight to be acknowledged (or fail).
async fn oldest_acked(in_flight: &mut VecDeque<InFlight>) -> anyhow::Result<()> {
    match in_flight.front_mut() {
        Some(f) => (&mut f.acks)
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("publish task failed: {e}"))),
        None => std::future::pending().await,
    }
}

/// A published finding's labels and times, for the metrics once it is acknowledged.
struct Sent {
    condition: &'static str,
    status: &'static str,
    window_end_us: i64,
    closed_us: i64,
}

/// Enqueues a batch's findings and dead letters with the producer (librdkafka batches
/// them) and starts a task that waits until the broker has them all.
async fn enqueue_output(
    producer: &FutureProducer,
    cfg: &PipelineConfig,
    metrics: &Metrics,
    out: Output,
) -> anyhow::Result<InFlight> {
    let span = tracing::info_span!(
        "publish",
        findings = out.findings.len(),
        dead_letters = out.dead_letters.len(),
        partitions = out.offsets.len(),
    );
    let failed = |e: KafkaError| anyhow::anyhow!("publishing to kafka failed: {e}");
    let enqueue = async {
        let mut findings = Vec::with_capacity(out.findings.len());
        for (i, f) in out.findings.iter().enumerate() {
            // Every finding is published, whether or not its close time is known.
            let closed_us = out.closed_us.get(i).copied().unwrap_or_else(now_us);
            let payload = match serde_json::to_vec(f) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "finding not serialisable");
                    continue;
                }
            };
            let headers = OwnedHeaders::new().insert(Header {
                key: kafka::CONTENT_TYPE,
                value: Some(CONTENT_TYPE_JSON),
            });
            let rec = FutureRecord::to(&cfg.findings_topic)
                .key(f.stream.as_str())
                .payload(&payload)
                .headers(headers);
            let delivery = kafka::enqueue(producer, rec).await.map_err(failed)?;
            let sent = Sent {
                condition: f.condition.as_str(),
                status: f.status.as_str(),
                window_end_us: f.window_end.0,
                closed_us,
            };
            findings.push((sent, delivery));
        }
        let mut dead = Vec::with_capacity(out.dead_letters.len());
        for d in &out.dead_letters {
            let (partition, offset) = (d.input.partition.to_string(), d.input.offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: kafka::DLQ_ERROR_KIND,
                    value: Some(d.kind),
                })
                .insert(Header {
                    key: kafka::DLQ_ERROR_MESSAGE,
                    value: Some(d.reason.as_str()),
                })
                .insert(Header {
                    key: kafka::DLQ_SOURCE_TOPIC,
                    value: Some(d.input.topic.as_str()),
                })
                .insert(Header {
                    key: kafka::DLQ_SOURCE_PARTITION,
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: kafka::DLQ_SOURCE_OFFSET,
                    value: Some(offset.as_str()),
                });
            let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&cfg.dlq_topic)
                .payload(d.input.payload.as_slice())
                .headers(headers);
            dead.push(kafka::enqueue(producer, rec).await.map_err(failed)?);
        }
        Ok::<_, anyhow::Error>((findings, dead))
    };
    let (findings, dead) = enqueue.instrument(span.clone()).await?;
    let metrics = metrics.clone();
    let acks = tokio::spawn(
        async move {
            for (f, delivery) in findings {
                acknowledged(delivery.await).map_err(failed)?;
                metrics
                    .findings_published
                    .with_label_values(&[f.condition, f.status])
                    .inc();
                let now = now_us();
                let seconds = |from: i64| ((now - from) as f64 / 1e6).max(0.0);
                metrics
                    .window_to_finding_seconds
                    .observe(seconds(f.window_end_us));
                metrics
                    .window_closed_to_finding_seconds
                    .observe(seconds(f.closed_us));
            }
            for delivery in dead {
                acknowledged(delivery.await).map_err(failed)?;
            }
            Ok(())
        }
        .instrument(span),
    );
    Ok(InFlight {
        acks,
        statuses: out.statuses,
        offsets: out.offsets,
        revoked: out.revoked,
    })
}

/// The outcome of a delivery future as an error, if any.
fn acknowledged<C>(
    r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, C>,
) -> Result<(), KafkaError> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

//! The source: the frames topic in, numbered epochs of records out.
//!
//! A consumer in the pipeline's group reads `ecg.frames.v1` into batches of at most
//! `batch_max` records or `batch_wait` of waiting; each batch is an epoch, numbered
//! in order; after [`IDLE_TICK`] without a record, an empty epoch keeps the stages'
//! clocks running. Revocations come between epochs, in the order the consumer saw them.
//! When the stages behind are full, the assigned partitions are *paused* (librdkafka
//! stops fetching) until there is room, so memory stays bounded. Offsets are stored
//! by the publisher, never here (`enable.auto.offset.store = false`).

use std::sync::{Arc, Mutex};

use ecg_ingest::kafka;
use ecg_types::{Position, SourceRecord};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::field::Empty;
use tracing::Instrument as _;

use crate::config::PipelineConfig;
use crate::events::{Event, Sink};

/// How long the source waits for a record before it sends an empty epoch, which
/// runs the stages' wall-clock limits on a quiet topic.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Work for the sequencer, in consumption order.
#[derive(Debug)]
pub enum Work {
    /// A batch of records.
    Epoch {
        /// Its number.
        epoch: u64,
        /// The records.
        records: Vec<SourceRecord>,
    },
    /// Partitions revoked (or lost) before the next epoch.
    Revoked {
        /// The epoch number this revocation takes.
        epoch: u64,
        /// The partitions.
        partitions: Vec<i32>,
    },
}

/// Consumer context: commits stored offsets before partitions are revoked and
/// reports the revocations, in order, to the consume loop.
#[derive(Debug)]
pub struct SourceContext {
    topic: String,
    telemetry: Sink,
    revoked: Mutex<Vec<Vec<i32>>>,
}

impl SourceContext {
    /// A context for the frames topic.
    pub fn new(topic: String, telemetry: Sink) -> Self {
        Self {
            topic,
            telemetry,
            revoked: Mutex::new(Vec::new()),
        }
    }

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

impl ClientContext for SourceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer lag per
    /// assigned partition of the frames topic (-1 while unknown).
    fn stats(&self, stats: rdkafka::Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                if *p >= 0 {
                    self.telemetry.emit(&Event::ConsumerLag {
                        partition: *p,
                        lag: part.consumer_lag,
                    });
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
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
            self.telemetry.emit(&Event::Rebalance {
                kind: if lost { "lost" } else { "revoke" },
            });
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
                self.telemetry.emit(&Event::Rebalance { kind: "assign" });
                tracing::info!(partitions = ?self.partitions(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.telemetry.emit(&Event::PartitionsAssigned(n));
    }
}

/// The frames consumer.
pub type FramesConsumer = StreamConsumer<SourceContext>;

/// The source's copy of a consumed message.
pub fn record_from(m: &rdkafka::message::BorrowedMessage<'_>) -> SourceRecord {
    SourceRecord {
        payload: m.payload().unwrap_or_default().to_vec(),
        key: m.key().map(<[u8]>::to_vec),
        content_type: kafka::content_type(m),
        topic: m.topic().to_owned(),
        position: Position {
            partition: m.partition(),
            offset: m.offset(),
        },
        timestamp_us: m.timestamp().to_millis().map(|ms| ms * 1000),
    }
}

/// Reads epochs until `shutdown` turns true, handing them to `work`.
///
/// # Errors
/// When the sequencer has stopped.
pub async fn run(
    consumer: Arc<FramesConsumer>,
    cfg: PipelineConfig,
    telemetry: Sink,
    work: mpsc::Sender<Work>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut to = Handoff {
        consumer: &consumer,
        telemetry: &telemetry,
        work: &work,
        epoch: 0,
    };
    let mut batch: Vec<SourceRecord> = Vec::with_capacity(cfg.batch_max);
    'outer: loop {
        // One span per batch, from its first wait to its hand-off (not entered across
        // awaits: the hand-off is instrumented with it).
        let span = ingest_span();
        let deadline = tokio::time::sleep(cfg.batch_wait);
        tokio::pin!(deadline);
        let idle = tokio::time::sleep(IDLE_TICK);
        tokio::pin!(idle);
        let mut first = true;
        while batch.len() < cfg.batch_max {
            let m = tokio::select! {
                _ = shutdown.changed() => break 'outer,
                _ = &mut deadline, if !first => break,
                () = &mut idle, if first => {
                    // Revocations the consumer saw while it waited go first, in order.
                    for parts in consumer.context().take_revoked() {
                        to.revoked(parts).await?;
                    }
                    // The idle epoch is this span's batch: no records.
                    span.record("batch_size", 0);
                    span.in_scope(|| to.tick())?;
                    continue 'outer;
                }
                m = consumer.recv() => m,
            };
            // Rebalance callbacks run inside `recv`: their revocations come before `m`.
            for parts in consumer.context().take_revoked() {
                to.batch(std::mem::take(&mut batch)).await?;
                to.revoked(parts).await?;
            }
            match m {
                Ok(m) => {
                    batch.push(record_from(&m));
                    first = false;
                }
                // Errors alone (a broker down) keep the batch waiting for its first
                // record, and the idle epochs coming.
                Err(e) => tracing::warn!(parent: &span, error = %e, "consume error"),
            }
        }
        span.record("batch_size", batch.len());
        to.batch(std::mem::take(&mut batch))
            .instrument(span)
            .await?;
    }
    let span = ingest_span();
    span.record("batch_size", batch.len());
    to.batch(batch).instrument(span).await
}

/// The span of one consumed batch. Stable fields only, never a stream or patient id.
fn ingest_span() -> tracing::Span {
    tracing::info_span!("ingest", batch_size = Empty)
}

/// Where the source hands work to the sequencer.
struct Handoff<'a> {
    consumer: &'a FramesConsumer,
    telemetry: &'a Sink,
    work: &'a mpsc::Sender<Work>,
    epoch: u64,
}

impl Handoff<'_> {
    /// A batch as the next epoch (an empty batch is nothing to send).
    async fn batch(&mut self, records: Vec<SourceRecord>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let epoch = self.next_epoch();
        self.send(Work::Epoch { epoch, records }).await
    }

    /// An empty epoch, while no record comes: the stages' clocks still run (reorder
    /// waits end, idle streams are evicted and the windows they held go out) and
    /// what that frees is committed, on a quiet topic too. Skipped when the stages
    /// are full: the epochs already queued run the same clocks.
    fn tick(&mut self) -> anyhow::Result<()> {
        match self.work.try_reserve() {
            Ok(room) => {
                room.send(Work::Epoch {
                    epoch: self.next_epoch(),
                    records: Vec::new(),
                });
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(())) => anyhow::bail!("sequencer stopped"),
            Err(mpsc::error::TrySendError::Full(())) => Ok(()),
        }
    }

    async fn revoked(&mut self, partitions: Vec<i32>) -> anyhow::Result<()> {
        let epoch = self.next_epoch();
        self.send(Work::Revoked { epoch, partitions }).await
    }

    fn next_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch - 1
    }

    /// Sends `w`; while the sequencer is full, fetching is paused.
    async fn send(&self, w: Work) -> anyhow::Result<()> {
        let w = match self.work.try_send(w) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => anyhow::bail!("sequencer stopped"),
            Err(mpsc::error::TrySendError::Full(w)) => w,
        };
        self.telemetry.emit(&Event::BackpressurePause);
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
        sent.map_err(|_| anyhow::anyhow!("sequencer stopped"))
    }
}

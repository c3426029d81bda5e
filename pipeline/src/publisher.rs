//! The publisher: findings and dead letters out to Kafka, offsets stored once
//! everything before them is acknowledged.
//!
//! An epoch reaches the publisher in two parts ([`crate::commit::Part`]): the
//! analyzer's (continuity and rhythm findings, dead letters, stream statuses and the
//! epoch's checkpoint) as soon as DSP is done, the scorer's (model findings) once the
//! models have run — so a lethal-arrhythmia finding never waits behind a batch of
//! model windows. Each part is enqueued with the producer (librdkafka batches the
//! records) and its acknowledgements are awaited in a task; up to `max_in_flight`
//! parts are in flight at once. The [`CommitTracker`] stores an epoch's offsets once
//! both its parts and every earlier epoch are acknowledged. A record that cannot be
//! published stops the pipeline before its offsets are stored: a restart replays the
//! epoch instead of losing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ecg_ingest::codec::CONTENT_TYPE_JSON;
use ecg_ingest::kafka;
use ecg_types::{DeadLetter, Finding, StreamId};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::analyzer::{StreamStatus, UNTIMED};
use crate::commit::{Checkpoint, CommitTracker, Part};
use crate::events::{Event, Sink};
use crate::offline::now_us;
use crate::scorer::ScoreError;
use crate::source::FramesConsumer;

/// The analyzer's part of an epoch.
#[derive(Debug)]
pub struct DirectPart {
    /// The epoch's checkpoint.
    pub checkpoint: Checkpoint,
    /// Continuity and rhythm findings.
    pub findings: Vec<Finding>,
    /// Per finding, when its window closed (µs since the epoch).
    pub closed_us: Vec<i64>,
    /// Records to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Updated stream statuses.
    pub statuses: Vec<StreamStatus>,
    /// Streams forgotten after a long silence.
    pub evicted: Vec<StreamId>,
}

/// The scorer's part of an epoch.
#[derive(Debug)]
pub enum ScoredPart {
    /// Model findings of the epoch.
    Findings {
        /// The epoch.
        epoch: u64,
        /// The findings.
        findings: Vec<Finding>,
        /// Per finding, when its window closed.
        closed_us: Vec<i64>,
    },
    /// Scoring failed past its retry budget: the pipeline stops.
    Failed(ScoreError),
}

/// Where statuses of live streams are kept for the console.
pub type Statuses = Arc<Mutex<HashMap<StreamId, StreamStatus>>>;

/// Topics and limits of the publisher.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Findings topic.
    pub findings: String,
    /// Dead-letter topic.
    pub dlq: String,
    /// Frames topic (whose offsets are stored).
    pub frames: String,
}

/// What a part's task hands back once all its records are acknowledged.
#[derive(Debug, Default)]
struct Acked {
    statuses: Vec<StreamStatus>,
    evicted: Vec<StreamId>,
}

/// Publishes both parts of every epoch until both inputs close.
///
/// # Errors
/// When a record cannot be published or scoring failed: nothing of that epoch or
/// later is stored.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    producer: FutureProducer,
    consumer: Arc<FramesConsumer>,
    topics: Topics,
    max_in_flight: usize,
    telemetry: Sink,
    statuses: Statuses,
    mut direct: mpsc::Receiver<DirectPart>,
    mut scored: mpsc::Receiver<ScoredPart>,
) -> anyhow::Result<()> {
    let mut tracker = CommitTracker::default();
    let mut acks: JoinSet<(u64, Part, anyhow::Result<Acked>)> = JoinSet::new();
    let (mut direct_open, mut scored_open) = (true, true);
    let max = max_in_flight.max(2);
    while direct_open || scored_open || !acks.is_empty() {
        let room = acks.len() < max;
        tokio::select! {
            biased;
            done = acks.join_next(), if !acks.is_empty() => {
                let (epoch, part, result) = match done {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => anyhow::bail!("publish task failed: {e}"),
                    None => continue,
                };
                let acked = result?;
                if part == Part::Direct {
                    let mut s = statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for st in acked.statuses {
                        s.insert(st.stream.clone(), st);
                    }
                    for id in &acked.evicted {
                        s.remove(id);
                    }
                }
                for commit in tracker.acknowledged(epoch, part) {
                    // Everything up to these offsets is published: they may be committed.
                    let mut tpl = TopicPartitionList::new();
                    for (p, o) in commit.offsets {
                        if let Err(e) = tpl.add_partition_offset(&topics.frames, p, Offset::Offset(o)) {
                            tracing::warn!(error = %e, partition = p, "offset not storable");
                        }
                    }
                    if tpl.count() > 0 {
                        if let Err(e) = consumer.store_offsets(&tpl) {
                            // Partitions revoked since the epoch was read: the new owner replays.
                            tracing::debug!(error = %e, "storing offsets");
                        }
                    }
                }
            }
            d = direct.recv(), if direct_open && room => match d {
                None => direct_open = false,
                Some(d) => {
                    let epoch = d.checkpoint.epoch;
                    tracker.checkpoint(d.checkpoint);
                    let acked = Acked { statuses: d.statuses, evicted: d.evicted };
                    let task = enqueue(&producer, &topics, &telemetry, d.findings, d.closed_us, d.dead_letters).await?;
                    acks.spawn(async move { (epoch, Part::Direct, task.await.map(|()| acked)) });
                }
            },
            s = scored.recv(), if scored_open && room => match s {
                None => scored_open = false,
                Some(ScoredPart::Failed(e)) => return Err(e.into()),
                Some(ScoredPart::Findings { epoch, findings, closed_us }) => {
                    let task = enqueue(&producer, &topics, &telemetry, findings, closed_us, Vec::new()).await?;
                    acks.spawn(async move { (epoch, Part::Scored, task.await.map(|()| Acked::default())) });
                }
            },
        }
    }
    Ok(())
}

/// Enqueues findings and dead letters with the producer and returns a future that
/// resolves once the broker has them all.
async fn enqueue(
    producer: &FutureProducer,
    topics: &Topics,
    telemetry: &Sink,
    findings: Vec<Finding>,
    closed_us: Vec<i64>,
    dead_letters: Vec<DeadLetter>,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
    let span = tracing::info_span!(
        "publish",
        findings = findings.len(),
        dead_letters = dead_letters.len(),
    );
    let failed = |e: KafkaError| anyhow::anyhow!("publishing to kafka failed: {e}");
    let enqueue = async {
        let mut sent = Vec::with_capacity(findings.len());
        for (i, f) in findings.iter().enumerate() {
            // Every finding is published, whether or not its close time is known.
            let closed = closed_us.get(i).copied().unwrap_or_else(now_us);
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
            let rec = FutureRecord::to(&topics.findings)
                .key(f.stream.as_str())
                .payload(&payload)
                .headers(headers);
            let delivery = kafka::enqueue(producer, rec).await.map_err(failed)?;
            sent.push(((f.condition, f.status, f.window_end.0, closed), delivery));
        }
        let mut dead = Vec::with_capacity(dead_letters.len());
        for d in &dead_letters {
            let rec = &d.record;
            let (partition, offset) = (
                rec.position.partition.to_string(),
                rec.position.offset.to_string(),
            );
            // The record goes on unchanged: its payload, key and content type, with
            // the reason and its origin in headers.
            let mut headers = OwnedHeaders::new();
            if let Some(ct) = &rec.content_type {
                headers = headers.insert(Header {
                    key: kafka::CONTENT_TYPE,
                    value: Some(ct.as_str()),
                });
            }
            let headers = headers
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
                    value: Some(rec.topic.as_str()),
                })
                .insert(Header {
                    key: kafka::DLQ_SOURCE_PARTITION,
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: kafka::DLQ_SOURCE_OFFSET,
                    value: Some(offset.as_str()),
                });
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topics.dlq)
                .payload(rec.payload.as_slice())
                .headers(headers);
            if let Some(k) = &rec.key {
                out = out.key(k.as_slice());
            }
            dead.push(kafka::enqueue(producer, out).await.map_err(failed)?);
        }
        Ok::<_, anyhow::Error>((sent, dead))
    };
    let (sent, dead) = enqueue.instrument(span.clone()).await?;
    let telemetry = telemetry.clone();
    Ok(async move {
        for ((condition, status, window_end_us, closed), delivery) in sent {
            acknowledged(delivery.await).map_err(failed)?;
            let now = now_us();
            telemetry.emit(&Event::FindingPublished {
                condition,
                status,
                latency: (closed != UNTIMED).then(|| {
                    (
                        (now - window_end_us) as f64 / 1e6,
                        (now - closed) as f64 / 1e6,
                    )
                }),
            });
        }
        for delivery in dead {
            acknowledged(delivery.await).map_err(failed)?;
        }
        Ok(())
    }
    .instrument(span))
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

//! The device side: frames published to Kafka as device gateways would publish them —
//! wire format v1, keyed by stream id, paced at real time (or faster).
//!
//! Two kinds of device: simulated patients ([`ecg_sim::FrameSource`]) and recorded
//! ECG replayed from WFDB records ([`RecordSource`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ecg_ingest::codec::{self, Encoding};
use ecg_ingest::kafka;
pub use ecg_ingest::replay::RecordSource;
use ecg_sim::FrameSource;
use ecg_types::Frame;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;

/// A device that publishes frames.
#[derive(Debug)]
pub enum Source {
    /// A simulated patient (endless).
    Sim(Box<FrameSource>),
    /// A recorded ECG (ends with the record).
    Record(Box<RecordSource>),
}

impl Source {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        Ok(match self {
            Source::Sim(s) => Some(s.next_frame()),
            Source::Record(r) => r
                .next_frame()
                .with_context(|| format!("replaying {}", r.stream()))?,
        })
    }
}

/// How frames are published.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Destination topic.
    pub topic: String,
    /// Wire encoding.
    pub encoding: Encoding,
    /// Device seconds per wall-clock second; 0 publishes as fast as the broker takes them.
    pub speed: f64,
    /// Stop after this long (wall clock).
    pub duration: Option<Duration>,
}

/// Publishes every source's frames, each at its own device-time pace scaled by
/// `speed`, until every source has ended, `duration` has passed or `shutdown` turns
/// true. Waits for the broker to acknowledge everything sent. Returns the frames sent.
///
/// # Errors
/// When the broker rejects a frame or the final flush fails.
pub async fn publish(
    producer: &FutureProducer,
    mut sources: Vec<Source>,
    opts: &PublishOptions,
    on_sent: impl Fn(),
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    // Pending frame of each source and the device time of the source's first frame.
    let mut pending: Vec<Option<Frame>> = sources
        .iter_mut()
        .map(Source::next_frame)
        .collect::<anyhow::Result<_>>()?;
    let origin: Vec<i64> = pending
        .iter()
        .map(|f| f.as_ref().map_or(0, |f| f.t0.0))
        .collect();
    let mut sent = 0u64;
    let mut inflight = VecDeque::new();
    let tick = Duration::from_millis(10);
    loop {
        if *shutdown.borrow() || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if pending.iter().all(Option::is_none) {
            break;
        }
        let device_elapsed_us = if opts.speed > 0.0 {
            (started.elapsed().as_secs_f64() * opts.speed * 1e6) as i64
        } else {
            i64::MAX
        };
        let mut progressed = false;
        for (i, src) in sources.iter_mut().enumerate() {
            while let Some(frame) = pending[i].take() {
                if frame.t0.0 - origin[i] > device_elapsed_us {
                    pending[i] = Some(frame);
                    break;
                }
                inflight.push_back(send(producer, &frame, opts).await?);
                while inflight.len() > MAX_IN_FLIGHT {
                    confirm(inflight.pop_front()).await?;
                }
                on_sent();
                sent += 1;
                progressed = true;
                pending[i] = src.next_frame()?;
                if opts.speed <= 0.0 && sent.is_multiple_of(256) {
                    break; // let other sources and shutdown have a turn
                }
            }
        }
        if !progressed {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing frames to the broker")?;
    for d in inflight {
        confirm(Some(d)).await?;
    }
    Ok(sent)
}

/// Frames sent but not yet acknowledged before the sender waits for the oldest.
const MAX_IN_FLIGHT: usize = 10_000;

async fn confirm(d: Option<DeliveryFuture>) -> anyhow::Result<()> {
    let Some(d) = d else { return Ok(()) };
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(anyhow::anyhow!("the broker did not take a frame: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "the producer was dropped before a frame was delivered"
        )),
    }
}

/// Enqueues one frame, waiting while librdkafka's queue is full.
async fn send(
    producer: &FutureProducer,
    frame: &Frame,
    opts: &PublishOptions,
) -> anyhow::Result<DeliveryFuture> {
    let payload = codec::encode(frame, opts.encoding);
    let headers = OwnedHeaders::new().insert(Header {
        key: kafka::CONTENT_TYPE,
        value: Some(opts.encoding.content_type()),
    });
    let rec = FutureRecord::to(&opts.topic)
        .key(frame.stream.as_str())
        .payload(&payload)
        .headers(headers);
    kafka::enqueue(producer, rec)
        .await
        .map_err(|e| anyhow::anyhow!("publishing a frame of {} failed: {e}", frame.stream))
}

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
use ecg_ingest::wfdb::Record;
use ecg_sim::FrameSource;
use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, Lead, NanovoltsPerCount, PatientId, PulseKind, PulseWave,
    SampleRate, StreamId,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;

/// Amplitude resolution of replayed records: 1 µV per count.
pub const REPLAY_SCALE_NV: u32 = 1000;

/// A WFDB record replayed as a device stream: stream id `rec-NAME`, pseudonymous
/// patient `rec-NAME`, samples converted to 1 µV counts, leads named from the signal
/// descriptions (`MLII` is lead II, `MCL1` V1; a bedside monitor's `V` is an
/// unspecified chest lead). `PLETH` and `ABP`/`ART` signals become the frames'
/// pulsatile waveforms (arterial pressure clamped to the wire format's range).
/// Signals whose description names nothing known (`RESP`), or a lead already taken,
/// are left out. Missing ECG samples (WFDB's invalid value) are
/// sent as 0 with the lead flagged off for that frame; a missing pulse sample repeats
/// the last valid one.
#[derive(Debug, Clone)]
pub struct RecordSource {
    stream: StreamId,
    device: DeviceId,
    patient: PatientId,
    leads: Vec<Lead>,
    rate: SampleRate,
    mv: Vec<Vec<f32>>,
    /// Pulsatile waveforms: kind and physical samples.
    pulses: Vec<(PulseKind, Vec<f32>)>,
    pos: usize,
    end: usize,
    frame_samples: usize,
    t0_us: i64,
    seq: u64,
}

impl RecordSource {
    /// Wraps a record: frames of `frame_ms` milliseconds, device time starting at
    /// `t0_us`, at most `max_seconds` of signal.
    ///
    /// # Errors
    /// When the record has a fractional sample rate, or no signal with a known lead.
    pub fn new(
        rec: &Record,
        t0_us: i64,
        frame_ms: u32,
        max_seconds: Option<f64>,
    ) -> anyhow::Result<Self> {
        let fs = rec.fs.round();
        if (rec.fs - fs).abs() > 1e-6
            || !(f64::from(SampleRate::MIN)..=f64::from(SampleRate::MAX)).contains(&fs)
        {
            anyhow::bail!(
                "record {} has sample rate {} Hz, not a whole rate the wire format carries",
                rec.name,
                rec.fs
            );
        }
        let mut leads = Vec::new();
        let mut mv = Vec::new();
        let mut pulses: Vec<(PulseKind, Vec<f32>)> = Vec::new();
        for (i, s) in rec.signals.iter().enumerate() {
            let desc = s.description.trim();
            let pulse = match desc.to_ascii_uppercase().as_str() {
                "PLETH" => Some(PulseKind::Pleth),
                "ABP" | "ART" => Some(PulseKind::ArterialPressure),
                _ => None,
            };
            if let Some(kind) = pulse {
                if !pulses.iter().any(|p| p.0 == kind) {
                    let mut v = hold_invalid(rec.physical(i));
                    if kind == PulseKind::ArterialPressure {
                        // The wire format's range (a flush or a zeroing goes past it).
                        let (lo, hi) = ecg_ingest::codec::ABP_RANGE_MMHG;
                        v.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
                    }
                    pulses.push((kind, v));
                }
                continue;
            }
            let lead = if desc == "V" {
                Ok(Lead::Unspecified)
            } else {
                desc.parse::<Lead>()
            };
            match lead {
                Ok(l) if !leads.contains(&l) => {
                    leads.push(l);
                    mv.push(rec.physical(i));
                }
                _ => {
                    tracing::debug!(record = %rec.name, signal = i, "signal without a known lead left out")
                }
            }
        }
        if leads.is_empty() {
            anyhow::bail!(
                "record {} has no signal whose description names a known lead",
                rec.name
            );
        }
        let n = mv
            .iter()
            .map(Vec::len)
            .chain(pulses.iter().map(|p| p.1.len()))
            .min()
            .unwrap_or(0);
        let end = max_seconds.map_or(n, |s| n.min((s * fs) as usize));
        let id = format!(
            "rec-{}",
            rec.name
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        );
        Ok(Self {
            stream: StreamId::new(id.clone()).context("stream id")?,
            device: DeviceId::new("replay").context("device id")?,
            patient: PatientId::new(id).context("patient id")?,
            leads,
            rate: SampleRate(fs as u32),
            mv,
            pulses,
            pos: 0,
            end,
            frame_samples: ((fs * f64::from(frame_ms.max(1))) / 1000.0).ceil().max(1.0) as usize,
            t0_us,
            seq: 0,
        })
    }

    /// The next frame, or `None` at the end of the record.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.pos >= self.end {
            return None;
        }
        let n = self.frame_samples.min(self.end - self.pos);
        let mut samples = Vec::with_capacity(n * self.leads.len());
        let mut lead_off = vec![false; self.leads.len()];
        for (l, sig) in self.mv.iter().enumerate() {
            for &v in &sig[self.pos..self.pos + n] {
                if v.is_finite() {
                    samples.push((f64::from(v) * 1e6 / f64::from(REPLAY_SCALE_NV)).round() as i32);
                } else {
                    lead_off[l] = true;
                    samples.push(0);
                }
            }
        }
        let frame = Frame {
            stream: self.stream.clone(),
            device: self.device.clone(),
            patient: self.patient.clone(),
            seq: self.seq,
            t0: DeviceTimeUs(self.t0_us).plus_us(self.rate.samples_to_us(self.pos as u64)),
            sample_rate: self.rate,
            scale: NanovoltsPerCount(REPLAY_SCALE_NV),
            leads: self.leads.clone(),
            lead_off,
            samples,
            pulses: self
                .pulses
                .iter()
                .map(|(kind, v)| PulseWave {
                    kind: *kind,
                    sample_rate: self.rate,
                    samples: v[self.pos..self.pos + n].to_vec(),
                })
                .collect(),
        };
        self.pos += n;
        self.seq += 1;
        Some(frame)
    }

    /// The stream id.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The leads replayed, in frame order.
    pub fn leads(&self) -> &[Lead] {
        &self.leads
    }
}

/// A pulse signal with each invalid (non-finite) sample replaced by the last valid
/// one (the first valid one at the start; 0 if none).
fn hold_invalid(mut v: Vec<f32>) -> Vec<f32> {
    let mut last = v.iter().copied().find(|x| x.is_finite()).unwrap_or(0.0);
    for x in &mut v {
        if x.is_finite() {
            last = *x;
        } else {
            *x = last;
        }
    }
    v
}

/// A device that publishes frames.
#[derive(Debug)]
pub enum Source {
    /// A simulated patient (endless).
    Sim(Box<FrameSource>),
    /// A recorded ECG (ends with the record).
    Record(Box<RecordSource>),
}

impl Source {
    fn next_frame(&mut self) -> Option<Frame> {
        match self {
            Source::Sim(s) => Some(s.next_frame()),
            Source::Record(r) => r.next_frame(),
        }
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
    let mut pending: Vec<Option<Frame>> = sources.iter_mut().map(Source::next_frame).collect();
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
                pending[i] = src.next_frame();
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

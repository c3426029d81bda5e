//! The pipeline deployable: frames in, findings out.
//!
//! [`Processor`] is the synchronous heart — decode and validate, per-stream DSP,
//! model windows and batched scoring — and [`run`] drives it from Kafka: a consumer
//! in a group reads `ecg.frames.v1`, batches go to a blocking thread, findings are
//! published to `ecg.findings.v1` keyed by stream and bad frames to the dead-letter
//! topic, and only then are the batch's offsets stored (`enable.auto.offset.store =
//! false`), so a crash replays rather than loses.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ecg_dsp::rhythm::{af_features, rr_intervals};
use ecg_dsp::stream::{DspConfig, DspEvent, RhythmWindow, StreamDsp};
use ecg_inference::{InputKind, Model, Scored};
use ecg_ingest::{codec, kafka};
use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, Frame, PatientId, SampleRate,
    StreamId, Window,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio::sync::watch;

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
    /// DSP settings.
    pub dsp: DspConfig,
    /// Seconds between model windows of one stream.
    pub model_hop_s: f32,
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
            dsp: DspConfig::default(),
            model_hop_s: 10.0,
        }
    }
}

/// One consumed message, as the processor sees it.
#[derive(Debug, Clone)]
pub struct Input {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// A frame that failed validation, bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original message.
    pub input: Input,
    /// Short error kind (`DecodeError::kind`).
    pub kind: &'static str,
    /// The full error message.
    pub reason: String,
}

/// Live state of one stream, for the console (no samples, no identifiers beyond the
/// pseudonymous ones the console is entitled to show).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Stream id.
    pub stream: StreamId,
    /// Pseudonymous patient.
    pub patient: PatientId,
    /// Heart rate of the last rhythm window, bpm.
    pub heart_rate_bpm: Option<f32>,
    /// Whether the last window had good signal.
    pub quality_ok: bool,
    /// Why not, if not.
    pub quality_reason: String,
    /// Device time of the end of the last window.
    pub last_window_end: DeviceTimeUs,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Findings to publish.
    pub findings: Vec<Finding>,
    /// Frames to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Updated stream statuses.
    pub statuses: Vec<StreamStatus>,
}

#[derive(Debug)]
struct StreamState {
    dsp: StreamDsp,
    patient: PatientId,
    sample_rate: SampleRate,
    n_leads: usize,
    /// Device time of sample 0 of the stream.
    t_origin: DeviceTimeUs,
    /// Beats (sample index) kept for model windows.
    beats: VecDeque<u64>,
    /// End sample of the last model window.
    last_model_end: u64,
    /// End sample of the last window of poor quality.
    bad_until: u64,
    lead_off_in_window: bool,
    scratch: Vec<f32>,
    events: Vec<DspEvent>,
}

impl StreamState {
    fn new(cfg: &DspConfig, first: &Frame) -> Self {
        Self {
            dsp: StreamDsp::new(cfg, first.sample_rate.0, first.leads.len()),
            patient: first.patient.clone(),
            sample_rate: first.sample_rate,
            n_leads: first.leads.len(),
            t_origin: first.t0,
            beats: VecDeque::new(),
            last_model_end: 0,
            bad_until: 0,
            lead_off_in_window: false,
            scratch: Vec::new(),
            events: Vec::new(),
        }
    }

    fn time_of(&self, sample: u64) -> DeviceTimeUs {
        self.t_origin
            .plus_us(self.sample_rate.samples_to_us(sample))
    }
}

/// The synchronous part of the pipeline: frames in, findings out.
#[derive(Debug)]
pub struct Processor {
    streams: HashMap<StreamId, StreamState>,
    models: Arc<Vec<Model>>,
    dsp: DspConfig,
    model_hop_s: f32,
    metrics: Metrics,
}

/// The source of rule-based rhythm findings.
pub fn rhythm_source() -> FindingSource {
    FindingSource::Detector {
        name: "rhythm".into(),
    }
}

impl Processor {
    /// A processor scoring the given models.
    pub fn new(
        dsp: DspConfig,
        model_hop_s: f32,
        models: Arc<Vec<Model>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            streams: HashMap::new(),
            models,
            dsp,
            model_hop_s,
            metrics,
        }
    }

    /// Decodes and processes a batch of messages.
    pub fn process(&mut self, inputs: Vec<Input>) -> Output {
        let mut out = Output::default();
        let mut model_windows: Vec<Window> = Vec::new();
        for input in inputs {
            self.metrics.frames_consumed.inc();
            match codec::decode(&input.payload, input.content_type.as_deref()) {
                Ok(frame) => self.process_frame(&frame, &mut out, &mut model_windows),
                Err(e) => {
                    self.metrics
                        .frames_dead_lettered
                        .with_label_values(&[e.kind()])
                        .inc();
                    tracing::debug!(
                        kind = e.kind(),
                        partition = input.partition,
                        offset = input.offset,
                        "frame dead-lettered"
                    );
                    out.dead_letters.push(DeadLetter {
                        kind: e.kind(),
                        reason: e.to_string(),
                        input,
                    });
                }
            }
        }
        self.score(&model_windows, &mut out);
        self.metrics.streams_active.set(self.streams.len() as i64);
        out
    }

    /// Processes one validated frame (also used directly by offline tools).
    pub fn process_frame(
        &mut self,
        frame: &Frame,
        out: &mut Output,
        model_windows: &mut Vec<Window>,
    ) {
        let n = frame.samples_per_lead();
        let dsp_cfg = &self.dsp;
        let st = self
            .streams
            .entry(frame.stream.clone())
            .or_insert_with(|| StreamState::new(dsp_cfg, frame));
        if st.sample_rate != frame.sample_rate || st.n_leads != frame.leads.len() {
            // A device that changes rate or lead count starts a new stream state.
            tracing::debug!("stream configuration changed; dsp state reset");
            *st = StreamState::new(dsp_cfg, frame);
        }
        st.scratch.clear();
        st.scratch
            .extend(frame.samples.iter().map(|&c| frame.scale.to_mv(c)));
        st.lead_off_in_window |= frame.lead_off.first().copied().unwrap_or(false);
        st.events.clear();
        st.dsp.push(&st.scratch, &frame.lead_off, &mut st.events);
        self.metrics.samples_processed.inc_by(n as u64);
        let events = std::mem::take(&mut st.events);
        for ev in &events {
            match ev {
                DspEvent::Window(w) => {
                    self.metrics
                        .dsp_windows
                        .with_label_values(&[if w.quality_ok { "good" } else { "poor" }])
                        .inc();
                    rhythm_findings(st, &frame.stream, w, &self.dsp, &mut out.findings);
                    out.statuses.push(StreamStatus {
                        stream: frame.stream.clone(),
                        patient: st.patient.clone(),
                        heart_rate_bpm: (w.heart_rate_bpm.is_finite() && w.heart_rate_bpm > 0.0)
                            .then_some(w.heart_rate_bpm),
                        quality_ok: w.quality_ok,
                        quality_reason: w.quality_reason.clone(),
                        last_window_end: st.time_of(w.end_sample),
                    });
                    cut_model_windows(
                        st,
                        &frame.stream,
                        w,
                        &self.models,
                        self.model_hop_s,
                        model_windows,
                    );
                }
                DspEvent::Pause {
                    start_sample,
                    length_s,
                    asystole,
                } => {
                    let condition = if *asystole {
                        Condition::Asystole
                    } else {
                        Condition::Pause
                    };
                    let start = st.time_of(*start_sample);
                    let source = rhythm_source();
                    out.findings.push(Finding {
                        key: Finding::make_key(&frame.stream, &source, condition, start),
                        stream: frame.stream.clone(),
                        patient: st.patient.clone(),
                        source,
                        condition,
                        status: FindingStatus::Present,
                        window_start: start,
                        window_end: start.plus_us((f64::from(*length_s) * 1e6) as i64),
                        score: None,
                        value: Some(*length_s),
                        decision_support: false,
                    });
                }
            }
        }
        st.events = events;
    }

    fn score(&self, windows: &[Window], out: &mut Output) {
        for model in self.models.iter() {
            let mine: Vec<&Window> = windows
                .iter()
                .filter(|w| w.features.len() == model.manifest().input.len)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let id = model.manifest().id.as_str();
            let t = Instant::now();
            match model.score(&mine) {
                Ok(scored) => {
                    self.metrics
                        .inference_seconds
                        .with_label_values(&[id])
                        .observe(t.elapsed().as_secs_f64());
                    let n_scored = scored
                        .iter()
                        .filter(|s| matches!(s, Scored::Probabilities(_)))
                        .count();
                    if n_scored > 0 {
                        self.metrics
                            .inference_batch_size
                            .with_label_values(&[id])
                            .observe(n_scored as f64);
                    }
                    self.metrics
                        .windows_scored
                        .with_label_values(&[id, "scored"])
                        .inc_by(n_scored as u64);
                    self.metrics
                        .windows_scored
                        .with_label_values(&[id, "indeterminate"])
                        .inc_by((scored.len() - n_scored) as u64);
                    for (w, s) in mine.iter().zip(&scored) {
                        out.findings.extend(model.findings(w, s));
                    }
                }
                Err(e) => tracing::warn!(model = id, error = %e, "model scoring failed"),
            }
        }
    }
}

fn finding(
    st: &StreamState,
    stream: &StreamId,
    w: &RhythmWindow,
    condition: Condition,
    status: FindingStatus,
    value: Option<f32>,
) -> Finding {
    let source = rhythm_source();
    let start = st.time_of(w.start_sample);
    Finding {
        key: Finding::make_key(stream, &source, condition, start),
        stream: stream.clone(),
        patient: st.patient.clone(),
        source,
        condition,
        status,
        window_start: start,
        window_end: st.time_of(w.end_sample),
        score: None,
        value,
        decision_support: false,
    }
}

/// Rule-based findings of one rhythm window: the DSP's rhythm calls, lead-off, and
/// the absence of pauses on good signal (which lets pause and asystole alerts clear).
fn rhythm_findings(
    st: &mut StreamState,
    stream: &StreamId,
    w: &RhythmWindow,
    cfg: &DspConfig,
    out: &mut Vec<Finding>,
) {
    for (condition, status, value) in &w.calls {
        out.push(finding(st, stream, w, *condition, *status, *value));
    }
    let lead_off = std::mem::take(&mut st.lead_off_in_window);
    out.push(finding(
        st,
        stream,
        w,
        Condition::LeadOff,
        if lead_off {
            FindingStatus::Present
        } else {
            FindingStatus::Absent
        },
        None,
    ));
    if w.quality_ok && !w.rr_s.is_empty() {
        let longest = w.rr_s.iter().copied().fold(0.0f32, f32::max);
        if longest < cfg.pause_s {
            for c in [Condition::Pause, Condition::Asystole] {
                out.push(finding(
                    st,
                    stream,
                    w,
                    c,
                    FindingStatus::Absent,
                    Some(longest),
                ));
            }
        }
    }
}

/// Cuts model windows (every `hop_s`, each `window_s` of the model long, never
/// before a full window of signal has been seen) from the beats of rhythm windows.
fn cut_model_windows(
    st: &mut StreamState,
    stream: &StreamId,
    w: &RhythmWindow,
    models: &[Model],
    hop_s: f32,
    out: &mut Vec<Window>,
) {
    let last = st.beats.back().copied();
    st.beats.extend(w.beats_after(last));
    if !w.quality_ok {
        st.bad_until = w.end_sample;
    }
    let fs = st.sample_rate.hz();
    let longest = models
        .iter()
        .map(|m| m.manifest().window_s)
        .fold(0.0f32, f32::max);
    let keep_from = w
        .end_sample
        .saturating_sub((f64::from(longest) * fs) as u64);
    while st.beats.front().is_some_and(|&b| b < keep_from) {
        st.beats.pop_front();
    }
    let hop = (f64::from(hop_s) * fs) as u64;
    if w.end_sample < st.last_model_end + hop {
        return;
    }
    let mut cut = false;
    for m in models {
        let len = (f64::from(m.manifest().window_s) * fs) as u64;
        if w.end_sample < len {
            continue;
        }
        let start = w.end_sample - len;
        match m.manifest().input.kind {
            InputKind::AfRrV1 => {
                let beats: Vec<u64> = st
                    .beats
                    .iter()
                    .copied()
                    .filter(|&b| b >= start && b < w.end_sample)
                    .collect();
                let rr = rr_intervals(&beats, fs);
                out.push(Window {
                    stream: stream.clone(),
                    patient: st.patient.clone(),
                    start: st.time_of(start),
                    end: st.time_of(w.end_sample),
                    sample_rate: st.sample_rate,
                    leads: Vec::new(),
                    samples_mv: Vec::new(),
                    features: af_features(&rr).to_vec(),
                    quality_ok: st.bad_until <= start && rr.len() >= 4,
                    rr_s: rr,
                });
                cut = true;
            }
        }
    }
    if cut {
        st.last_model_end = w.end_sample;
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs the pipeline against Kafka until `shutdown` turns true.
///
/// # Errors
/// Fails if the Kafka clients cannot be created or the subscription fails.
pub async fn run(
    cfg: PipelineConfig,
    models: Arc<Vec<Model>>,
    metrics: Metrics,
    statuses: Arc<Mutex<HashMap<StreamId, StreamStatus>>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = kafka::consumer_config(&cfg.connection, &cfg.group_id)
        .create()
        .context("creating the frames consumer")?;
    consumer
        .subscribe(&[&cfg.frames_topic])
        .with_context(|| format!("subscribing to {}", cfg.frames_topic))?;
    let producer: FutureProducer = kafka::producer_config(&cfg.connection, 5)
        .set("enable.idempotence", "true")
        .create()
        .context("creating the findings producer")?;
    let mut processor = Some(Processor::new(
        cfg.dsp.clone(),
        cfg.model_hop_s,
        models,
        metrics.clone(),
    ));
    tracing::info!(topic = %cfg.frames_topic, group = %cfg.group_id, "pipeline consuming");
    loop {
        let mut batch = Vec::new();
        let deadline = tokio::time::sleep(cfg.batch_wait);
        tokio::pin!(deadline);
        // Wait for a first message (or shutdown), then fill the batch until the deadline.
        tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => match m {
                Ok(m) => batch.push(to_input(&m)),
                Err(e) => { tracing::warn!(error = %e, "consume error"); continue; }
            },
        }
        while batch.len() < cfg.batch_max {
            tokio::select! {
                _ = &mut deadline => break,
                m = consumer.recv() => match m {
                    Ok(m) => batch.push(to_input(&m)),
                    Err(e) => { tracing::warn!(error = %e, "consume error"); break; }
                },
            }
        }
        let offsets: Vec<(String, i32, i64)> = batch
            .iter()
            .map(|i| (i.topic.clone(), i.partition, i.offset))
            .collect();
        let mut p = processor.take().context("processor lost")?;
        let (p, out) = tokio::task::spawn_blocking(move || {
            let out = p.process(batch);
            (p, out)
        })
        .await
        .context("processing thread panicked")?;
        processor = Some(p);
        // A finding that cannot be published stops the pipeline before its offsets
        // are stored: the restart replays the batch instead of losing it.
        publish(&producer, &cfg, &metrics, &out).await?;
        {
            let mut s = statuses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for st in out.statuses {
                s.insert(st.stream.clone(), st);
            }
        }
        // Everything the batch contributed to is published: its offsets may be stored.
        for (topic, partition, offset) in offsets {
            if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                tracing::warn!(error = %e, partition, "storing offset failed");
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit failed");
    }
    tracing::info!("pipeline stopped");
    Ok(())
}

fn to_input(m: &rdkafka::message::BorrowedMessage<'_>) -> Input {
    Input {
        payload: m.payload().unwrap_or_default().to_vec(),
        content_type: kafka::content_type(m),
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

/// Publishes findings and dead letters and waits until the broker has them all.
async fn publish(
    producer: &FutureProducer,
    cfg: &PipelineConfig,
    metrics: &Metrics,
    out: &Output,
) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(out.findings.len() + out.dead_letters.len());
    for f in &out.findings {
        let payload = match serde_json::to_vec(f) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "finding not serialisable");
                continue;
            }
        };
        let key = f.stream.as_str().to_owned();
        let record_headers = OwnedHeaders::new().insert(Header {
            key: kafka::CONTENT_TYPE,
            value: Some("application/json"),
        });
        let producer = producer.clone();
        let topic = cfg.findings_topic.clone();
        let condition = f.condition.as_str();
        let status = match f.status {
            FindingStatus::Present => "present",
            FindingStatus::Absent => "absent",
            FindingStatus::Indeterminate => "indeterminate",
        };
        let window_end = f.window_end.0;
        pending.push(tokio::spawn(async move {
            let rec = FutureRecord::to(&topic)
                .key(&key)
                .payload(&payload)
                .headers(record_headers);
            producer
                .send(rec, Duration::from_secs(30))
                .await
                .map(|_| Some((condition, status, window_end)))
                .map_err(|(e, _)| e)
        }));
    }
    for d in &out.dead_letters {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error.kind",
                value: Some(d.kind),
            })
            .insert(Header {
                key: "error.message",
                value: Some(d.reason.as_str()),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(d.input.topic.as_str()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(d.input.partition.to_string().as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(d.input.offset.to_string().as_str()),
            });
        let producer = producer.clone();
        let topic = cfg.dlq_topic.clone();
        let payload = d.input.payload.clone();
        pending.push(tokio::spawn(async move {
            let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
                .payload(payload.as_slice())
                .headers(headers);
            producer
                .send(rec, Duration::from_secs(30))
                .await
                .map(|_| None)
                .map_err(|(e, _)| e)
        }));
    }
    for p in pending {
        match p.await {
            Ok(Ok(Some((condition, status, window_end)))) => {
                metrics
                    .findings_published
                    .with_label_values(&[condition, status])
                    .inc();
                let lag = (now_us() - window_end) as f64 / 1e6;
                metrics.window_to_finding_seconds.observe(lag.max(0.0));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => anyhow::bail!("publishing to kafka failed: {e}"),
            Err(e) => anyhow::bail!("publish task failed: {e}"),
        }
    }
    Ok(())
}

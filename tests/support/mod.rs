//! Helpers shared by the tests on a real broker (`tests/broker.rs`).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod chaos;
pub mod tansu;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardiostream::config::Config;
use cardiostream::devices::Source;
use cardiostream::telemetry::Metrics;
use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_PROTOBUF};
use ecg_ingest::kafka;
use ecg_pipeline::Processor;
use ecg_types::{Finding, Position, SourceRecord};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The shared records (`CARDIOSTREAM_DATA` or `../shared/data/unpack`).
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CARDIOSTREAM_DATA") {
        return Some(PathBuf::from(d));
    }
    let unpack = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/unpack");
    let out = std::process::Command::new(unpack).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The rhythms the simulated test streams cycle through (`RHYTHMS[i % 3]`).
pub const RHYTHMS: [ecg_sim::Preset; 3] = [
    ecg_sim::Preset::NormalSinus,
    ecg_sim::Preset::AtrialFibrillation,
    ecg_sim::Preset::Bradycardia,
];

/// A simulated device (rhythm `preset`, seed `seed`) recording `lead` at 250 Hz as
/// stream `stream` of patient `patient`: 200 ms frames of 1 µV counts from device
/// time `t0`.
pub fn sim_device(
    stream: &str,
    patient: &str,
    preset: ecg_sim::Preset,
    seed: u64,
    lead: ecg_types::Lead,
    t0: i64,
) -> ecg_sim::FrameSource {
    let dev = ecg_sim::Device::new(preset.config(seed, 250, vec![lead])).unwrap();
    ecg_sim::FrameSource::new(
        dev,
        ecg_types::StreamId::new(stream).unwrap(),
        ecg_types::DeviceId::new("d").unwrap(),
        ecg_types::PatientId::new(patient).unwrap(),
        t0,
        50,
        1000,
    )
}

/// A child process that is SIGKILLed when dropped, so a failing test leaves none behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cardiostream COMMAND --config CONFIG` (the binary under test) at `info`
/// level, its output in `log`.
pub fn spawn_cardiostream(command: &str, config: &Path, log: &Path) -> Killed {
    let out = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_cardiostream"))
            .args([command, "--config"])
            .arg(config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning cardiostream {command}: {e}")),
    )
}

/// Simulated devices sending to a real broker until stopped.
pub struct Devices {
    /// Every message sent so far, in order (for the undisturbed offline run).
    pub sent: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Devices {
    /// `streams` devices (`{prefix}-{i}`, patient `p-{prefix}-{i}`; normal sinus, AF,
    /// bradycardia and PVCs in turn; lead II at 250 Hz, 50-sample frames starting at
    /// `t0` + 13 ms · i) at 4× real time: one frame of each every 50 ms, each batch
    /// sent and acknowledged before the next.
    pub fn start(bootstrap: &str, topic: &str, prefix: &str, streams: u64, t0: i64) -> Devices {
        let sent: Arc<Mutex<Vec<Msg>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let presets = [
            ecg_sim::Preset::NormalSinus,
            ecg_sim::Preset::AtrialFibrillation,
            ecg_sim::Preset::Bradycardia,
            ecg_sim::Preset::Pvcs,
        ];
        let mut sources: Vec<ecg_sim::FrameSource> = (0..streams)
            .map(|i| {
                sim_device(
                    &format!("{prefix}-{i}"),
                    &format!("p-{prefix}-{i}"),
                    presets[(i % 4) as usize],
                    i,
                    ecg_types::Lead::II,
                    t0 + i as i64 * 13_000,
                )
            })
            .collect();
        let producer = producer(bootstrap);
        let topic = topic.to_owned();
        let task = {
            let (sent, stop) = (sent.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let msgs: Vec<Msg> = sources
                        .iter_mut()
                        .map(|s| frame_msg(&s.next_frame()))
                        .collect();
                    send_all(&producer, &topic, &msgs).await;
                    sent.lock().unwrap().extend(msgs);
                }
            })
        };
        Devices { sent, stop, task }
    }

    /// How many messages have been sent (acknowledged) so far.
    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// Stops after the batch in flight; every message sent.
    pub async fn stop(self) -> Vec<Msg> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.sent.lock().unwrap().clone()
    }
}

/// Simulated device `i` (stream `s{i}`, patient `p{i}`) in `preset`, one lead at
/// 250 Hz, 200 ms frames of 1 µV counts starting at a fixed device time.
pub fn sim_source(i: usize, preset: ecg_sim::Preset, lead: ecg_types::Lead) -> Source {
    Source::Sim(Box::new(sim_device(
        &format!("s{i}"),
        &format!("p{i}"),
        preset,
        i as u64,
        lead,
        1_800_000_000_000_000,
    )))
}

/// A frame as the device gateway publishes it: protobuf, keyed by stream.
pub fn frame_msg(f: &ecg_types::Frame) -> Msg {
    Msg {
        key: f.stream.as_str().to_owned(),
        payload: codec::encode(f, Encoding::Protobuf),
        content_type: Some(CONTENT_TYPE_PROTOBUF),
    }
}

/// Keys of window findings: all but present pause events, keyed by the event rather
/// than by a window, and the lethal detector's findings: its alarms are keyed by the
/// event's start, and whether a window also carries its absence follows the detector's
/// latest call, which an analysis rebuilt after a rebalance makes anew.
pub fn window_keys(fs: &[Finding]) -> BTreeSet<String> {
    let lethal = ecg_pipeline::analyzer::lethal_source();
    fs.iter()
        .filter(|f| {
            f.source != lethal
                && !(f.condition == ecg_types::Condition::Pause
                    && f.status == ecg_types::FindingStatus::Present)
        })
        .map(|f| f.key.clone())
        .collect()
}

/// Unique topic names of one test.
#[derive(Debug, Clone)]
pub struct Topics {
    pub frames: String,
    pub findings: String,
    pub dlq: String,
    pub alerts: String,
    pub group: String,
}

impl Topics {
    /// Creates the topics on the broker (`frames` with `partitions` partitions).
    pub fn create(broker: &tansu::Broker, partitions: u32) -> Topics {
        let t = Topics {
            frames: tansu::unique("frames"),
            findings: tansu::unique("findings"),
            dlq: tansu::unique("dlq"),
            alerts: tansu::unique("alerts"),
            group: tansu::unique("pipeline"),
        };
        broker.create_topic(&t.frames, partitions);
        broker.create_topic(&t.findings, partitions);
        broker.create_topic(&t.dlq, 1);
        broker.create_topic(&t.alerts, 1);
        t
    }
}

/// A deployable configuration file for the broker and topics, serving HTTP on `http_port`.
/// A short consumer session timeout keeps rebalances after an instance leaves quick
/// (librdkafka's default is 45 s).
pub fn config(dir: &Path, bootstrap: &str, t: &Topics, http_port: u16) -> Config {
    Config::load(Some(&config_file(dir, bootstrap, t, http_port))).unwrap()
}

/// Writes the configuration file of [`config`] and returns its path.
///
/// Its `[alerts]` table is for tests that run the alert service on it
/// (`tests/chaos_broker.rs`): the group reads its fresh findings topic from the start
/// (`start_offset = "earliest"`), since the pipeline may publish before the alert
/// consumer has joined, and the staleness horizon is a day (`stale_after_s`), since
/// test devices may record in the past (an hour ago in `tests/chaos_broker.rs`) and
/// their findings must still page.
pub fn config_file(dir: &Path, bootstrap: &str, t: &Topics, http_port: u16) -> PathBuf {
    let file = dir.join(format!("cardiostream-{http_port}.toml"));
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = {bootstrap:?}\n\
             [kafka.client_properties]\n\
             \"session.timeout.ms\" = \"6000\"\n\
             \"heartbeat.interval.ms\" = \"1000\"\n\
             [topics]\nframes = {:?}\nfindings = {:?}\ndlq = {:?}\nalerts = {:?}\n\
             [pipeline]\ngroup_id = {:?}\nmodels_dir = {:?}\n\
             [alerts]\ngroup_id = {:?}\nstart_offset = \"earliest\"\nstale_after_s = 86400\n\
             [http]\naddr = \"127.0.0.1:{http_port}\"\n",
            t.frames,
            t.findings,
            t.dlq,
            t.alerts,
            t.group,
            models.display().to_string(),
            tansu::unique("alerts"),
        ),
    )
    .unwrap();
    file
}

/// A producer for test frames: one record per batch, because tansu 0.6.0 skips the
/// rest of a batch when a consumer resumes from an offset inside it
/// (tests/broker_semantics.rs, docs/broker.md).
pub fn producer(bootstrap: &str) -> FutureProducer {
    kafka::producer_config(&kafka::connection(bootstrap), 5)
        .set("batch.num.messages", "1")
        .create()
        .unwrap()
}

/// One message to publish: key, payload, content type.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: String,
    pub payload: Vec<u8>,
    pub content_type: Option<&'static str>,
}

/// Publishes messages in order, returning each one's (partition, offset) as the broker
/// acknowledged it.
pub async fn send_all(p: &FutureProducer, topic: &str, msgs: &[Msg]) -> Vec<(i32, i64)> {
    let mut pending = Vec::with_capacity(msgs.len());
    for m in msgs {
        let mut headers = OwnedHeaders::new();
        if let Some(ct) = m.content_type {
            headers = headers.insert(Header {
                key: kafka::CONTENT_TYPE,
                value: Some(ct),
            });
        }
        let rec = FutureRecord::to(topic)
            .key(&m.key)
            .payload(&m.payload)
            .headers(headers);
        pending.push(kafka::enqueue(p, rec).await.unwrap());
    }
    let mut out = Vec::with_capacity(pending.len());
    for d in pending {
        let d = d.await.unwrap().map_err(|(e, _)| e).unwrap();
        out.push((d.partition, d.offset));
    }
    out
}

/// The findings an offline [`Processor`] (same DSP settings and models as `cfg`) makes
/// of the messages, in order; also the dead-letter kinds.
pub fn offline(cfg: &Config, msgs: &[Msg]) -> (Vec<Finding>, Vec<&'static str>) {
    let (_, out) = offline_run(cfg, msgs);
    (
        out.findings,
        out.dead_letters.iter().map(|d| d.kind).collect(),
    )
}

/// The findings of [`offline`], and then those of the windows the streams still held
/// (each waits for the rhythm windows to cover it), which the pipeline publishes
/// when it evicts the streams.
pub fn offline_then_silent(cfg: &Config, msgs: &[Msg]) -> (Vec<Finding>, Vec<Finding>) {
    let (mut p, out) = offline_run(cfg, msgs);
    (out.findings, p.release_held().unwrap().findings)
}

fn offline_run(cfg: &Config, msgs: &[Msg]) -> (Processor, ecg_pipeline::Output) {
    let models = ecg_inference::load_models(&cfg.pipeline.models_dir, 1).unwrap();
    let mut p = Processor::new(
        cfg.pipeline.dsp.clone(),
        cfg.pipeline.model_hop_s,
        Arc::new(models),
        Metrics::new().pipeline,
    );
    let inputs = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| SourceRecord {
            payload: m.payload.clone(),
            key: Some(m.key.as_bytes().to_vec()),
            content_type: m.content_type.map(str::to_owned),
            topic: "offline".into(),
            position: Position {
                partition: 0,
                offset: i as i64,
            },
            timestamp_us: None,
        })
        .collect();
    let out = p.process(inputs);
    (p, out)
}

/// (key, status) pairs of findings.
pub fn keyed(fs: &[Finding]) -> BTreeSet<(String, String)> {
    fs.iter()
        .map(|f| (f.key.clone(), format!("{:?}", f.status)))
        .collect()
}

/// A consumer reading a topic from the start in its own group.
pub struct Reader {
    consumer: StreamConsumer,
    pub messages: Vec<OwnedMessage>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl Reader {
    pub fn new(bootstrap: &str, topic: &str) -> Reader {
        let consumer: StreamConsumer =
            kafka::consumer_config(&kafka::connection(bootstrap), &tansu::unique("reader"))
                .create()
                .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader {
            consumer,
            messages: Vec::new(),
        }
    }

    /// Reads until `done` holds of everything read so far; panics after `timeout`.
    pub async fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[OwnedMessage]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.messages) {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => self.messages.push(m.detach()),
                Ok(Err(e)) => println!("reader: {e}"),
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what} ({} messages read)",
                    self.messages.len()
                ),
            }
        }
    }

    /// Reads until `done` holds of everything read so far or `timeout` passes;
    /// whether `done` holds.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[OwnedMessage]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.messages) {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => self.messages.push(m.detach()),
                Ok(Err(e)) => println!("reader: {e}"),
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads until nothing new arrives for `quiet` (to catch extra messages).
    pub async fn drain(&mut self, quiet: Duration) {
        while let Ok(r) = tokio::time::timeout(quiet, self.consumer.recv()).await {
            match r {
                Ok(m) => self.messages.push(m.detach()),
                Err(e) => println!("reader: {e}"),
            }
        }
    }
}

/// Findings among messages.
pub fn findings(ms: &[OwnedMessage]) -> Vec<Finding> {
    ms.iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect()
}

/// A header's value as text.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers as _;
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The value of an unlabelled counter on a deployable's `/metrics`.
pub fn scrape(port: u16, metric: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix(metric)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A new database on the PostgreSQL test server (`CARDIOSTREAM_TEST_PG`, started by
/// `scripts/setup/postgres.sh`), for one test; its URL.
pub async fn fresh_pg(admin: &str) -> String {
    let name = format!("cs_test_{:016x}", rand::random::<u64>());
    ecg_alerts::store::Store::create_postgres_database(admin, &name)
        .await
        .expect("create database")
}

/// A webhook receiver on 127.0.0.1 that accepts only notifications signed with
/// `secret`; its URL and the idempotency keys it heard, in order.
pub async fn webhook_peer(secret: &str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    type Heard = (Arc<String>, Arc<std::sync::Mutex<Vec<String>>>);
    async fn hook(
        State((secret, heard)): State<Heard>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ecg_alerts::receivers::webhook::verify_request(secret.as_bytes(), &headers, &body) {
            return StatusCode::UNAUTHORIZED;
        }
        heard.lock().unwrap().push(h("idempotency-key").to_owned());
        StatusCode::NO_CONTENT
    }
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((Arc::new(secret.to_owned()), heard.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), heard)
}

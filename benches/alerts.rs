//! Alert service throughput and notification latency (issue #6, item 8), on SQLite and
//! PostgreSQL. Results and how to read them: docs/performance.md.
//!
//! `cargo bench --bench alerts`; options after `--`: `--streams N` (default 1,000),
//! `--seconds S` of device time (default 300), `--no-postgres`, `--probes N` (high
//! priority alerts timed per latency run, default 1,000), `--probe-rate R` (probe
//! alerts per second, default 50), `--feeders 1,2,4`.
//!
//! Stores: SQLite, a fresh file under `target/tmp/alerts-bench/` (WAL, the store's own
//! settings), and PostgreSQL, a fresh database on the server `CARDIOSTREAM_TEST_PG`
//! names (`scripts/setup/postgres.sh` starts one and prints that URL; without it the
//! PostgreSQL rows are skipped with the reason printed). Every measurement
//! gets a fresh database and a fresh [`AlertService`] (the production config shape: one
//! webhook receiver, `group_wait_s = 30`, an on-call rotation, `tick()` every 500 ms as
//! the deployable runs it), delivering to a real webhook peer: axum on 127.0.0.1, on its
//! own thread, that checks every HMAC signature with `verify_signature`.
//!
//! The finding stream is what the pipeline publishes for `--streams` monitored patients:
//! per stream, a rhythm window every 5 s of device time (10 s windows) with
//! bradycardia, tachycardia, AF, frequent-PVC, lead-off, pause and asystole calls, and an
//! `af-rr` model finding every 10 s — almost all absent. Each stream starts an episode
//! with probability 0.005 per window (about 3 % of streams in one at any time), 2–10
//! windows long: bradycardia, tachycardia, AF (detector and model), PVCs, pause,
//! asystole, VT or lead-off; present findings of clinical conditions carry a 10 s,
//! 250 Hz rhythm strip, as the pipeline attaches them. So alerts fire (after the rules'
//! hysteresis), group (one alert per episode), get inhibited (lead-off) and resolve.
//!
//! 1. **Throughput**: the findings, in device-time order (window by window across
//!    streams, as one partition carries them), through `AlertService::on_finding` as
//!    fast as possible by one task (the deployable's consume loop), and by 2 and 4
//!    concurrent tasks on disjoint streams (as several partitions would be). Baselines
//!    in the same run: `AlertEngine::on_finding` alone (no store), and `Store::insert`
//!    alone of the very alert rows the one-task run created.
//! 2. **Latency**: while a background load runs — flat out (one task, as in 1) and at
//!    the real-time rate of `--streams` streams — a probe task raises `--probes`
//!    asystole alerts (high priority: no group wait) on 50 probe streams at
//!    `--probe-rate`, each resolved again a round later. Latency is from
//!    `on_finding(f, consumed)` with `consumed = Instant::now()` to the peer having the
//!    alert's `fired` notification in hand (request body read). The `Hooks::delivery`
//!    `since_finding` of every finding-caused delivery (taken when the HTTP response is
//!    back) is shown for comparison.
//!
//! Prints a table and appends one JSON line to `target/alerts-bench.json`. Without
//! `--bench` (i.e. under `cargo test --all-targets`) it runs a small smoke version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ecg_alerts::config::{NamedReceiver, Rotation, Route, ServiceConfig, StoreConfig, Team};
use ecg_alerts::receivers::webhook::{verify_request, WebhookConfig};
use ecg_alerts::receivers::{ReceiverConfig, Secret};
use ecg_alerts::service::{AlertService, Hooks};
use ecg_alerts::store::{AlertRecord, Store};
use ecg_alerts::{AlertEngine, RuleSet};
use ecg_types::{
    Alert, AlertState, Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, Lead,
    PatientId, StreamId, Strip,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

const T0_US: i64 = 1_800_000_000_000_000;
/// Rhythm windows: 10 s long, every 5 s.
const HOP_US: i64 = 5_000_000;
const WIN_US: i64 = 10_000_000;
/// `af-rr`: 30 s of RR intervals every 10 s.
const MODEL_LEN_US: i64 = 30_000_000;
const SECRET: &str = "bench-webhook-secret";
const GROUP_WAIT_S: u64 = 30;
const POOL: u32 = 8;
/// Per window, the chance that a stream without an episode starts one.
const EPISODE_START_P: f64 = 0.005;
/// Probe streams the latency probe cycles through.
const PROBE_STREAMS: usize = 50;
const TARGET_P99: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------
// Options.

#[derive(Debug)]
struct Args {
    streams: usize,
    seconds: u64,
    postgres: bool,
    probes: usize,
    probe_rate: f64,
    feeders: Vec<usize>,
    bench: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        streams: 1000,
        seconds: 300,
        postgres: true,
        probes: 1000,
        probe_rate: 50.0,
        feeders: vec![1, 2, 4],
        bench: false,
    };
    let (mut streams, mut seconds, mut probes) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => a.bench = true,
            "--no-postgres" => a.postgres = false,
            "--streams" => streams = Some(value("--streams").parse().expect("--streams: a count")),
            "--seconds" => seconds = Some(value("--seconds").parse().expect("--seconds: seconds")),
            "--probes" => probes = Some(value("--probes").parse().expect("--probes: a count")),
            "--probe-rate" => {
                a.probe_rate = value("--probe-rate")
                    .parse()
                    .expect("--probe-rate: alerts per second");
            }
            "--feeders" => {
                a.feeders = value("--feeders")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--feeders: e.g. 1,2,4"))
                    .collect();
            }
            // Filters and flags cargo or libtest conventions may pass: ignored.
            _ => {}
        }
    }
    if !a.bench {
        // `cargo test --all-targets` runs bench binaries without `--bench`: smoke size.
        a.streams = 50;
        a.seconds = 60;
        a.probes = 40;
        a.probe_rate = 200.0;
    }
    a.streams = streams.unwrap_or(a.streams);
    a.seconds = seconds.unwrap_or(a.seconds);
    a.probes = probes.unwrap_or(a.probes);
    assert!(a.streams > 0 && a.seconds >= 10 && a.probes > 0 && a.probe_rate > 0.0);
    assert!(!a.feeders.is_empty() && a.feeders.iter().all(|&k| k > 0));
    if !a.feeders.contains(&1) {
        // The one-task run gives the rows of the insert baseline.
        a.feeders.insert(0, 1);
    }
    a
}

// ---------------------------------------------------------------------------------
// The finding stream.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    Brady,
    Tachy,
    Af,
    Pvcs,
    Pause,
    Asystole,
    Vt,
    LeadOff,
}

/// Episode kinds and their weights.
const EPISODES: [(Episode, u32); 8] = [
    (Episode::Brady, 20),
    (Episode::Tachy, 20),
    (Episode::Af, 20),
    (Episode::Pvcs, 10),
    (Episode::Pause, 5),
    (Episode::Asystole, 5),
    (Episode::Vt, 5),
    (Episode::LeadOff, 15),
];

/// One simulated stream: what the pipeline publishes for it, window by window.
#[derive(Debug)]
struct StreamGen {
    stream: StreamId,
    patient: PatientId,
    rng: ChaCha8Rng,
    /// The episode and the windows it still lasts.
    episode: Option<(Episode, u32)>,
    /// Windows after a VT episode whose VT call is still reported (absent).
    vt_clear: u32,
    base_hr: f32,
    rhythm: FindingSource,
    model: FindingSource,
    strip: Arc<Vec<i32>>,
}

impl StreamGen {
    fn new(prefix: &str, i: usize, seed: u64, strip: Arc<Vec<i32>>) -> Self {
        Self {
            stream: StreamId::new(format!("{prefix}-{i}")).expect("stream id"),
            patient: PatientId::new(format!("pat-{prefix}-{i}")).expect("patient id"),
            rng: ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            episode: None,
            vt_clear: 0,
            base_hr: 58.0 + (i % 40) as f32,
            rhythm: FindingSource::Detector {
                name: "rhythm".into(),
            },
            model: FindingSource::Model {
                id: "af-rr".into(),
                version: "1.0.0".into(),
            },
            strip,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        model: bool,
        condition: Condition,
        status: FindingStatus,
        start: DeviceTimeUs,
        end: DeviceTimeUs,
        value: Option<f32>,
        score: Option<f32>,
    ) -> Finding {
        let source = if model { &self.model } else { &self.rhythm };
        let strip = (status == FindingStatus::Present && !condition.is_technical()).then(|| {
            Box::new(Strip {
                lead: Lead::II,
                sample_rate_hz: 250,
                start_us: end.0 - WIN_US,
                samples_uv: self.strip.as_ref().clone(),
                more: Vec::new(),
                pace_us: Vec::new(),
            })
        });
        Finding {
            key: Finding::make_key(&self.stream, source, condition, start),
            stream: self.stream.clone(),
            patient: self.patient.clone(),
            source: source.clone(),
            condition,
            status,
            window_start: start,
            window_end: end,
            score,
            value,
            decision_support: model,
            shadow: false,
            strip,
            reason: None,
            episode_start: None,
            episode_end: None,
        }
    }

    /// The findings of rhythm window `k` (and of the model window ending with it).
    fn window(&mut self, k: i64, out: &mut Vec<Finding>) {
        use Episode as E;
        use FindingStatus::{Absent, Indeterminate, Present};
        if self.episode.is_none() && self.rng.random_bool(EPISODE_START_P) {
            let total: u32 = EPISODES.iter().map(|e| e.1).sum();
            let mut pick = self.rng.random_range(0..total);
            let kind = EPISODES
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(E::Brady, |e| e.0);
            self.episode = Some((kind, self.rng.random_range(2..=10)));
        }
        let ep = self.episode.map(|e| e.0);
        let start = DeviceTimeUs(T0_US + k * HOP_US);
        let end = start.plus_us(WIN_US);
        let jitter: f32 = self.rng.random_range(-3.0..3.0);
        let hr = match ep {
            Some(E::Brady) => 37.0,
            Some(E::Tachy) => 142.0,
            Some(E::Vt) => 186.0,
            _ => self.base_hr,
        } + jitter;
        let analysable = !matches!(ep, Some(E::Asystole | E::LeadOff));
        let status = |present: bool| match (analysable, present) {
            (false, _) => Indeterminate,
            (true, true) => Present,
            (true, false) => Absent,
        };
        let calls = [
            (Condition::Bradycardia, ep == Some(E::Brady), hr),
            (
                Condition::Tachycardia,
                matches!(ep, Some(E::Tachy | E::Vt)),
                hr,
            ),
            (Condition::AtrialFibrillation, ep == Some(E::Af), 0.04),
            (Condition::FrequentPvcs, ep == Some(E::Pvcs), 0.5),
        ];
        for (c, present, v) in calls {
            let st = status(present);
            let value = (st != Indeterminate).then_some(v);
            out.push(self.finding(false, c, st, start, end, value, None));
        }
        let lead_off = if ep == Some(E::LeadOff) {
            Present
        } else {
            Absent
        };
        out.push(self.finding(false, Condition::LeadOff, lead_off, start, end, None, None));
        match ep {
            Some(E::Pause) | Some(E::Asystole) => {
                // A pause event inside the window, as the detector reports it.
                let (c, len) = if ep == Some(E::Pause) {
                    (Condition::Pause, 2.7)
                } else {
                    (Condition::Asystole, 5.4)
                };
                let at = start.plus_us(3_000_000);
                let until = at.plus_us((f64::from(len) * 1e6) as i64);
                out.push(self.finding(false, c, Present, at, until, Some(len), None));
            }
            Some(E::LeadOff) => {}
            _ => {
                let longest = 60.0 / hr * 1.1;
                for c in [Condition::Pause, Condition::Asystole] {
                    out.push(self.finding(false, c, Absent, start, end, Some(longest), None));
                }
            }
        }
        let vt = if ep == Some(E::Vt) {
            self.vt_clear = 2;
            Some(Present)
        } else if self.vt_clear > 0 {
            self.vt_clear -= 1;
            Some(Absent)
        } else {
            None
        };
        if let Some(st) = vt {
            let c = Condition::VentricularTachycardia;
            out.push(self.finding(false, c, st, start, end, Some(hr), None));
        }
        if k % 2 == 1 {
            // The model grid: every 10 s of device time, 30 s of RR intervals.
            let (st, score) = match ep {
                Some(E::Af) => (Present, Some(0.93)),
                _ if !analysable => (Indeterminate, None),
                _ => (Absent, Some(0.04)),
            };
            let m_start = end.plus_us(-MODEL_LEN_US);
            let c = Condition::AtrialFibrillation;
            out.push(self.finding(true, c, st, m_start, end, None, score));
        }
        if let Some((kind, left)) = self.episode {
            self.episode = (left > 1).then_some((kind, left - 1));
        }
    }
}

/// A rhythm strip's samples: 10 s at 250 Hz of a QRS-like spike train on a wander, µV.
fn strip_samples() -> Arc<Vec<i32>> {
    Arc::new(
        (0..2500)
            .map(|n| {
                let t = f64::from(n) / 250.0;
                let phase = (t * 1.2).fract();
                let qrs = if phase < 0.04 {
                    1200.0 * (phase / 0.04 * std::f64::consts::PI).sin()
                } else {
                    0.0
                };
                (qrs + 80.0 * (t * 0.3).sin() + 15.0 * (t * 50.0).sin()).round() as i32
            })
            .collect(),
    )
}

/// All findings of `streams` streams over `windows` windows, in device-time order.
#[derive(Debug)]
struct Workload {
    findings: Vec<Finding>,
    /// Stream index of each finding (feeders split the streams by it).
    stream_of: Vec<u32>,
}

fn workload(streams: usize, windows: i64, seed: u64) -> Workload {
    let strip = strip_samples();
    let mut gens: Vec<StreamGen> = (0..streams)
        .map(|i| StreamGen::new("bed", i, seed, Arc::clone(&strip)))
        .collect();
    let mut findings = Vec::new();
    let mut stream_of = Vec::new();
    let mut buf = Vec::new();
    for k in 0..windows {
        for (i, g) in gens.iter_mut().enumerate() {
            g.window(k, &mut buf);
            stream_of.extend(std::iter::repeat_n(i as u32, buf.len()));
            findings.append(&mut buf);
        }
    }
    Workload {
        findings,
        stream_of,
    }
}

// ---------------------------------------------------------------------------------
// The webhook peer, hooks and the service.

/// A webhook receiver that accepts only correctly signed notifications and times the
/// `fired` notifications of probe alerts.
#[derive(Debug, Default)]
struct Peer {
    /// Probe alert id → when its finding was handed to `on_finding`.
    sent: Mutex<HashMap<String, Instant>>,
    latencies: Mutex<Vec<Duration>>,
    fired: AtomicU64,
    resolved: AtomicU64,
    other: AtomicU64,
    rejected: AtomicU64,
}

impl Peer {
    fn reset(&self) {
        self.sent.lock().expect("lock").clear();
        self.latencies.lock().expect("lock").clear();
        for c in [&self.fired, &self.resolved, &self.other, &self.rejected] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

async fn hook(
    State(peer): State<Arc<Peer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let at = Instant::now();
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !verify_request(SECRET.as_bytes(), &headers, &body)
        || serde_json::from_slice::<serde_json::Value>(&body).is_err()
    {
        peer.rejected.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    // `<alert id>/<event>/<level>`; alert ids contain slashes.
    let mut parts = h("idempotency-key").rsplitn(3, '/');
    let (_level, event, id) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    match event {
        Some("fired") => {
            peer.fired.fetch_add(1, Ordering::Relaxed);
            let sent = peer.sent.lock().expect("lock").remove(id);
            if let Some(t0) = sent {
                peer.latencies.lock().expect("lock").push(at - t0);
            }
        }
        Some("resolved") => {
            peer.resolved.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            peer.other.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::NO_CONTENT
}

/// Starts the peer on its own thread and runtime (it stands for another machine);
/// returns its URL.
fn start_peer(peer: Arc<Peer>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("webhook-peer".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("peer runtime");
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/hook", axum::routing::post(hook))
                    .with_state(peer);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind peer");
                tx.send(listener.local_addr().expect("peer addr"))
                    .expect("peer addr to main");
                axum::serve(listener, app).await.expect("peer serve");
            });
        })
        .expect("peer thread");
    format!("http://{}/hook", rx.recv().expect("peer started"))
}

/// Counts what the service reports.
#[derive(Debug, Default)]
struct BenchHooks {
    created: AtomicU64,
    notified: AtomicU64,
    resolved: AtomicU64,
    deliveries_ok: AtomicU64,
    deliveries_failed: AtomicU64,
    /// `since_finding` of finding-caused deliveries.
    since_finding: Mutex<Vec<Duration>>,
}

impl Hooks for BenchHooks {
    fn alert(&self, a: &Alert) {
        let c = match a.state {
            AlertState::Firing => &self.created,
            AlertState::Notified => &self.notified,
            AlertState::Resolved => &self.resolved,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn delivery(&self, _kind: &str, ok: bool, since_finding: Option<Duration>) {
        if ok {
            self.deliveries_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.deliveries_failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = since_finding {
            self.since_finding.lock().expect("lock").push(d);
        }
    }
}

impl BenchHooks {
    fn deliveries(&self) -> u64 {
        self.deliveries_ok.load(Ordering::Relaxed) + self.deliveries_failed.load(Ordering::Relaxed)
    }
}

/// The service's config: the deployable's shape, one webhook receiver.
fn config(store_url: &str, peer_url: &str) -> ServiceConfig {
    let start = humantime_epoch();
    ServiceConfig {
        store: StoreConfig {
            url: store_url.to_owned(),
            max_connections: POOL,
        },
        teams: vec![Team {
            name: "telemetry".into(),
            oncall: Some(Rotation {
                members: vec!["nurse-a".into(), "nurse-b".into(), "nurse-c".into()],
                shift_hours: 8,
                start,
            }),
        }],
        default_team: "telemetry".into(),
        route: Route {
            receivers: Some(vec!["ward".into()]),
            group_wait_s: Some(GROUP_WAIT_S),
            ..Route::default()
        },
        receivers: vec![NamedReceiver {
            name: "ward".into(),
            config: ReceiverConfig::Webhook(WebhookConfig {
                url: peer_url.to_owned(),
                secret_env: None,
                secret: Some(Secret::new(SECRET)),
                timeout_ms: 2000,
                max_attempts: 5,
                backoff_ms: 200,
                max_backoff_ms: 10_000,
            }),
        }],
        console_url: Some("https://console.example.invalid".into()),
        ..ServiceConfig::default()
    }
}

/// 2026-01-01T00:00:00Z, the start of the on-call rotation.
fn humantime_epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// Where fresh databases come from.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(PathBuf),
    /// The admin URL.
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(..) => "postgres",
        }
    }

    /// A fresh, empty database; returns its URL.
    async fn fresh(&self, tag: &str) -> String {
        let suffix = format!("{tag}_{:012x}", rand::random::<u64>() >> 16);
        match self {
            Backend::Sqlite(dir) => {
                format!("sqlite://{}/{suffix}.db", dir.display())
            }
            Backend::Postgres(admin) => {
                Store::create_postgres_database(admin, &format!("cs_bench_{suffix}"))
                    .await
                    .expect("create database")
            }
        }
    }

    /// Removes a database made by `fresh`.
    async fn remove(&self, url: &str) {
        match self {
            Backend::Sqlite(_) => {
                let path = url.trim_start_matches("sqlite://");
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{ext}"));
                }
            }
            Backend::Postgres(admin) => {
                let name = url.rsplit('/').next().unwrap_or_default();
                let name = name.split('?').next().unwrap_or_default();
                let pool = sqlx::AnyPool::connect(admin).await.expect("postgres admin");
                if let Err(e) = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&pool)
                    .await
                {
                    println!("  (could not drop {name}: {e})");
                }
                pool.close().await;
            }
        }
    }
}

async fn service(url: &str, peer_url: &str, hooks: Arc<BenchHooks>) -> Arc<AlertService> {
    let cfg = config(url, peer_url);
    let store = Store::open(url, cfg.store.max_connections)
        .await
        .expect("open store");
    Arc::new(AlertService::new(cfg, store, "bench", hooks).expect("service"))
}

/// `tick()` every `tick_ms`, as the deployable runs it, until `stop`.
fn ticker(svc: Arc<AlertService>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(svc.config().tick_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut errors = 0;
        while !stop.load(Ordering::Relaxed) {
            every.tick().await;
            if let Err(e) = svc.tick().await {
                if errors == 0 {
                    println!("  tick failed: {e}");
                }
                errors += 1;
            }
        }
        errors
    })
}

/// Waits until no delivery has finished for 300 ms (at most 15 s).
async fn settle(hooks: &BenchHooks) {
    let t = Instant::now();
    let mut last = (hooks.deliveries(), Instant::now());
    while t.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = hooks.deliveries();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(300) {
            return;
        }
    }
}

/// One finding through the service; a store error is counted (a retry would be a
/// no-op: the engine has already taken the finding, see docs/performance.md).
async fn apply(svc: &Arc<AlertService>, f: &Finding, errors: &AtomicU64) {
    if let Err(e) = svc.on_finding(f, Instant::now()).await {
        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
            println!("  on_finding failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Measurements.

/// One throughput run.
#[derive(Debug, Clone, serde::Serialize)]
struct Throughput {
    feeders: usize,
    findings: usize,
    seconds: f64,
    findings_per_s: f64,
    alerts_created: u64,
    alerts_resolved: u64,
    alerts_notified: u64,
    deliveries_ok: u64,
    deliveries_failed: u64,
    store_errors: u64,
    tick_errors: u64,
    /// `on_finding` calls that created or resolved an alert (the ones that write to the
    /// store), and the time spent in them, summed over feeders.
    changing_calls: u64,
    changing_seconds: f64,
    /// The other calls (engine only: nothing written), and their time.
    plain_calls: u64,
    plain_seconds: f64,
}

async fn throughput(
    backend: &Backend,
    peer_url: &str,
    w: &Arc<Workload>,
    feeders: usize,
) -> (Throughput, Vec<AlertRecord>) {
    let url = backend.fresh(&format!("tp{feeders}")).await;
    let hooks = Arc::new(BenchHooks::default());
    let svc = service(&url, peer_url, Arc::clone(&hooks)).await;
    let parts: Vec<Vec<u32>> = (0..feeders)
        .map(|j| {
            (0..w.findings.len() as u32)
                .filter(|&i| w.stream_of[i as usize] as usize % feeders == j)
                .collect()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tick = ticker(Arc::clone(&svc), Arc::clone(&stop));
    let errors = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = parts
        .into_iter()
        .map(|idx| {
            let (svc, w, errors) = (Arc::clone(&svc), Arc::clone(w), Arc::clone(&errors));
            let hooks = Arc::clone(&hooks);
            tokio::spawn(async move {
                // (calls, time) of calls that changed an alert, then of the others.
                let mut split = [(0u64, Duration::ZERO); 2];
                let changes = || {
                    hooks.created.load(Ordering::Relaxed) + hooks.resolved.load(Ordering::Relaxed)
                };
                for i in idx {
                    let before = changes();
                    let t = Instant::now();
                    apply(&svc, &w.findings[i as usize], &errors).await;
                    let s = &mut split[usize::from(changes() == before)];
                    s.0 += 1;
                    s.1 += t.elapsed();
                }
                split
            })
        })
        .collect();
    let mut split = [(0u64, Duration::ZERO); 2];
    for task in tasks {
        for (sum, part) in split.iter_mut().zip(task.await.expect("feeder")) {
            sum.0 += part.0;
            sum.1 += part.1;
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    settle(&hooks).await;
    stop.store(true, Ordering::Relaxed);
    let tick_errors = tick.await.expect("ticker");
    let rows = if feeders == 1 {
        svc.store()
            .list(&[], None, None, i64::MAX)
            .await
            .expect("list alerts")
    } else {
        Vec::new()
    };
    let r = Throughput {
        feeders,
        findings: w.findings.len(),
        seconds,
        findings_per_s: w.findings.len() as f64 / seconds,
        alerts_created: hooks.created.load(Ordering::Relaxed),
        alerts_resolved: hooks.resolved.load(Ordering::Relaxed),
        alerts_notified: hooks.notified.load(Ordering::Relaxed),
        deliveries_ok: hooks.deliveries_ok.load(Ordering::Relaxed),
        deliveries_failed: hooks.deliveries_failed.load(Ordering::Relaxed),
        store_errors: errors.load(Ordering::Relaxed),
        tick_errors,
        changing_calls: split[0].0,
        changing_seconds: split[0].1.as_secs_f64(),
        plain_calls: split[1].0,
        plain_seconds: split[1].1.as_secs_f64(),
    };
    drop(svc);
    backend.remove(&url).await;
    (r, rows)
}

/// `Store::insert` alone, one task, of the given rows (as they were when they fired).
#[derive(Debug, Clone, serde::Serialize)]
struct InsertAlone {
    rows: usize,
    seconds: f64,
    rows_per_s: f64,
    ms_per_row: f64,
    errors: u64,
}

async fn insert_alone(backend: &Backend, rows: &[AlertRecord]) -> InsertAlone {
    let url = backend.fresh("insert").await;
    let store = Store::open(&url, POOL).await.expect("open store");
    let rows: Vec<AlertRecord> = rows
        .iter()
        .map(|r| AlertRecord {
            state: AlertState::Firing,
            updated_ms: r.fired_ms,
            notified_ms: None,
            level: 0,
            due_ms: (r.priority != ecg_types::Priority::High)
                .then(|| r.fired_ms + GROUP_WAIT_S as i64 * 1000),
            ..r.clone()
        })
        .collect();
    let now = SystemTime::now();
    let t = Instant::now();
    let mut errors = 0;
    for r in &rows {
        match store.insert(r, now).await {
            Ok(inserted) => assert!(inserted, "fresh row"),
            Err(e) => {
                if errors == 0 {
                    println!("  insert failed: {e}");
                }
                errors += 1;
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    drop(store);
    backend.remove(&url).await;
    InsertAlone {
        rows: rows.len(),
        seconds,
        rows_per_s: rows.len() as f64 / seconds,
        ms_per_row: seconds * 1e3 / rows.len().max(1) as f64,
        errors,
    }
}

/// `AlertEngine::on_finding` alone: rules, hysteresis, grouping, inhibition, no store.
#[derive(Debug, Clone, serde::Serialize)]
struct EngineAlone {
    seconds: f64,
    findings_per_s: f64,
    alerts_fired: u64,
    alerts_resolved: u64,
}

fn engine_alone(w: &Workload) -> EngineAlone {
    let mut e = AlertEngine::new(RuleSet::default());
    let (mut fired, mut resolved) = (0, 0);
    let t = Instant::now();
    for f in &w.findings {
        for a in e.on_finding(std::hint::black_box(f), SystemTime::now()) {
            match a.state {
                AlertState::Firing => fired += 1,
                AlertState::Resolved => resolved += 1,
                _ => {}
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    EngineAlone {
        seconds,
        findings_per_s: w.findings.len() as f64 / seconds,
        alerts_fired: fired,
        alerts_resolved: resolved,
    }
}

/// How the background findings of a latency run are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Background {
    /// One task, as fast as it goes (as in the throughput run).
    FlatOut,
    /// The rate `--streams` streams produce in real time.
    RealTime,
}

impl Background {
    fn name(self) -> &'static str {
        match self {
            Background::FlatOut => "flat-out",
            Background::RealTime => "real-time",
        }
    }
}

/// One latency run.
#[derive(Debug, Clone, serde::Serialize)]
struct Latency {
    background: &'static str,
    background_findings: u64,
    background_findings_per_s: f64,
    background_alerts_created: u64,
    probes: usize,
    delivered: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// `Hooks::delivery` `since_finding` of every finding-caused delivery (probe and
    /// background, fired and resolved), taken when the HTTP response is back.
    hooks_deliveries: usize,
    hooks_p50_ms: f64,
    hooks_p99_ms: f64,
    hooks_max_ms: f64,
    peer_fired: u64,
    peer_resolved: u64,
    peer_other: u64,
    peer_rejected: u64,
    store_errors: u64,
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
async fn latency(
    backend: &Backend,
    peer: &Arc<Peer>,
    peer_url: &str,
    args: &Args,
    background: Background,
) -> Latency {
    let url = backend
        .fresh(&format!("lat_{}", background.name().replace('-', "_")))
        .await;
    let hooks = Arc::new(BenchHooks::default());
    let svc = service(&url, peer_url, Arc::clone(&hooks)).await;
    peer.reset();
    let stop = Arc::new(AtomicBool::new(false));
    let tick = ticker(Arc::clone(&svc), Arc::clone(&stop));
    let errors = Arc::new(AtomicU64::new(0));

    // The background: the same kind of streams, generated window by window as they go.
    let bg_count = Arc::new(AtomicU64::new(0));
    let bg = {
        let (svc, stop, errors, count) = (
            Arc::clone(&svc),
            Arc::clone(&stop),
            Arc::clone(&errors),
            Arc::clone(&bg_count),
        );
        let streams = args.streams;
        tokio::spawn(async move {
            let strip = strip_samples();
            let mut gens: Vec<StreamGen> = (0..streams)
                .map(|i| StreamGen::new("bg", i, 7, Arc::clone(&strip)))
                .collect();
            let mut buf = Vec::new();
            let t0 = tokio::time::Instant::now();
            let hop = Duration::from_micros(HOP_US as u64);
            for k in 0.. {
                for (i, g) in gens.iter_mut().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if background == Background::RealTime {
                        // Stream i's window k closes at k·5 s + i/N of a hop.
                        let due = hop.mul_f64(k as f64 + i as f64 / streams as f64);
                        tokio::time::sleep_until(t0 + due).await;
                    }
                    g.window(k, &mut buf);
                    for f in buf.drain(..) {
                        apply(&svc, &f, &errors).await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // Let the background get going, then probe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let bg_start = bg_count.load(Ordering::Relaxed);
    let probe = Prober::new();
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / args.probe_rate));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..args.probes {
        every.tick().await;
        probe.step(&svc, peer, i, &errors).await;
    }
    // Wait for the last fired notifications.
    let wait = Instant::now();
    while peer.latencies.lock().expect("lock").len() < args.probes
        && wait.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = t.elapsed().as_secs_f64();
    let bg_findings = bg_count.load(Ordering::Relaxed) - bg_start;
    stop.store(true, Ordering::Relaxed);
    bg.await.expect("background");
    settle(&hooks).await;
    let tick_errors = tick.await.expect("ticker");
    if tick_errors > 0 {
        println!("  {tick_errors} tick errors");
    }
    let mut lat = peer.latencies.lock().expect("lock").clone();
    let mut since = hooks.since_finding.lock().expect("lock").clone();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    lat.sort();
    since.sort();
    let r = Latency {
        background: background.name(),
        background_findings: bg_findings,
        background_findings_per_s: bg_findings as f64 / seconds,
        background_alerts_created: hooks
            .created
            .load(Ordering::Relaxed)
            .saturating_sub(args.probes as u64),
        probes: args.probes,
        delivered: lat.len(),
        p50_ms: ms(quantile(&lat, 0.50)),
        p90_ms: ms(quantile(&lat, 0.90)),
        p99_ms: ms(quantile(&lat, 0.99)),
        max_ms: ms(lat.last().copied().unwrap_or_default()),
        hooks_deliveries: since.len(),
        hooks_p50_ms: ms(quantile(&since, 0.50)),
        hooks_p99_ms: ms(quantile(&since, 0.99)),
        hooks_max_ms: ms(since.last().copied().unwrap_or_default()),
        peer_fired: peer.fired.load(Ordering::Relaxed),
        peer_resolved: peer.resolved.load(Ordering::Relaxed),
        peer_other: peer.other.load(Ordering::Relaxed),
        peer_rejected: peer.rejected.load(Ordering::Relaxed),
        store_errors: errors.load(Ordering::Relaxed),
        seconds,
    };
    drop(svc);
    backend.remove(&url).await;
    r
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The latency probe: asystole alerts on `PROBE_STREAMS` streams in turn; each visit
/// first clears the stream's previous alert (two absent windows), then raises a new one.
#[derive(Debug)]
struct Prober {
    gens: Vec<StreamGen>,
}

impl Prober {
    fn new() -> Self {
        let strip = strip_samples();
        Self {
            gens: (0..PROBE_STREAMS)
                .map(|i| StreamGen::new("probe", i, 11, Arc::clone(&strip)))
                .collect(),
        }
    }

    async fn step(&self, svc: &Arc<AlertService>, peer: &Peer, i: usize, errors: &AtomicU64) {
        let g = &self.gens[i % PROBE_STREAMS];
        let round = (i / PROBE_STREAMS) as i64;
        let at = |k: i64| {
            let start = DeviceTimeUs(T0_US + k * HOP_US);
            (start, start.plus_us(WIN_US))
        };
        let c = Condition::Asystole;
        if round > 0 {
            for k in [3 * round - 2, 3 * round - 1] {
                let (s, e) = at(k);
                let f = g.finding(false, c, FindingStatus::Absent, s, e, Some(0.9), None);
                apply(svc, &f, errors).await;
            }
        }
        let (s, e) = at(3 * round);
        let f = g.finding(false, c, FindingStatus::Present, s, e, Some(5.4), None);
        let id = format!("{}/{}/dsp/{}", f.stream, f.condition, f.window_start.0);
        let consumed = Instant::now();
        peer.sent.lock().expect("lock").insert(id, consumed);
        if let Err(e) = svc.on_finding(&f, consumed).await {
            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                println!("  on_finding failed: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Report.

/// Everything measured on one store.
#[derive(Debug, serde::Serialize)]
struct StoreReport {
    store: &'static str,
    throughput: Vec<Throughput>,
    insert_alone: InsertAlone,
    latency: Vec<Latency>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

async fn measure_store(
    backend: &Backend,
    peer: &Arc<Peer>,
    peer_url: &str,
    w: &Arc<Workload>,
    args: &Args,
) -> StoreReport {
    println!("\n== {} (load average {})", backend.name(), loadavg());
    println!(
        "{:<9} {:>8} {:>12} {:>8} {:>8} {:>9} {:>9} {:>11} {:>7}",
        "run",
        "feeders",
        "findings/s",
        "seconds",
        "alerts",
        "resolved",
        "notified",
        "deliveries",
        "errors"
    );
    let mut throughput = Vec::new();
    let mut rows = Vec::new();
    for &k in &args.feeders {
        let (r, created) = self::throughput(backend, peer_url, w, k).await;
        println!(
            "{:<9} {:>8} {:>12.0} {:>8.2} {:>8} {:>9} {:>9} {:>11} {:>7}",
            "service",
            r.feeders,
            r.findings_per_s,
            r.seconds,
            r.alerts_created,
            r.alerts_resolved,
            r.alerts_notified,
            r.deliveries_ok + r.deliveries_failed,
            r.store_errors + r.deliveries_failed + r.tick_errors
        );
        if k == 1 {
            rows = created;
        }
        throughput.push(r);
    }
    let ins = insert_alone(backend, &rows).await;
    println!(
        "insert alone (Store::insert, one task, the {} rows of the 1-feeder run): {:.3} s, \
         {:.0} rows/s, {:.2} ms/row, {} errors",
        ins.rows, ins.seconds, ins.rows_per_s, ins.ms_per_row, ins.errors
    );
    println!(
        "\n{:<10} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8}   {:>9} {:>9} {:>6}",
        "background",
        "bg f/s",
        "probes",
        "delivered",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "hooks p99",
        "hooks max",
        "n"
    );
    let mut latency = Vec::new();
    for bg in [Background::FlatOut, Background::RealTime] {
        let l = self::latency(backend, peer, peer_url, args, bg).await;
        println!(
            "{:<10} {:>9.0} {:>7} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.1}   {:>9.1} {:>9.1} {:>6}{}",
            l.background,
            l.background_findings_per_s,
            l.probes,
            l.delivered,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            l.hooks_p99_ms,
            l.hooks_max_ms,
            l.hooks_deliveries,
            if l.store_errors + l.peer_rejected > 0 {
                format!(
                    "  ({} store errors, {} rejected)",
                    l.store_errors, l.peer_rejected
                )
            } else {
                String::new()
            }
        );
        latency.push(l);
    }
    for l in &latency {
        let met = l.delivered == l.probes && l.p99_ms < TARGET_P99.as_secs_f64() * 1e3;
        println!(
            "  {} background: p99 {:.1} ms over {} high-priority alerts ({} background alerts \
             fired meanwhile): target p99 < {} ms {}",
            l.background,
            l.p99_ms,
            l.delivered,
            l.background_alerts_created,
            TARGET_P99.as_millis(),
            if met { "met" } else { "NOT met" }
        );
    }
    StoreReport {
        store: backend.name(),
        throughput,
        insert_alone: ins,
        latency,
    }
}

fn main() {
    let args = parse_args();
    let windows = (args.seconds as i64 * 1_000_000 / HOP_US).max(2);
    let t = Instant::now();
    let w = Arc::new(workload(args.streams, windows, 1));
    let gen_s = t.elapsed().as_secs_f64();
    let count = |st: FindingStatus| w.findings.iter().filter(|f| f.status == st).count();
    let n = w.findings.len();
    let pct = |x: usize| 100.0 * x as f64 / n as f64;
    let models = w.findings.iter().filter(|f| f.decision_support).count();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("alert service bench (issue #6 item 8)");
    println!(
        "findings: {} streams x {} s of device time ({windows} windows of 10 s every 5 s) = {n} \
         findings ({:.1} % absent, {:.2} % present, {:.1} % indeterminate; {:.1} % from the af-rr \
         model), generated in {gen_s:.1} s",
        args.streams,
        args.seconds,
        pct(count(FindingStatus::Absent)),
        pct(count(FindingStatus::Present)),
        pct(count(FindingStatus::Indeterminate)),
        pct(models),
    );
    println!(
        "route: one webhook receiver, group_wait_s = {GROUP_WAIT_S} (high priority: none), \
         tick every 500 ms; pool {POOL} connections; {cpus} CPUs, load average {}",
        loadavg()
    );
    let eng = engine_alone(&w);
    println!(
        "engine alone (AlertEngine::on_finding, no store): {:.0} findings/s ({:.3} s), {} \
         alerts fired, {} resolved",
        eng.findings_per_s, eng.seconds, eng.alerts_fired, eng.alerts_resolved
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let peer = Arc::new(Peer::default());
    let peer_url = start_peer(Arc::clone(&peer));
    sqlx::any::install_default_drivers();

    let dir = support::target_dir().join("tmp").join("alerts-bench");
    std::fs::create_dir_all(&dir).expect("target/tmp/alerts-bench");
    let mut backends = vec![Backend::Sqlite(dir)];
    let mut pg_skipped = None;
    match (args.postgres, std::env::var("CARDIOSTREAM_TEST_PG")) {
        (false, _) => pg_skipped = Some("--no-postgres".to_owned()),
        (true, Ok(admin)) if !admin.is_empty() => {
            backends.push(Backend::Postgres(admin));
        }
        (true, _) => {
            pg_skipped = Some(
                "CARDIOSTREAM_TEST_PG is not set (scripts/setup/postgres.sh starts a server \
                 and prints the URL to export)"
                    .to_owned(),
            );
        }
    }
    if let Some(why) = &pg_skipped {
        println!("postgres: skipped: {why}");
    }

    let reports: Vec<StoreReport> = rt.block_on(async {
        let mut v = Vec::new();
        for b in &backends {
            v.push(measure_store(b, &peer, &peer_url, &w, &args).await);
        }
        v
    });

    println!(
        "\nsummary (findings/s through rules, routing and the store; ratios to the baselines):"
    );
    for r in &reports {
        let one = &r.throughput[0];
        let best = r
            .throughput
            .iter()
            .map(|t| t.findings_per_s)
            .fold(0.0, f64::max);
        println!(
            "  {:<8} 1 feeder {:>9.0} findings/s = {:.2} of the engine alone; its {:.2} s hold \
             {:.2} s of bare inserts ({} rows) and {:.2} s of engine: {:.1}x their sum; best of \
             {:?} feeders {:.0} findings/s",
            r.store,
            one.findings_per_s,
            one.findings_per_s / eng.findings_per_s,
            one.seconds,
            r.insert_alone.seconds,
            r.insert_alone.rows,
            eng.seconds,
            one.seconds / (r.insert_alone.seconds + eng.seconds),
            args.feeders,
            best
        );
    }
    for r in &reports {
        let one = &r.throughput[0];
        println!(
            "  {:<8} 1 feeder's {:.2} s: {:.2} s in the {} on_finding calls that created or \
             resolved an alert ({:.2} ms each), {:.2} s in the other {} ({:.2} us each; the \
             engine alone: {:.2} us per finding), {:.2} s in the feeding loop",
            r.store,
            one.seconds,
            one.changing_seconds,
            one.changing_calls,
            one.changing_seconds * 1e3 / one.changing_calls.max(1) as f64,
            one.plain_seconds,
            one.plain_calls,
            one.plain_seconds * 1e6 / one.plain_calls.max(1) as f64,
            eng.seconds * 1e6 / n as f64,
            one.seconds - one.changing_seconds - one.plain_seconds
        );
    }
    println!("load average at the end: {}", loadavg());

    if args.bench {
        let line = serde_json::json!({
            "bench": "alerts",
            "streams": args.streams,
            "device_seconds": args.seconds,
            "findings": n,
            "probes": args.probes,
            "probe_rate": args.probe_rate,
            "cpus": cpus,
            "engine_alone": eng,
            "stores": reports,
            "postgres_skipped": pg_skipped,
            "load_average_end": loadavg(),
            "unix_time": SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        support::append_json("alerts-bench.json", &line.to_string());
    }
}

//! Chaos under load for the alert service (docs/chaos.md): findings that page keep
//! arriving on Kafka while the store fails under the service, and each scenario ends
//! with a ledger of what was lost and who was paged twice, as heard by a webhook peer
//! that counts deliveries by idempotency key:
//!
//! - PostgreSQL stopped for 30 s while alerts fire (a private server, stopped and
//!   started with `pg_ctl`);
//! - the SQLite store's disk filled to ENOSPC (a small tmpfs; needs root);
//! - one of two `cardiostream alerts` processes on one PostgreSQL store SIGKILLed
//!   while it is notifying, again and again.
//!
//! Kafka is librdkafka's mock cluster. `CHAOS_LONG=1` runs the long versions
//! (`scripts/chaos.sh`). The scenarios take turns (one lock), so they do not compete
//! for the machine's two cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardiostream::config::Config;
use cardiostream::deployables;
use ecg_ingest::kafka;
use rand::{Rng as _, SeedableRng as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::chaos::{self, Ledger, PrivatePg, Tmpfs};
use support::Killed;
use tokio::sync::watch;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The in-process service's log (warnings and up), to count the store failures it
/// rode out: a fault that caused none was not injected.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

/// Lines of the captured log containing `what`.
fn logged(what: &str) -> usize {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .filter(|l| l.contains(what))
        .count()
}

const STORE_RETRY: &str = "alert store unavailable";

/// The distinct warnings and errors of the captured log (timestamps dropped), for a
/// failing scenario's report.
fn log_distinct() -> Vec<String> {
    let text = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    let mut seen = BTreeSet::new();
    for l in text.lines() {
        let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim();
        seen.insert(l.chars().take(400).collect::<String>());
    }
    seen.into_iter().collect()
}

const SECRET: &str = "chaos-secret";

fn long() -> bool {
    std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// The findings and alerts topics on a one-broker mock cluster.
struct Kafka {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: FutureProducer,
}

impl Kafka {
    fn new() -> Kafka {
        let cluster = MockCluster::new(1).unwrap();
        for t in ["ecg.findings.v1", "ecg.alerts.v1"] {
            cluster.create_topic(t, 2, 1).unwrap();
        }
        let producer = kafka::producer_config(&kafka::connection(&cluster.bootstrap_servers()), 5)
            .create()
            .unwrap();
        Kafka { cluster, producer }
    }

    fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Publishes one paging finding for `stream`, as the pipeline would; the finding.
    async fn page(&self, stream: &str) -> ecg_types::Finding {
        let f = chaos::paging_finding(stream);
        let payload = serde_json::to_vec(&f).unwrap();
        let rec = FutureRecord::to("ecg.findings.v1")
            .key(stream)
            .payload(&payload);
        kafka::enqueue(&self.producer, rec)
            .await
            .unwrap()
            .await
            .unwrap()
            .map_err(|(e, _)| e)
            .unwrap();
        f
    }
}

/// The alert service in process on `store`, reading the mock cluster and paging
/// `hook`, until [`InProcess::stop`].
struct InProcess {
    _dir: tempfile::TempDir,
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    fn start(kafka: &Kafka, store: &str, hook: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(Some(&config_file(
            dir.path(),
            &kafka.bootstrap(),
            store,
            hook,
        )))
        .unwrap();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(deployables::run_alerts(cfg, async move {
            let _ = stop_rx.changed().await;
        }));
        InProcess {
            _dir: dir,
            stop_tx,
            task,
        }
    }

    /// Asks the service to stop and waits for it, 30 s at most.
    async fn stop(self) -> Stopped {
        self.stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task).await
    }
}

/// How [`InProcess::stop`] ended.
type Stopped =
    Result<Result<anyhow::Result<()>, tokio::task::JoinError>, tokio::time::error::Elapsed>;

/// The end of a store-fault scenario: the fault (`fault`) failed some store writes,
/// no page was lost or paged twice, and the service stopped cleanly.
fn assert_store_fault_lost_nothing(
    v: &chaos::Verdict,
    retries: usize,
    fault: &str,
    stopped: Stopped,
) {
    assert!(
        retries > 0,
        "{fault} never failed a write: no fault injected"
    );
    if !v.lost.is_empty() {
        println!("the service's warnings:\n{}", log_distinct().join("\n"));
    }
    assert!(v.lost.is_empty(), "{v}");
    assert!(v.paged_twice.is_empty() && v.unexpected.is_empty(), "{v}");
    stopped
        .expect("the service stops within 30 s")
        .unwrap()
        .unwrap();
}

/// The alert service's configuration: the mock cluster, `store`, one webhook receiver
/// paged at once (no group wait), its own consumer group, which reads the findings
/// topic from the start (`start_offset = "earliest"`): pages are published as soon as
/// the service is spawned, before its consumer may have joined. The findings' windows
/// end when they are published, well within the default staleness horizon.
fn config_file(dir: &Path, bootstrap: &str, store: &str, hook: &str) -> PathBuf {
    let file = dir.join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = {bootstrap:?}\n\
             [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
             [http]\naddr = \"127.0.0.1:0\"\n\
             [alerts]\ngroup_id = {:?}\nstart_offset = \"earliest\"\n\
             [alerts.store]\nurl = {store:?}\n\
             [alerts.route]\nreceivers = [\"ward\"]\ngroup_wait_s = 0\n\
             [[alerts.receivers]]\nname = \"ward\"\nkind = \"webhook\"\nurl = {hook:?}\nsecret = {SECRET:?}\n",
            support::tansu::unique("chaos-alerts"),
        ),
    )
    .unwrap();
    file
}

/// Waits until every expected stream paged (or `timeout`), then listens `quiet` more
/// for late duplicates; the ledger.
async fn settle(
    expected: &BTreeSet<String>,
    heard: &Arc<Mutex<Vec<String>>>,
    timeout: Duration,
    quiet: Duration,
) -> Ledger {
    let deadline = Instant::now() + timeout;
    loop {
        let l = Ledger {
            expected: expected.clone(),
            heard: heard.lock().unwrap().clone(),
        };
        if l.verdict().lost.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(quiet).await;
    Ledger {
        expected: expected.clone(),
        heard: heard.lock().unwrap().clone(),
    }
}

/// Pages for streams `prefix-000`, `prefix-001`, … (`n` of them, `every` apart);
/// the ids of the alerts they raise.
async fn feed(kafka: &Kafka, prefix: &str, n: usize, every: Duration) -> BTreeSet<String> {
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(every);
    for i in 0..n {
        tick.tick().await;
        sent.push(kafka.page(&format!("{prefix}-{i:03}")).await);
    }
    chaos::expected_alerts(&sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_30s_while_alerts_fire_loses_no_page() {
    let _turn = TURN.lock().await;
    let Some(pg) = PrivatePg::start() else {
        return;
    };
    capture_log();
    let retries_before = logged(STORE_RETRY);
    let started = Instant::now();
    let rounds = if long() { 3 } else { 1 };
    let kafka = Kafka::new();
    let store = support::fresh_pg(&pg.admin_url).await;
    let (hook, heard) = chaos::slow_webhook_peer(SECRET, Duration::ZERO).await;
    let service = InProcess::start(&kafka, &store, &hook);

    let mut expected = BTreeSet::new();
    for round in 0..rounds {
        // 5 pages with the store up, 30 s of pages (one a second) with it stopped,
        // 5 more once it is back.
        expected.extend(
            feed(
                &kafka,
                &format!("pg{round}-before"),
                5,
                Duration::from_millis(400),
            )
            .await,
        );
        // The pages so far reach the peer first: the store stops while alerts fire.
        let _ = settle(&expected, &heard, Duration::from_secs(60), Duration::ZERO).await;
        pg.stop();
        let down = Instant::now();
        println!("round {round}: PostgreSQL stopped");
        expected.extend(
            feed(
                &kafka,
                &format!("pg{round}-down"),
                30,
                Duration::from_secs(1),
            )
            .await,
        );
        let wait = Duration::from_secs(30).saturating_sub(down.elapsed());
        tokio::time::sleep(wait).await;
        pg.start_again();
        println!(
            "round {round}: PostgreSQL started again after {:.1?}; {} pages heard so far",
            down.elapsed(),
            heard.lock().unwrap().len()
        );
        expected.extend(
            feed(
                &kafka,
                &format!("pg{round}-after"),
                5,
                Duration::from_millis(400),
            )
            .await,
        );
    }
    let ledger = settle(
        &expected,
        &heard,
        Duration::from_secs(120),
        Duration::from_secs(3),
    )
    .await;
    let stopped = service.stop().await;
    let v = ledger.verdict();
    let retries = logged(STORE_RETRY) - retries_before;
    println!(
        "chaos postgres-stop: {} rounds of 30 s; {} pages expected, {} deliveries heard; {v}; \
         store writes retried {retries} times; in {:.1?}",
        rounds,
        expected.len(),
        ledger.heard.len(),
        started.elapsed()
    );
    assert_store_fault_lost_nothing(&v, retries, "the stopped store", stopped);
}

// Failed before the store closed connections left inside a transaction: after
// SQLITE_FULL every retry met "attempted to call begin_with at non-zero transaction
// depth", the service never recovered when space was freed and every later page was
// lost (docs/chaos.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_loses_no_page() {
    let _turn = TURN.lock().await;
    let fs = match Tmpfs::mount("16m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipping: no small file system to fill: {why}");
            return;
        }
    };
    capture_log();
    let retries_before = logged(STORE_RETRY);
    let started = Instant::now();
    let rounds = if long() { 3 } else { 1 };
    let full_for = Duration::from_secs(if long() { 30 } else { 10 });
    let kafka = Kafka::new();
    let store = format!("sqlite://{}", fs.path.join("alerts.db").display());
    let (hook, heard) = chaos::slow_webhook_peer(SECRET, Duration::ZERO).await;
    let service = InProcess::start(&kafka, &store, &hook);

    let mut expected = BTreeSet::new();
    for round in 0..rounds {
        expected.extend(
            feed(
                &kafka,
                &format!("disk{round}-before"),
                5,
                Duration::from_millis(400),
            )
            .await,
        );
        // Let the pages so far reach the store before the disk fills.
        let _ = settle(&expected, &heard, Duration::from_secs(30), Duration::ZERO).await;
        let (filler, bytes) = fs.fill();
        let full = Instant::now();
        println!("round {round}: disk full ({bytes} filler bytes, ENOSPC)");
        let n = usize::try_from(full_for.as_secs()).unwrap();
        expected.extend(
            feed(
                &kafka,
                &format!("disk{round}-full"),
                n,
                Duration::from_secs(1),
            )
            .await,
        );
        tokio::time::sleep(full_for.saturating_sub(full.elapsed())).await;
        std::fs::remove_file(&filler).unwrap();
        println!(
            "round {round}: space freed after {:.1?}; {} pages heard so far",
            full.elapsed(),
            heard.lock().unwrap().len()
        );
        expected.extend(
            feed(
                &kafka,
                &format!("disk{round}-after"),
                5,
                Duration::from_millis(400),
            )
            .await,
        );
    }
    let ledger = settle(
        &expected,
        &heard,
        Duration::from_secs(120),
        Duration::from_secs(3),
    )
    .await;
    let stopped = service.stop().await;
    let v = ledger.verdict();
    let retries = logged(STORE_RETRY) - retries_before;
    println!(
        "chaos sqlite-enospc: {rounds} rounds of {full_for:?} full; {} pages expected, {} deliveries heard; {v}; \
         store writes retried {retries} times; in {:.1?}",
        expected.len(),
        ledger.heard.len(),
        started.elapsed()
    );
    assert_store_fault_lost_nothing(&v, retries, "the full disk", stopped);
}

fn spawn_alerts(config: &Path, log: &Path) -> Killed {
    support::spawn_cardiostream("alerts", config, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_alert_instance_while_notifying_loses_no_page() {
    let _turn = TURN.lock().await;
    // One PostgreSQL store for both instances: the test command's server, else a
    // private one.
    let mut private = None;
    let admin = match std::env::var("CARDIOSTREAM_TEST_PG") {
        Ok(a) => a,
        Err(_) => match PrivatePg::start() {
            Some(pg) => {
                let a = pg.admin_url.clone();
                private = Some(pg);
                a
            }
            None => return,
        },
    };
    let started = Instant::now();
    let (n, kills) = if long() { (120, 12) } else { (24, 3) };
    // CHAOS_KILLS=0 is the control run: the same load with no instance killed.
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(kills);
    let kafka = Kafka::new();
    let store = support::fresh_pg(&admin).await;
    // The peer takes 400 ms to answer: kills land while deliveries are in flight.
    let (hook, heard, in_flight) =
        chaos::counting_webhook_peer(SECRET, Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &kafka.bootstrap(), &store, &hook);
    let mut instances = [
        spawn_alerts(&config, &dir.path().join("a-0.log")),
        spawn_alerts(&config, &dir.path().join("b-0.log")),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2026),
    );
    let feeder = {
        let producer = kafka.producer.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            for i in 0..n {
                tick.tick().await;
                let s = format!("kill-{i:03}");
                let f = chaos::paging_finding(&s);
                let payload = serde_json::to_vec(&f).unwrap();
                let rec = FutureRecord::to("ecg.findings.v1")
                    .key(&s)
                    .payload(&payload);
                kafka::enqueue(&producer, rec)
                    .await
                    .unwrap()
                    .await
                    .unwrap()
                    .map_err(|(e, _)| e)
                    .unwrap();
                sent.push(f);
            }
            chaos::expected_alerts(&sent)
        })
    };
    let mut mid_delivery = 0;
    for k in 0..kills {
        // Kill when the peer has heard a few more pages and is answering one: a
        // delivery is in flight (the peer has it, its sender has no answer yet).
        let before = heard.lock().unwrap().len();
        let until = Instant::now() + Duration::from_secs(60);
        while heard.lock().unwrap().len() < before + 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        while in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            mid_delivery += 1;
        }
        let which = rng.random_range(0..2usize);
        instances[which].0.kill().unwrap(); // SIGKILL
        instances[which].0.wait().unwrap();
        println!(
            "kill {}: instance {} SIGKILLed, {} deliveries heard",
            k + 1,
            ["a", "b"][which],
            heard.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = dir
            .path()
            .join(format!("{}-{}.log", ["a", "b"][which], k + 1));
        instances[which] = spawn_alerts(&config, &log);
    }
    let expected = feeder.await.unwrap();
    // A delivery cut short by a kill is taken over after the lease (30 s).
    let ledger = settle(
        &expected,
        &heard,
        chaos_lease() + Duration::from_secs(60),
        // Listen past the lease: a delivery cut short is re-sent then (same key).
        chaos_lease() + Duration::from_secs(10),
    )
    .await;
    drop(instances);
    drop(private);
    let v = ledger.verdict();
    println!(
        "chaos alert-sigkill: {kills} SIGKILLs of 2 instances ({mid_delivery} while the peer was answering a delivery); {} pages expected, {} deliveries heard; {v}; in {:.1?}",
        expected.len(),
        ledger.heard.len(),
        started.elapsed()
    );
    assert!(v.lost.is_empty(), "{v}");
    assert!(v.paged_twice.is_empty() && v.unexpected.is_empty(), "{v}");
}

fn chaos_lease() -> Duration {
    ecg_alerts::service::DELIVERY_LEASE
}

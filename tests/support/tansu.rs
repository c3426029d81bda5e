//! A real Kafka-protocol broker for integration tests: `tansu` (a Kafka-compatible
#![allow(unreachable_pub)]
//! broker written in Rust) started as a child process on a free loopback port, with
//! in-memory storage, one broker per test. See docs/broker.md.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The `tansu` binary: `$TANSU`, else the first `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// A unique name for a topic or group (per process, per call, per run).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running broker; killed on drop, its log printed if the test is failing.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    bin: PathBuf,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker, or prints why not and returns `None` when `tansu` is not installed.
    pub fn start() -> Option<Broker> {
        Self::start_advertising(None)
    }

    /// [`Broker::start`], advertising `advertised` (`host:port`, e.g. a proxy in
    /// front of it: tests/chaos_broker.rs) to clients instead of its own address.
    pub fn start_advertising(advertised: Option<&str>) -> Option<Broker> {
        let Some(bin) = binary() else {
            println!("skipping: tansu not installed (scripts/test.sh installs it)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // The port is released before tansu binds it; another process may take it in
        // between, so a broker that exits at once is retried on a new port.
        for attempt in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("tansu-{attempt}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            let url = format!("tcp://127.0.0.1:{port}");
            let advertised_url = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &advertised_url])
                .args(["--storage-engine", "memory://tansu/"])
                .args(["--cluster-id", "cardiostream-test"])
                .env_remove("LISTENER_URL")
                .env_remove("ADVERTISED_LISTENER_URL")
                .env_remove("STORAGE_ENGINE")
                .env_remove("CLUSTER_ID")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .expect("spawning tansu");
            let mut b = Broker {
                child,
                bin: bin.clone(),
                port,
                log,
                _dir: tempfile::tempdir().expect("temp dir"),
            };
            if b.wait_ready(Duration::from_secs(20)) {
                // Keep the directory holding the log alive with the broker.
                b._dir = dir;
                return Some(b);
            }
            println!(
                "tansu on port {port} did not start (attempt {attempt}):\n{}",
                b.log_text()
            );
        }
        panic!("tansu did not start in 5 attempts");
    }

    /// Waits until the broker accepts connections and has logged that it is ready.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with the broker's own CLI.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name])
            .args(["--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("running tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}\n{}\nbroker log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            println!(
                "--- tansu log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

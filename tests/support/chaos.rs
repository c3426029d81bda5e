//! Fault injection for the chaos tests (`tests/chaos*.rs`, docs/chaos.md): a TCP proxy
//! that can take a broker off the network and bring it back, a private PostgreSQL
//! server that can be stopped and started, a tmpfs that can be filled to ENOSPC, a
//! webhook peer that counts deliveries by idempotency key, and the ledger each
//! scenario ends with (what was lost, who was paged twice).
#![allow(unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on a loopback port in front of `target`. [`Proxy::down`] resets every
/// connection through it and refuses new ones (the port is closed), as a broker that
/// stopped does; [`Proxy::up`] listens again on the same port.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    state: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts the proxy (up) on a free port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        Self::start_on(listener, target)
    }

    /// Binds the proxy's port first (so what stands behind it can be told its
    /// address), for [`Proxy::start_on`].
    pub async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.expect("proxy port")
    }

    /// Starts the proxy on a bound listener.
    pub fn start_on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let port = listener.local_addr().expect("proxy addr").port();
        let (state, rx) = watch::channel(true);
        let task = tokio::spawn(run_proxy(listener, port, target, rx));
        Proxy { port, state, task }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and closes the port.
    pub fn down(&self) {
        self.state.send_replace(false);
    }

    /// Opens the port again.
    pub fn up(&self) {
        self.state.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_proxy(
    first: TcpListener,
    port: u16,
    target: SocketAddr,
    mut state: watch::Receiver<bool>,
) {
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                // Wait until up, then bind the same port again.
                while !*state.borrow_and_update() {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
                let mut tries = 0;
                loop {
                    match TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 200, "proxy cannot listen on {port} again: {e}");
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
            }
        };
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    let rx = state.clone();
                    tokio::spawn(pipe(client, target, rx));
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*state.borrow_and_update() {
                        break; // drops the listener: the port refuses connections
                    }
                }
            }
        }
    }
}

async fn pipe(mut client: TcpStream, target: SocketAddr, mut state: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = async {
            loop {
                if !*state.borrow_and_update() {
                    break;
                }
                if state.changed().await.is_err() {
                    break;
                }
            }
        } => {
            // Reset rather than close politely, as a dying broker's kernel would.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

/// A private PostgreSQL server (initdb'd by `scripts/setup/postgres.sh` into its own
/// directory, on its own port) that a test may stop and start; removed on drop.
#[derive(Debug)]
pub struct PrivatePg {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Admin URL (role `cardiostream`, may create databases).
    pub admin_url: String,
}

impl PrivatePg {
    /// Starts one, or prints why not and returns `None`.
    pub fn start() -> Option<PrivatePg> {
        static N: AtomicU64 = AtomicU64::new(0);
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("pg_ctl").is_file())
                .max()
        }) else {
            println!(
                "skipping: no PostgreSQL server binaries (scripts/setup/postgres.sh installs them)"
            );
            return None;
        };
        // Under /tmp itself: the server runs as `postgres` and must reach it.
        let dir = PathBuf::from(format!(
            "/tmp/cardiostream-chaos-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let port = super::tansu::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup/postgres.sh");
        let out = Command::new("bash")
            .arg(script)
            .env("CARDIOSTREAM_PG_DIR", &dir)
            .env("CARDIOSTREAM_PG_PORT", port.to_string())
            .output()
            .expect("running scripts/setup/postgres.sh");
        if !out.status.success() {
            println!(
                "skipping: private PostgreSQL did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        let admin_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(PrivatePg {
            dir,
            bin,
            port,
            admin_url,
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        c.arg("-D")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("pg_ctl")
    }

    /// Stops the server (fast shutdown: sessions are cut, as in a failover).
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// Starts it again and waits until it accepts connections.
    pub fn start_again(&self) {
        let log = self.dir.join("server.log");
        let out = self.pg_ctl(&["-l", &log.display().to_string(), "-w", "-t", "60", "start"]);
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A small tmpfs mounted for one test (needs root: `mount -t tmpfs`); unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`), or says why not.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cardiostream-chaos-tmpfs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&path);
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { path })
    }

    /// Writes a filler file until the file system is full; the filler's path and its
    /// size. Panics unless the write failed with ENOSPC.
    pub fn fill(&self) -> (PathBuf, u64) {
        use std::io::Write as _;
        let p = self.path.join("filler");
        let mut f = std::fs::File::create(&p).expect("filler");
        let mut written = 0u64;
        for chunk in [65536usize, 4096, 512, 1] {
            let buf = vec![0xa5u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                        break;
                    }
                }
            }
        }
        let _ = f.sync_all();
        (p, written)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A webhook receiver on 127.0.0.1 that records each signed notification's
/// idempotency key when the request arrives, then takes `delay` to answer 204 (so a
/// test can kill a sender while it is notifying). Its URL and the keys heard, in order.
pub async fn slow_webhook_peer(secret: &str, delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    let (url, heard, _) = counting_webhook_peer(secret, delay).await;
    (url, heard)
}

/// [`slow_webhook_peer`], also telling how many requests it is answering right now.
pub async fn counting_webhook_peer(
    secret: &str,
    delay: Duration,
) -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    type Heard = (
        Arc<String>,
        Arc<Mutex<Vec<String>>>,
        Duration,
        Arc<AtomicU64>,
    );
    async fn hook(
        State((secret, heard, delay, in_flight)): State<Heard>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        if !ecg_alerts::receivers::webhook::verify_request(secret.as_bytes(), &headers, &body) {
            return StatusCode::UNAUTHORIZED;
        }
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        heard.lock().expect("heard").push(key);
        in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        StatusCode::NO_CONTENT
    }
    let heard = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((
            Arc::new(secret.to_owned()),
            heard.clone(),
            delay,
            in_flight.clone(),
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), heard, in_flight)
}

/// Now, in µs since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A present extreme-bradycardia finding of the rhythm detector on `stream`, its
/// 10 s window just closed: the default rules page for it at once (high priority,
/// fire after one window), so each such stream is one page.
pub fn paging_finding(stream: &str) -> Finding {
    let stream = StreamId::new(stream).expect("stream id");
    let source = FindingSource::Detector {
        name: "rhythm".into(),
    };
    let end = DeviceTimeUs(now_us());
    let start = end.plus_us(-10_000_000);
    let patient = PatientId::new(format!("p-{stream}")).expect("patient id");
    Finding::new(
        stream,
        patient,
        source,
        Condition::ExtremeBradycardia,
        FindingStatus::Present,
        start,
        end,
    )
    .with_value(Some(28.0))
}

/// What a chaos scenario ends with: pages expected and heard, by alert.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Ids of the alerts that should have paged (what the rules raise, offline, on
    /// the findings of an undisturbed run).
    pub expected: BTreeSet<String>,
    /// Idempotency keys heard, in order.
    pub heard: Vec<String>,
}

/// The ledger's verdict. Alerts are counted per episode, `stream/condition/origin`
/// (an alert id without its first window): an episode paged once under another first
/// window than the undisturbed run's (its findings arrived in another order) is
/// neither lost nor paged twice, and is listed in `shifted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Expected alerts of episodes with fewer `fired` pages than expected.
    pub lost: Vec<String>,
    /// Deliveries heard more than once under the same idempotency key (at-least-once
    /// redeliveries; a receiver that honours the key shows them once).
    pub same_key_redeliveries: usize,
    /// Episodes paged more often than the undisturbed run raises alerts for them, or
    /// alerts paged under more than one distinct `fired` key: paged twice in a way no
    /// receiver can tell apart.
    pub paged_twice: Vec<String>,
    /// `fired` pages of episodes the undisturbed run does not raise at all.
    pub unexpected: Vec<String>,
    /// Alerts paged once, for an expected episode, under another first window.
    pub shifted: Vec<String>,
}

fn episode(alert_id: &str) -> &str {
    alert_id.rsplit_once('/').map_or(alert_id, |(e, _)| e)
}

impl Ledger {
    /// Counts lost and duplicate pages. Keys are `alert-id/event/level`.
    pub fn verdict(&self) -> Verdict {
        let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
        for k in &self.heard {
            *by_key.entry(k.as_str()).or_default() += 1;
        }
        let same_key_redeliveries = by_key.values().map(|n| n - 1).sum();
        let mut fired: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for k in by_key.keys() {
            let mut parts = k.rsplitn(3, '/');
            let (_level, event, id) = (parts.next(), parts.next(), parts.next());
            if event == Some("fired") {
                fired
                    .entry(id.unwrap_or("").to_owned())
                    .or_default()
                    .insert(k);
            }
        }
        let mut want: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for id in &self.expected {
            want.entry(episode(id)).or_default().push(id);
        }
        let mut got: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for id in fired.keys() {
            got.entry(episode(id)).or_default().push(id);
        }
        let mut v = Verdict {
            lost: Vec::new(),
            same_key_redeliveries,
            paged_twice: fired
                .iter()
                .filter(|(_, keys)| keys.len() > 1)
                .map(|(s, _)| s.clone())
                .collect(),
            unexpected: Vec::new(),
            shifted: Vec::new(),
        };
        for (ep, ids) in &want {
            let heard = got.get(ep).map_or(&[][..], Vec::as_slice);
            let missing: Vec<&&String> = ids.iter().filter(|id| !heard.contains(id)).collect();
            let extra: Vec<&&String> = heard.iter().filter(|id| !ids.contains(id)).collect();
            // Pair missing with extra pages of the same episode: shifted, not lost.
            for (i, m) in missing.iter().enumerate() {
                match extra.get(i) {
                    Some(e) => v.shifted.push((**e).clone()),
                    None => v.lost.push((**m).clone()),
                }
            }
            if extra.len() > missing.len() {
                v.paged_twice
                    .extend(extra[missing.len()..].iter().map(|e| (**e).clone()));
            }
        }
        for (ep, ids) in &got {
            if !want.contains_key(ep) {
                v.unexpected.extend(ids.iter().map(|id| (*id).clone()));
            }
        }
        v
    }
}

/// Ids of the alerts the default rules fire on `findings`, in order (the engine run
/// offline, as an undisturbed alert service would).
pub fn expected_alerts<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> BTreeSet<String> {
    let mut engine = ecg_alerts::engine::AlertEngine::new(ecg_alerts::rules::RuleSet::default());
    let mut ids = BTreeSet::new();
    for f in findings {
        for a in engine.on_finding(f, SystemTime::now()) {
            if a.state == ecg_types::AlertState::Firing {
                ids.insert(a.id.clone());
            }
        }
    }
    ids
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost {} page(s) {:?}; paged twice: {} {:?}; same-key redeliveries: {}; unexpected: {:?}; paged under another first window: {:?}",
            self.lost.len(),
            self.lost,
            self.paged_twice.len(),
            self.paged_twice,
            self.same_key_redeliveries,
            self.unexpected,
            self.shifted
        )
    }
}

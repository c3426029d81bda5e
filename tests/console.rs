//! End-to-end test of the care-team console (`alerts/src/web/console.html`, served
//! at `/` by the alert service) in a real headless Chromium driven through WebDriver
//! (`chromedriver`, Debian's `chromium-driver`).
//!
//! It starts `cardiostream demo` with an API token, opens the console link the demo
//! prints, waits for an atrial fibrillation alert to appear in the live list, opens it,
//! checks the ECG strip is drawn on standard paper (25 mm/s, 10 mm/mV, 1 mm and 5 mm
//! grid, 1 mV calibration pulse), acknowledges it with the verdict "confirmed" and
//! checks the audit trail in the page and, through the API, the alert's new state.
//!
//! Skips with a printed reason when `/usr/bin/chromedriver` or `/usr/bin/chromium` is
//! missing (`scripts/setup/chromium.sh`, run by `scripts/test.sh`, installs them).
//! Needs the ONNX Runtime library, as the demo does.
//!
//! - `CARDIOSTREAM_CONSOLE_URL=http://HOST:PORT/#token=TOKEN` runs the browser part
//!   against an alert service that is already running instead of starting the demo.
//! - `CARDIOSTREAM_CONSOLE_SCREENSHOT=/tmp/console.png` saves a screenshot of the
//!   console after the acknowledgement (docs/console.md);
//!   `CARDIOSTREAM_CONSOLE_LETHAL_SCREENSHOT=/tmp/lethal.png` one of the lethal alarm's
//!   strip (every lead, the pleth and the pacemaker marks) with the patient's AF burden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "TESTTOKEN";

/// A child process killed (and reaped) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo, its console link and what it printed on stderr so far.
struct Service {
    _child: KillOnDrop,
    console_url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

/// `cardiostream demo --duration 120 --http-addr 127.0.0.1:0 --api-token TESTTOKEN`,
/// and the console link it prints on stderr.
fn start_demo() -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardiostream"))
        .args([
            "demo",
            "--duration",
            "120",
            "--http-addr",
            "127.0.0.1:0",
            "--api-token",
            TOKEN,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cardiostream demo");
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    {
        // Drain stderr for the whole run so the demo never blocks on a full pipe.
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                lines.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let console_url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = console_link(&line) {
                    break url;
                }
            }
            Err(_) => panic!(
                "the demo printed no console link within 60 s:\n{}",
                lines.lock().unwrap().join("\n")
            ),
        }
    };
    Service {
        _child: child,
        console_url,
        stderr: lines,
    }
}

/// The URL on a `console: http://…` line of the demo's stderr, with the token in its
/// fragment (added when the line does not carry it).
fn console_link(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("console:")?.trim();
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| {
        if url.contains("#token=") {
            url.to_owned()
        } else {
            format!("{}#token={TOKEN}", url.trim_end_matches('#'))
        }
    })
}

/// `http://HOST:PORT` and the token of a console link `http://HOST:PORT/…#token=T`.
fn split_console_url(url: &str) -> (String, String) {
    let (before, token) = url
        .split_once("#token=")
        .unwrap_or_else(|| panic!("console link without #token=: {url}"));
    let scheme_end = before.find("://").map(|i| i + 3).unwrap();
    let host_end = before[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(before.len());
    (before[..host_end].to_owned(), token.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_chromedriver(port: u16) -> KillOnDrop {
    let child = KillOnDrop(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Polls `probe` every 250 ms until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `encodeURIComponent`: alert ids contain `/`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API as a test client sees it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

async fn attr(client: &Client, css: &str, name: &str) -> Option<String> {
    client
        .find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()
        .flatten()
}

fn points(s: &str) -> Vec<(f64, f64)> {
    s.split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// The x positions of the vertical lines (`M{x} 0V…`) of a grid path.
fn vertical_lines(d: &str) -> Vec<f64> {
    d.split('M')
        .filter_map(|seg| {
            let (x, rest) = seg.split_once(' ')?;
            rest.starts_with("0V").then(|| x.parse().ok()).flatten()
        })
        .collect()
}

/// What the browser does, as a clinician would.
async fn scenario(client: Client, console_url: String, api: Arc<Api>) {
    client.set_window_size(1600, 1250).await.unwrap();

    // A wrong token: the sign-in form comes back with the reason.
    let (base, _) = split_console_url(&console_url);
    client
        .goto(&format!("{base}/#token=not-the-token"))
        .await
        .unwrap();
    let msg = eventually("the token form", Duration::from_secs(15), || async {
        let shown = client
            .find(Locator::Id("auth"))
            .await
            .ok()?
            .is_displayed()
            .await
            .ok()?;
        let text = client
            .find(Locator::Id("auth-msg"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (shown && !text.is_empty()).then_some(text)
    })
    .await;
    assert_eq!(msg, "token not accepted");

    // The printed link: the token is taken from the fragment and leaves the address bar.
    client.goto(&console_url).await.unwrap();
    let (_, me) = api.get("/api/v1/me").await;
    let actor = me["actor"]
        .as_str()
        .unwrap_or_else(|| panic!("/api/v1/me: {me}"))
        .to_owned();
    let team = me["team"].as_str().unwrap().to_owned();
    eventually(
        "the team in the header",
        Duration::from_secs(15),
        || async {
            let t = client
                .find(Locator::Id("team"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (t == team).then_some(())
        },
    )
    .await;
    let url = client.current_url().await.unwrap();
    assert!(
        !url.as_str().contains("token"),
        "the token stays in the address bar: {url}"
    );
    let page = client.source().await.unwrap();
    assert!(page.contains("Decision support for clinicians — not a diagnosis"));

    // All of it under the console's content security policy (its own script and
    // style by hash, nothing else, no framing): the script runs (the team above) and
    // the inline stylesheet applies (13 px notes instead of the browser's 16 px).
    let r = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'sha256-")
            && csp.contains("style-src 'sha256-")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let styled = client
        .execute(
            "return document.styleSheets.length + ' ' + \
             getComputedStyle(document.getElementById('count')).fontSize",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(styled, json!("1 13px"), "the stylesheet under the CSP");

    // The live list: wait for an atrial fibrillation alert, without reloading.
    let af_row = "tr.alert-row[data-condition='atrial_fibrillation']";
    let id = eventually(
        "an atrial fibrillation alert in the list",
        Duration::from_secs(100),
        || attr(&client, af_row, "data-alert-id"),
    )
    .await;
    let row_css = format!("tr.alert-row[data-alert-id='{id}']");
    let row_text = client
        .find(Locator::Css(&row_css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(row_text.contains("atrial fibrillation"), "{row_text}");
    client
        .find(Locator::Css(&row_css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The strip, on standard ECG paper.
    let trace = eventually("the ECG trace", Duration::from_secs(20), || async {
        let shown = attr(&client, "#detail", "data-alert-id").await?;
        let pts = attr(&client, "#ecg-trace", "points").await?;
        (shown == id && !pts.is_empty()).then_some(pts)
    })
    .await;
    let strip = "#ecg-strip";
    assert_eq!(
        attr(&client, strip, "data-mm-per-s").await.as_deref(),
        Some("25")
    );
    assert_eq!(
        attr(&client, strip, "data-mm-per-mv").await.as_deref(),
        Some("10")
    );
    let fs: f64 = attr(&client, strip, "data-sample-rate-hz")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let n: usize = attr(&client, strip, "data-samples")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let pts = points(&trace);
    assert_eq!(pts.len(), n, "one trace point per sample");
    assert!(
        n as f64 >= 2.0 * fs,
        "a strip of at least 2 s, got {n} samples at {fs} Hz"
    );
    // 25 mm/s: consecutive samples 25/fs mm apart, the whole strip (n-1)/fs * 25 mm.
    let dx = pts[1].0 - pts[0].0;
    assert!((dx - 25.0 / fs).abs() < 0.011, "sample spacing {dx} mm");
    let span = pts[n - 1].0 - pts[0].0;
    let want = (n - 1) as f64 / fs * 25.0;
    assert!(
        (span - want).abs() < 0.05,
        "strip {span} mm, want {want} mm"
    );
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let swing =
        ys.iter().cloned().fold(f64::MIN, f64::max) - ys.iter().cloned().fold(f64::MAX, f64::min);
    assert!(swing > 2.0, "a flat trace ({swing} mm peak to peak)");
    // 10 mm/mV: the calibration pulse is 1 mV high.
    let cal = points(&attr(&client, "#ecg-cal", "points").await.unwrap());
    let cal_h = cal.iter().map(|p| p.1).fold(f64::MIN, f64::max)
        - cal.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    assert!((cal_h - 10.0).abs() < 1e-6, "calibration pulse {cal_h} mm");
    // The grid: 1 mm minor and 5 mm major lines across the whole paper.
    let view: Vec<f64> = attr(&client, strip, "viewBox")
        .await
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let width = view[2];
    let major = vertical_lines(&attr(&client, "#ecg-grid-major", "d").await.unwrap());
    let minor = vertical_lines(&attr(&client, "#ecg-grid-minor", "d").await.unwrap());
    assert_eq!(major.len() as f64, width / 5.0 + 1.0, "major lines");
    assert!(major.iter().all(|x| x % 5.0 == 0.0));
    assert_eq!(minor.len() as f64, width - width / 5.0, "minor lines");
    assert!(width >= pts[n - 1].0, "the trace runs off the paper");
    assert!(
        !client
            .find_all(Locator::Css("#ecg-strip .ecg-time-label"))
            .await
            .unwrap()
            .is_empty(),
        "no time labels"
    );

    // Acknowledge with a verdict.
    client
        .find(Locator::Id("verdict"))
        .await
        .unwrap()
        .select_by_value("confirmed")
        .await
        .unwrap();
    client
        .find(Locator::Id("ack-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let entry = eventually(
        "an acknowledged entry in the audit trail",
        Duration::from_secs(15),
        || async {
            for li in client.find_all(Locator::Css("#audit li")).await.ok()? {
                let text = li.text().await.ok()?;
                if text.contains("acknowledged by") && text.contains(&actor) {
                    return Some(text);
                }
            }
            None
        },
    )
    .await;
    assert!(entry.contains("confirmed"), "{entry}");

    // The same through the API.
    let (status, detail) = api
        .get(&format!("/api/v1/alerts/{}", encode_component(&id)))
        .await;
    assert_eq!(status, 200, "{detail}");
    let alert = &detail["alert"];
    assert_eq!(alert["state"], "acknowledged", "{alert}");
    assert_eq!(alert["acknowledged_by"], actor.as_str(), "{alert}");
    assert_eq!(alert["verdict"], "confirmed", "{alert}");
    let audit = detail["audit"].as_array().unwrap();
    assert!(
        audit.iter().any(|e| e["action"] == "acknowledged"
            && e["actor"] == actor.as_str()
            && e["verdict"] == "confirmed"),
        "{audit:?}"
    );

    if let Some(path) = std::env::var_os("CARDIOSTREAM_CONSOLE_SCREENSHOT") {
        // Let the precision panel catch up with the verdict before the picture.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let png = client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("console: screenshot in {}", Path::new(&path).display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_an_af_alert_on_ecg_paper_and_records_the_acknowledgement() {
    if browser_missing() {
        return;
    }
    let service = match std::env::var("CARDIOSTREAM_CONSOLE_URL") {
        Ok(url) => Err(url),
        Err(_) => Ok(start_demo()),
    };
    let console_url = match &service {
        Ok(s) => s.console_url.clone(),
        Err(url) => url.clone(),
    };
    let (base, token) = split_console_url(&console_url);
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        base,
        token,
    });

    let (_driver, _profile, client) = browser().await;

    // Run the browser part in its own task so a failed assertion still ends the
    // browser session before chromedriver and the demo are killed.
    let outcome = tokio::spawn(scenario(client.clone(), console_url, api)).await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        if let Ok(s) = &service {
            eprintln!("demo stderr:\n{}", s.log());
        }
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Chromedriver, the browser's profile directory and a headless Chromium session.
async fn browser() -> (KillOnDrop, tempfile::TempDir, Client) {
    let port = free_port();
    let driver = start_chromedriver(port);
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("starting a chromium session through chromedriver");
    (driver, profile, client)
}

fn browser_missing() -> bool {
    for bin in [CHROMEDRIVER, CHROMIUM] {
        if !Path::new(bin).exists() {
            eprintln!(
                "skipping the console test: {bin} not found (scripts/setup/chromium.sh installs \
                 Debian's chromium and chromium-driver)"
            );
            return true;
        }
    }
    false
}

/// An alert service in this process (SQLite in memory, the API and console on a free
/// loopback port, token [`TOKEN`] for every team) that has taken `findings`; its
/// console link.
async fn alert_service(findings: &[ecg_types::Finding]) -> String {
    use ecg_alerts::api::{self, ApiState, Tokens};
    use ecg_alerts::config::ServiceConfig;
    use ecg_alerts::service::{AlertService, Caller, NoHooks};
    use ecg_alerts::store::Store;

    let cfg: ServiceConfig = toml::from_str("[store]\nurl = \"sqlite::memory:\"\n").unwrap();
    let store = Store::open(&cfg.store.url, 1).await.unwrap();
    let svc = Arc::new(AlertService::new(cfg, store, "console-test", Arc::new(NoHooks)).unwrap());
    for f in findings {
        svc.on_finding(f, Instant::now()).await.unwrap();
    }
    svc.flush_af_burden().await.unwrap();
    let mut tokens = Tokens::default();
    tokens.add(
        TOKEN,
        Caller {
            team: "*".into(),
            actor: "nurse-console".into(),
        },
    );
    let app = api::router(ApiState {
        service: svc,
        tokens: Arc::new(tokens),
        models_dir: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/#token={TOKEN}")
}

/// A ventricular fibrillation alarm as the pipeline publishes it at onset: its strip
/// carries lead II, then V1 and V5 (µV) and the plethysmogram (at half the rate,
/// starting half a second later) over the same time, and three pacemaker pulses the
/// device reported (and one from before the strip, which is not drawn).
fn lethal_finding(now_us: i64) -> ecg_types::Finding {
    use ecg_types::{
        Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId, Strip,
        Trace,
    };
    let stream = StreamId::new("icu-bed-7").unwrap();
    let start = DeviceTimeUs(now_us - 8_000_000);
    let mut f = Finding::new(
        stream,
        PatientId::new("p-lethal").unwrap(),
        FindingSource::Detector {
            name: "lethal".into(),
        },
        Condition::VentricularFibrillation,
        FindingStatus::Present,
        start,
        start.plus_us(8_000_000),
    )
    .with_reason("fibrillatory waveform on 3 of 3 leads; no pulse on pleth");
    let wave = |amp: f64, period: f64, i: usize| (amp * (i as f64 / period).sin()) as i32;
    let lead = |label: &str, amp: f64| Trace {
        label: label.into(),
        unit: "uV".into(),
        scale: 1.0,
        sample_rate_hz: 250,
        start_us: start.0,
        values: (0..1000).map(|i| wave(amp, 7.0, i)).collect(),
    };
    f.strip = Some(Box::new(Strip {
        lead: ecg_types::Lead::II,
        sample_rate_hz: 250,
        start_us: start.0,
        samples_uv: (0..1000).map(|i| wave(900.0, 6.0, i)).collect(),
        more: vec![
            lead("V1", 600.0),
            lead("V5", 1500.0),
            Trace {
                label: "pleth".into(),
                unit: "NU".into(),
                scale: 0.1,
                sample_rate_hz: 125,
                start_us: start.0 + 500_000,
                values: (0..400).map(|i| 2000 + wave(300.0, 20.0, i)).collect(),
            },
        ],
        pace_us: [-300_000, 1_000_000, 2_000_000, 2_500_000]
            .iter()
            .map(|d| start.0 + d)
            .collect(),
    }));
    f
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// A lethal alarm's strip: every lead in its own band at 10 mm/mV with its name and
/// a calibration pulse, the plethysmogram in a band of its own labelled with its unit,
/// all on one time axis.
async fn lethal_scenario(client: Client, console_url: String) {
    client.set_window_size(1600, 1250).await.unwrap();
    client.goto(&console_url).await.unwrap();
    let row = "tr.alert-row[data-condition='ventricular_fibrillation']";
    let id = eventually(
        "the ventricular fibrillation alarm in the list",
        Duration::from_secs(20),
        || attr(&client, row, "data-alert-id"),
    )
    .await;
    client
        .find(Locator::Css(row))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the strip", Duration::from_secs(20), || async {
        let shown = attr(&client, "#detail", "data-alert-id").await?;
        let pts = attr(&client, "#ecg-trace-2", "points").await?;
        (shown == id && !pts.is_empty()).then_some(())
    })
    .await;

    let strip = "#ecg-strip";
    assert_eq!(
        attr(&client, strip, "data-leads").await.as_deref(),
        Some("II,V1,V5")
    );
    assert_eq!(
        attr(&client, strip, "data-pulses").await.as_deref(),
        Some("pleth")
    );
    // One trace per lead and one for the pulse, each a point per sample.
    let mut leads = Vec::new();
    let mut bands = Vec::new();
    for e in client
        .find_all(Locator::Css("#ecg-strip polyline.ecg-trace"))
        .await
        .unwrap()
    {
        leads.push(e.attr("data-label").await.unwrap().unwrap());
        let pts = points(&e.attr("points").await.unwrap().unwrap());
        assert_eq!(pts.len(), 1000);
        // 25 mm/s from the same start.
        assert!((pts[0].0 - 12.0).abs() < 0.011, "x0 {}", pts[0].0);
        assert!((pts[1].0 - pts[0].0 - 0.1).abs() < 0.011);
        let lo = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        bands.push((lo, hi));
    }
    assert_eq!(leads, ["II", "V1", "V5"]);
    // 10 mm/mV on every lead: 1.8, 1.2 and 3 mV peak to peak, and the bands do not
    // overlap.
    for ((lo, hi), want) in bands.iter().zip([18.0, 12.0, 30.0]) {
        assert!((hi - lo - want).abs() < 0.2, "{lo}..{hi}, want {want} mm");
    }
    assert!(
        bands[0].1 < bands[1].0 && bands[1].1 < bands[2].0,
        "{bands:?}"
    );
    let cals = client
        .find_all(Locator::Css("#ecg-strip polyline.ecg-cal"))
        .await
        .unwrap();
    assert_eq!(cals.len(), 3, "a calibration pulse per lead");
    for c in cals {
        let p = points(&c.attr("points").await.unwrap().unwrap());
        let h = p.iter().map(|p| p.1).fold(f64::MIN, f64::max)
            - p.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        assert!((h - 10.0).abs() < 1e-6, "calibration pulse {h} mm");
    }
    let pulses = client
        .find_all(Locator::Css("#ecg-strip polyline.pulse-trace"))
        .await
        .unwrap();
    assert_eq!(pulses.len(), 1);
    assert_eq!(
        pulses[0].attr("data-unit").await.unwrap().as_deref(),
        Some("NU")
    );
    let pp = points(&pulses[0].attr("points").await.unwrap().unwrap());
    assert_eq!(pp.len(), 400);
    // Aligned by its start: half a second (12.5 mm) after the leads, 125 Hz.
    assert!((pp[0].0 - 24.5).abs() < 0.011, "pleth x0 {}", pp[0].0);
    assert!((pp[1].0 - pp[0].0 - 0.2).abs() < 0.011);
    // In its own band, under the leads, not on the mV scale.
    let plo = pp.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let phi = pp.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    assert!(
        plo > bands[2].1,
        "pleth {plo}..{phi} overlaps V5 {:?}",
        bands[2]
    );
    let view: Vec<f64> = attr(&client, strip, "viewBox")
        .await
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(phi < view[3] - 10.0, "pleth below the paper");
    // The grid still runs over the whole paper in 5 mm squares.
    let major = vertical_lines(&attr(&client, "#ecg-grid-major", "d").await.unwrap());
    assert_eq!(major.len() as f64, view[2] / 5.0 + 1.0, "major lines");
    // Labels: each lead by name, the pulse with its unit.
    let labels = texts(&client, "#ecg-strip text.trace-label").await;
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert_eq!(labels[..3], ["II", "V1", "V5"]);
    assert!(
        labels[3].starts_with("pleth (NU") && labels[3].contains("scaled to fit"),
        "{labels:?}"
    );
    let caption = client
        .find(Locator::Id("strip-caption"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(caption.contains("Leads II, V1, V5 and pleth"), "{caption}");

    // The pacemaker pulses within the strip: a dashed mark across each lead's band at
    // its device time (12 mm, then 25 mm/s), none in the pulse band.
    assert_eq!(
        attr(&client, strip, "data-pace-marks").await.as_deref(),
        Some("3")
    );
    let mut marks = Vec::new();
    for e in client
        .find_all(Locator::Css("#ecg-strip line.pace-mark"))
        .await
        .unwrap()
    {
        let num = |v: Option<String>| v.unwrap().parse::<f64>().unwrap();
        let x1 = num(e.attr("x1").await.unwrap());
        assert_eq!(x1, num(e.attr("x2").await.unwrap()), "a vertical mark");
        let (y1, y2) = (
            num(e.attr("y1").await.unwrap()),
            num(e.attr("y2").await.unwrap()),
        );
        marks.push((e.attr("data-trace").await.unwrap().unwrap(), x1, y1, y2));
    }
    assert_eq!(marks.len(), 9, "{marks:?}");
    for (i, (label, x, y1, y2)) in marks.iter().enumerate() {
        let band = i / 3;
        assert_eq!(label, ["II", "V1", "V5"][band]);
        let want = 12.0 + [1.0, 2.0, 2.5][i % 3] * 25.0;
        assert!((x - want).abs() < 0.011, "mark {i} at {x} mm, want {want}");
        // Across its lead's trace, and not into the neighbouring leads' traces.
        assert!(*y1 <= bands[band].0 && *y2 >= bands[band].1, "{marks:?}");
        if band > 0 {
            assert!(*y1 > bands[band - 1].1, "{marks:?}");
        }
        if band < 2 {
            assert!(*y2 < bands[band + 1].0, "{marks:?}");
        }
    }
    assert!(
        caption.contains("3 pacemaker pulses reported by the device"),
        "{caption}"
    );

    // The patient's AF burden, as decision support.
    let burden = eventually("the AF burden", Duration::from_secs(20), || async {
        let t = client
            .find(Locator::Id("d-af-burden"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("monitored").then_some(t)
    })
    .await;
    assert!(
        burden.contains("AF burden 82 % of 55 s monitored") && burden.contains("not a diagnosis"),
        "{burden}"
    );

    if let Some(path) = std::env::var_os("CARDIOSTREAM_CONSOLE_LETHAL_SCREENSHOT") {
        let png = client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("console: screenshot in {}", Path::new(&path).display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_draws_every_lead_and_the_pulse_of_a_lethal_alarm() {
    if browser_missing() {
        return;
    }
    let now_us = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let mut findings = vec![lethal_finding(now_us)];
    // The same patient's AF findings: 30 s windows every 5 s, 45 s in AF of 55 s.
    for t in 0..6 {
        let start = ecg_types::DeviceTimeUs(now_us - 120_000_000 + t * 5_000_000);
        findings.push(ecg_types::Finding::new(
            ecg_types::StreamId::new("icu-bed-7").unwrap(),
            ecg_types::PatientId::new("p-lethal").unwrap(),
            ecg_types::FindingSource::Model {
                id: "af-cnn".into(),
                version: "1.0.0".into(),
            },
            ecg_types::Condition::AtrialFibrillation,
            if t < 4 {
                ecg_types::FindingStatus::Present
            } else {
                ecg_types::FindingStatus::Absent
            },
            start,
            start.plus_us(30_000_000),
        ));
    }
    let console_url = alert_service(&findings).await;
    let (_driver, _profile, client) = browser().await;
    let outcome = tokio::spawn(lethal_scenario(client.clone(), console_url)).await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

//! The HTTP side: Prometheus `/metrics`, `/healthz`, and — where the process runs the
//! alert service — its API and care-team console ([`ecg_alerts::api`]).
//!
//! The pipeline's listener serves `/metrics` and `/healthz` only. Stream statuses
//! (patients with their live heart rates) are served at `/api/v1/streams` only by a
//! process that also runs the alert API (the demo), behind the same team-scoped
//! tokens: a team sees the streams its assignments give it.
//!
//! The server that runs the router, with its connection limits, is
//! [`ecg_alerts::server`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use ecg_alerts::api::ApiState;
use ecg_alerts::service::Caller;
use ecg_types::StreamId;

use crate::telemetry::Metrics;
use ecg_pipeline::StreamStatus;

/// Live stream statuses, by stream (the pipeline's; `StreamStatus`).
pub type Statuses = Arc<Mutex<HashMap<StreamId, StreamStatus>>>;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Process metrics.
    pub metrics: Metrics,
    /// The alert service's API and console, where this process runs it.
    pub alerts: Option<ApiState>,
    /// Live stream statuses, where this process runs the pipeline.
    pub statuses: Option<Statuses>,
}

/// The router: `/metrics` and `/healthz`; with the alert service its API and
/// console, and (with stream statuses too) `/api/v1/streams` behind its tokens.
pub fn router(state: AppState) -> Router {
    let base = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state.clone())
        .layer(middleware::map_response(ecg_alerts::api::security_headers));
    match (state.alerts, state.statuses) {
        (Some(api), statuses) => {
            let mut r = base.merge(ecg_alerts::api::router(api.clone()));
            if let Some(st) = statuses {
                r = r.merge(
                    Router::new()
                        .route("/api/v1/streams", get(streams))
                        .route_layer(middleware::from_fn_with_state(
                            api.tokens.clone(),
                            ecg_alerts::api::require_token,
                        ))
                        .layer(middleware::map_response(ecg_alerts::api::security_headers))
                        .with_state((api, st)),
                );
            }
            r
        }
        (None, _) => base.route("/", get(index)),
    }
}

/// Binds the HTTP address, with an error that names it.
///
/// # Errors
/// When the address is taken or not local.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --http-addr {addr}: {e}"))
}

async fn index() -> &'static str {
    "cardiostream pipeline: /metrics (Prometheus), /healthz.\n\
     The care-team console is served by `cardiostream alerts` (and `cardiostream demo`).\n"
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Stream statuses a caller's team looks after: the streams its assignments give it
/// (the assignment that routes their alerts to it); `*` sees all.
async fn streams(
    State((api, statuses)): State<(ApiState, Statuses)>,
    Extension(c): Extension<Caller>,
) -> Json<Vec<StreamStatus>> {
    let cfg = api.service.config();
    let mut v: Vec<StreamStatus> = statuses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .filter(|s| c.team == "*" || cfg.assign(s.stream.as_str(), s.patient.as_str()).0 == c.team)
        .cloned()
        .collect();
    v.sort_by(|a, b| a.stream.cmp(&b.stream));
    Json(v)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    use ecg_alerts::api::Tokens;
    use ecg_alerts::config::ServiceConfig;
    use ecg_alerts::server::serve;
    use ecg_alerts::service::{AlertService, Caller, NoHooks};
    use ecg_alerts::store::Store;
    use ecg_types::{DeviceTimeUs, PatientId};
    use tokio::sync::watch;

    use super::*;

    type Server = (
        SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    );

    /// Held by the tests whose requests the API refuses. `tracing` caches whether a
    /// log call site is enabled when the site is first hit; a test that hits the
    /// "request refused" site on another thread while the log test installs its
    /// thread-local subscriber can cache it disabled for good, and the log test then
    /// sees no line (1 run in 3 on a loaded machine).
    static REFUSALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn start(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let h = tokio::spawn(serve(listener, router, rx));
        (addr, tx, h)
    }

    fn status(stream: &str, patient: &str) -> StreamStatus {
        StreamStatus {
            stream: StreamId::new(stream).expect("id"),
            patient: PatientId::new(patient).expect("id"),
            heart_rate_bpm: Some(72.0),
            quality_ok: true,
            quality_reason: String::new(),
            last_window_end: DeviceTimeUs(0),
        }
    }

    fn statuses(streams: &[(&str, &str)]) -> Arc<Mutex<HashMap<StreamId, StreamStatus>>> {
        Arc::new(Mutex::new(
            streams
                .iter()
                .map(|(s, p)| (StreamId::new(*s).expect("id"), status(s, p)))
                .collect(),
        ))
    }

    /// The pipeline deployable's router.
    fn pipeline() -> Router {
        router(AppState {
            metrics: Metrics::new(),
            alerts: None,
            statuses: Some(statuses(&[("bed-1.ecg", "pt-0001")])),
        })
    }

    /// A blocking GET over a fresh connection: status and body.
    async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
            token
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default()
        );
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s.write_all(req.as_bytes()).expect("write");
            let mut raw = String::new();
            s.read_to_string(&mut raw).expect("read");
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            (status, body.to_owned())
        })
        .await
        .expect("join")
    }

    /// Issue 15, item 3: the pipeline's listener (0.0.0.0 in the container) serves
    /// `/metrics` and `/healthz` only; stream statuses name patients.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pipeline_listener_serves_metrics_and_health_only() {
        let (addr, _tx, _h) = start(pipeline()).await;
        assert_eq!(get(addr, "/healthz", None).await.0, 200);
        let (s, m) = get(addr, "/metrics", None).await;
        assert_eq!(s, 200);
        assert!(!m.contains("pt-0001"));
        let (s, body) = get(addr, "/api/v1/streams", None).await;
        assert_eq!(s, 404, "{body}");
        assert!(!body.contains("pt-0001"), "{body}");
    }

    /// Issue 15, item 3: where a process runs the alert API as well (the demo), stream
    /// statuses need a token and a team sees the streams assigned to it only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_statuses_need_a_token_and_show_a_team_its_own_streams() {
        let _serial = REFUSALS.lock().await;
        let cfg: ServiceConfig = toml::from_str(
            r#"
            [store]
            url = "sqlite::memory:"
            [[assignments]]
            stream_prefix = "bed-"
            team = "telemetry"
            [[assignments]]
            stream_prefix = "icu-"
            team = "icu"
            "#,
        )
        .expect("config");
        let store = Store::open(&cfg.store.url, 1).await.expect("store");
        let service = Arc::new(AlertService::new(cfg, store, "t", Arc::new(NoHooks)).expect("svc"));
        let mut tokens = Tokens::default();
        for (token, team) in [("tele", "telemetry"), ("all", "*")] {
            tokens.add(
                token,
                Caller {
                    team: team.into(),
                    actor: "a".into(),
                },
            );
        }
        let app = router(AppState {
            metrics: Metrics::new(),
            alerts: Some(ApiState {
                service,
                tokens: Arc::new(tokens),
                models_dir: None,
            }),
            statuses: Some(statuses(&[
                ("bed-1.ecg", "pt-0001"),
                ("icu-1.ecg", "pt-0002"),
            ])),
        });
        let (addr, _tx, _h) = start(app).await;
        let (s, body) = get(addr, "/api/v1/streams", None).await;
        assert_eq!(s, 401, "{body}");
        assert!(!body.contains("pt-000"), "{body}");
        assert_eq!(get(addr, "/api/v1/streams", Some("guess")).await.0, 401);
        let streams = |body: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(body).expect("json");
            v.as_array()
                .expect("array")
                .iter()
                .map(|s| s["stream"].as_str().expect("stream").to_owned())
                .collect()
        };
        let (s, body) = get(addr, "/api/v1/streams", Some("tele")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(streams(&body), ["bed-1.ecg"]);
        let (s, body) = get(addr, "/api/v1/streams", Some("all")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(streams(&body), ["bed-1.ecg", "icu-1.ecg"]);
    }

    /// A writer into a shared buffer, for capturing log lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Refused requests are logged (warn) with the peer's address and the resource,
    /// for intrusion detection — never the path's ids or the token.
    #[tokio::test(flavor = "current_thread")]
    async fn refused_requests_are_logged_with_the_peer_never_the_ids_or_token() {
        let _serial = REFUSALS.lock().await;
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let cfg = ServiceConfig {
            store: ecg_alerts::config::StoreConfig {
                url: "sqlite::memory:".into(),
                max_connections: 1,
            },
            ..ServiceConfig::default()
        };
        let store = Store::open(&cfg.store.url, 1).await.expect("store");
        let service = Arc::new(AlertService::new(cfg, store, "t", Arc::new(NoHooks)).expect("svc"));
        let app = router(AppState {
            metrics: Metrics::new(),
            alerts: Some(ApiState {
                service,
                tokens: Arc::new(Tokens::default()),
                models_dir: None,
            }),
            statuses: None,
        });
        let (addr, _tx, _h) = start(app).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let local = s.local_addr().expect("local");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        s.write_all(
            b"GET /api/v1/alerts/bed-1.ecg%2Fasystole%2Fdsp%2F1 HTTP/1.1\r\nHost: t\r\n\
              Authorization: Bearer wrong-s3cret-token\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 401"), "{out}");
        let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
        let line = text
            .lines()
            .find(|l| l.contains("api request refused"))
            .unwrap_or_else(|| panic!("no log line: {text}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(&local.to_string()), "the peer: {line}");
        assert!(line.contains("/api/v1/alerts"), "{line}");
        assert!(
            !line.contains("bed-1") && !line.contains("s3cret"),
            "{line}"
        );
    }
}

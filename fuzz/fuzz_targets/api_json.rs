//! The alert service's HTTP API (`ecg_alerts::api::router`) driven in-process, request
//! by request, with a valid bearer token: the JSON bodies of ack / resolve / escalate
//! and of new silences, the list's query string and the alert id in the path. The
//! first byte picks the request, the second the content type; the rest is the body
//! (or query, or id). The store is an in-memory SQLite database holding one firing
//! alert, rebuilt every 1,000 inputs so accepted silences and state changes do not
//! pile up. No request may panic or answer 500.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ecg_alerts::api::{self, ApiState, Tokens};
use ecg_alerts::config::ServiceConfig;
use ecg_alerts::service::{AlertService, Caller, NoHooks};
use ecg_alerts::store::Store;
use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId,
};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token";

struct World {
    router: axum::Router,
    alert_id: String,
    uses: u32,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

async fn world() -> World {
    let cfg: ServiceConfig =
        serde_json::from_str(r#"{"store": {"url": "sqlite::memory:"}}"#).expect("config");
    let store = Store::open(&cfg.store.url, 1).await.expect("store");
    let svc = Arc::new(AlertService::new(cfg, store, "fuzz", Arc::new(NoHooks)).expect("service"));
    let stream = StreamId::new("bed-1").expect("id");
    let source = FindingSource::Model {
        id: "af-rr".into(),
        version: "1.0.0".into(),
    };
    let start = DeviceTimeUs(1_800_000_000_000_000);
    let c = Condition::AtrialFibrillation;
    let f = Finding {
        key: Finding::make_key(&stream, &source, c, start),
        patient: PatientId::new("p-1").expect("id"),
        stream,
        source,
        condition: c,
        status: FindingStatus::Present,
        window_start: start,
        window_end: start.plus_us(30_000_000),
        score: Some(0.9),
        value: None,
        decision_support: true,
        shadow: false,
        strip: None,
        reason: None,
        episode_start: None,
        episode_end: None,
    };
    svc.on_finding(&f, Instant::now()).await.expect("finding");
    let all = Caller {
        team: "*".into(),
        actor: "fuzz".into(),
    };
    let alert_id = svc
        .list(&all, &[], None, 10)
        .await
        .expect("list")
        .first()
        .map(|a| a.id.clone())
        .expect("the finding raised an alert");
    let mut tokens = Tokens::default();
    tokens.add(TOKEN, all);
    let router = api::router(ApiState {
        service: svc,
        tokens: Arc::new(tokens),
        models_dir: None,
    });
    World {
        router,
        alert_id,
        uses: 0,
    }
}

fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    static WORLD: Mutex<Option<World>> = Mutex::new(None);
    if data.len() < 2 {
        return;
    }
    let (route, ctype, rest) = (data[0] % 6, data[1] % 3, &data[2..]);
    let rt = runtime();
    let mut guard = WORLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.as_ref().is_none_or(|w| w.uses >= 1000) {
        *guard = Some(rt.block_on(world()));
    }
    let w = guard.as_mut().expect("world");
    w.uses += 1;
    let id = pct(w.alert_id.as_bytes());
    let (method, uri, body) = match route {
        0 => ("POST", format!("/api/v1/alerts/{id}/ack"), rest.to_vec()),
        1 => (
            "POST",
            format!("/api/v1/alerts/{id}/resolve"),
            rest.to_vec(),
        ),
        2 => (
            "POST",
            format!("/api/v1/alerts/{id}/escalate"),
            rest.to_vec(),
        ),
        3 => ("POST", "/api/v1/silences".to_owned(), rest.to_vec()),
        4 => (
            "GET",
            format!("/api/v1/alerts?{}", pct_query(rest)),
            Vec::new(),
        ),
        _ => (
            "POST",
            format!("/api/v1/alerts/{}/ack", pct(rest)),
            Vec::new(),
        ),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    match ctype {
        0 => req = req.header(header::CONTENT_TYPE, "application/json"),
        1 => req = req.header(header::CONTENT_TYPE, "text/plain"),
        _ => {}
    }
    let req = req.body(Body::from(body)).expect("request");
    let router = w.router.clone();
    let (status, bytes) = rt.block_on(async move {
        let resp = router.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() && status != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // Errors the handlers make are JSON `{"error": ...}`; axum's extractor
        // rejections are plain text. Either way the answer is bounded.
        assert!(bytes.len() < 64 * 1024, "{} byte error body", bytes.len());
    }
});

/// The query string as a client might send it: `&` and `=` kept, the rest escaped.
fn pct_query(bytes: &[u8]) -> String {
    bytes
        .split(|&b| b == b'&')
        .map(|kv| {
            kv.splitn(2, |&b| b == b'=')
                .map(pct)
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join("&")
}

//! The short version of the alert service's fuzzing campaigns (docs/fuzzing.md) for
//! the test command: the checks of `fuzz/fuzz_targets/mllp.rs` and `api_json.rs` on a
//! few thousand inputs, arbitrary bytes and the campaigns' seeds (`fuzz/seeds/`) with
//! random byte edits. The campaigns themselves run ten million coverage-guided inputs
//! per target (`scripts/fuzz.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ecg_alerts::api::{self, ApiState, Tokens};
use ecg_alerts::config::ServiceConfig;
use ecg_alerts::receivers::hl7;
use ecg_alerts::service::{AlertService, Caller, NoHooks};
use ecg_alerts::store::Store;
use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId,
};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token";

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..12)
}

/// `seed` with `edits`: overwrite, insert, delete, or duplicate a byte.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, kind, b) in edits {
        let i = if v.is_empty() { 0 } else { pos % v.len() };
        match kind {
            0 if !v.is_empty() => v[i] = b,
            1 => v.insert(i.min(v.len()), b),
            2 if !v.is_empty() => {
                v.remove(i);
            }
            _ if !v.is_empty() => {
                let x = v[i];
                v.insert(i, x);
            }
            _ => v.push(b),
        }
    }
    v
}

/// The MLLP harness's checks; the number of frames found.
fn check_mllp(data: &[u8]) -> usize {
    let mut rest = data;
    let mut frames = 0usize;
    while let Some((msg, used)) = hl7::mllp_unframe(rest) {
        assert!(used <= rest.len() && msg.len() + 3 <= used);
        let id = std::str::from_utf8(&rest[..used.min(8)]).unwrap_or("C1");
        let _ = hl7::ack_outcome(msg, id);
        let _ = hl7::ack_outcome(msg, "C1");
        rest = &rest[used..];
        frames += 1;
    }
    assert!(frames <= data.len() / 3);
    let _ = hl7::ack_outcome(data, "C1");
    let framed = hl7::mllp_frame(data);
    if !data.windows(2).any(|w| w == [0x1c, 0x0d]) {
        let (msg, used) = hl7::mllp_unframe(&framed).expect("a framed message unframes");
        assert_eq!((msg, used), (data, framed.len()));
    }
    let s = String::from_utf8_lossy(data);
    let e = hl7::escape(&s);
    assert!(!e.contains(['|', '^', '~', '&', '\r', '\n']));
    assert_eq!(hl7::unescape(&e), s);
    let _ = hl7::unescape(&s);
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mllp_arbitrary_and_mutated(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                  pick in any::<usize>(), e in edits()) {
        check_mllp(&bytes);
        let s = seeds("mllp");
        check_mllp(&mutate(&s[pick % s.len()], &e));
    }
}

#[test]
fn mllp_seeds_hold_frames() {
    for (i, s) in seeds("mllp").iter().enumerate() {
        assert!(check_mllp(s) >= 1, "mllp seed {i} has no frame");
    }
}

/// An in-memory store holding one firing alert, and the API over it.
async fn world() -> (axum::Router, String) {
    let cfg: ServiceConfig =
        serde_json::from_str(r#"{"store": {"url": "sqlite::memory:"}}"#).expect("config");
    let store = Store::open(&cfg.store.url, 1).await.expect("store");
    let svc = Arc::new(AlertService::new(cfg, store, "fuzz", Arc::new(NoHooks)).expect("service"));
    let start = DeviceTimeUs(1_800_000_000_000_000);
    let f = Finding::new(
        StreamId::new("bed-1").unwrap(),
        PatientId::new("p-1").unwrap(),
        FindingSource::Model {
            id: "af-rr".into(),
            version: "1.0.0".into(),
        },
        Condition::AtrialFibrillation,
        FindingStatus::Present,
        start,
        start.plus_us(30_000_000),
    )
    .with_score(Some(0.9));
    svc.on_finding(&f, Instant::now()).await.expect("finding");
    let all = Caller {
        team: "*".into(),
        actor: "fuzz".into(),
    };
    let id = svc.list(&all, &[], None, 10).await.expect("list")[0]
        .id
        .clone();
    let mut tokens = Tokens::default();
    tokens.add(TOKEN, all);
    let router = api::router(ApiState {
        service: svc,
        tokens: Arc::new(tokens),
        models_dir: None,
    });
    (router, id)
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

/// One request of the API harness: the first byte picks the route, the second the
/// content type, the rest is the body, query or id. Never a 500, bounded errors.
async fn check_api(router: &axum::Router, alert_id: &str, data: &[u8]) -> StatusCode {
    if data.len() < 2 {
        return StatusCode::OK;
    }
    let (route, ctype, rest) = (data[0] % 6, data[1] % 3, &data[2..]);
    let id = pct(alert_id.as_bytes());
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
            format!(
                "/api/v1/alerts?{}",
                pct(rest).replace("%26", "&").replace("%3D", "=")
            ),
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
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        assert!(bytes.len() < 64 * 1024, "{} byte error body", bytes.len());
    }
    status
}

#[test]
fn api_json_bodies_arbitrary_and_mutated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seeds = seeds("api_json");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let w = std::cell::RefCell::new(rt.block_on(world()));
    let (uses, accepted) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<usize>(),
        edits(),
    );
    runner
        .run(&strategy, |(bytes, pick, e)| {
            // A fresh store every 500 inputs, so accepted changes do not pile up.
            uses.set(uses.get() + 1);
            if uses.get() % 500 == 0 {
                *w.borrow_mut() = rt.block_on(world());
            }
            let (router, id) = w.borrow().clone();
            rt.block_on(check_api(&router, &id, &bytes));
            let s = rt.block_on(check_api(
                &router,
                &id,
                &mutate(&seeds[pick % seeds.len()], &e),
            ));
            accepted.set(accepted.get() + u32::from(s.is_success()));
            Ok(())
        })
        .unwrap();
    // The seeds are valid requests: some mutated ones still get through.
    assert!(accepted.get() > 0, "no mutated seed was accepted");
}

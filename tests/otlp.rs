//! OTLP trace export (a `--features otlp` build): the demo's stage spans reach a
//! collector over OTLP/HTTP, and carry no stream or patient identifiers.
//! The test command runs `cargo test --features otlp --test otlp`.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn collector() -> (String, Seen) {
    async fn traces(
        State(seen): State<Seen>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        seen.lock().unwrap().push((ct, body.to_vec()));
        StatusCode::OK
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stage_spans_reach_an_otlp_collector_without_identifiers() {
    let (endpoint, seen) = collector().await;
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cardiostream"))
            .args([
                "demo",
                "--duration",
                "12",
                "--speed",
                "4",
                "--patients",
                "6",
                "--http-addr",
                "127.0.0.1:0",
                "--api-token",
                "t",
                "--otlp-endpoint",
                &endpoint,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    });
    let status = run.await.unwrap();
    assert!(status.success(), "demo failed: {status}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "no OTLP export reached the collector");
    for (ct, _) in &seen {
        assert_eq!(ct, "application/x-protobuf");
    }
    let all: Vec<u8> = seen.into_iter().flat_map(|(_, b)| b).collect();
    for span in [
        &b"ingest"[..],
        b"sequence",
        b"analyze",
        b"score",
        b"publish",
    ] {
        assert!(
            contains(&all, span),
            "span {} not exported",
            String::from_utf8_lossy(span)
        );
    }
    assert!(contains(&all, b"cardiostream"), "service name missing");
    for id in [&b"bed-0"[..], b"pt-0"] {
        assert!(
            !contains(&all, id),
            "an identifier ({}) left in a span",
            String::from_utf8_lossy(id)
        );
    }
}

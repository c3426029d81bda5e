//! The HTTP side: Prometheus `/metrics`, `/healthz`, the pipeline's stream statuses,
//! and — where the process runs the alert service — its API and care-team console
//! ([`ecg_alerts::api`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ecg_alerts::api::ApiState;
use ecg_types::StreamId;
use tokio::sync::watch;

use crate::telemetry::Metrics;
use ecg_pipeline::StreamStatus;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Process metrics.
    pub metrics: Metrics,
    /// The alert service's API and console, where this process runs it.
    pub alerts: Option<ApiState>,
    /// Live stream statuses, where this process runs the pipeline.
    pub statuses: Option<Arc<Mutex<HashMap<StreamId, StreamStatus>>>>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    let alerts = state.alerts.clone();
    let base = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/streams", get(streams))
        .with_state(state);
    match alerts {
        Some(api) => base.merge(ecg_alerts::api::router(api)),
        None => base.route("/", get(index)),
    }
}

/// Serves a router (usually [`router`]) on `listener` until `shutdown` turns true.
///
/// # Errors
/// Fails if the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
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
    "cardiostream pipeline: /metrics (Prometheus), /healthz, /api/v1/streams.\n\
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

async fn streams(State(s): State<AppState>) -> Json<Vec<StreamStatus>> {
    let mut v: Vec<StreamStatus> = s
        .statuses
        .map(|st| {
            st.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.stream.cmp(&b.stream));
    Json(v)
}

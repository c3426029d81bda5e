//! The HTTP side: Prometheus `/metrics`, a JSON API and the first care-team page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use ecg_alerts::{AlertEngine, AlertView};
use ecg_types::StreamId;
use tokio::sync::watch;

use crate::pipeline::StreamStatus;
use crate::telemetry::Metrics;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Process metrics.
    pub metrics: Metrics,
    /// The alert engine, where this process runs the alert service.
    pub engine: Option<Arc<Mutex<AlertEngine>>>,
    /// Live stream statuses, where this process runs the pipeline.
    pub statuses: Option<Arc<Mutex<HashMap<StreamId, StreamStatus>>>>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/streams", get(streams))
        .with_state(state)
}

/// Serves the router on `listener` until `shutdown` turns true.
///
/// # Errors
/// Fails if the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
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

async fn index() -> Html<&'static str> {
    Html(include_str!("web/index.html"))
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

async fn alerts(State(s): State<AppState>) -> Result<Json<AlertView>, StatusCode> {
    let engine = s.engine.ok_or(StatusCode::NOT_FOUND)?;
    let view = engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .view();
    Ok(Json(view))
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

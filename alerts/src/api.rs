//! The alert service's HTTP API under `/api/v1` and the care-team console at `/`.
//!
//! Every `/api/v1` request carries `Authorization: Bearer <token>`; a token belongs
//! to one team (or `*`) and one actor. A team sees and acts on the alerts routed or
//! escalated to it only: no token or an unknown one is 401, another team's alert 403.
//! Every write is in the alert's audit trail under the token's actor.
//! The routes below are what `docs/alerts.md` documents.
//!
//! The token is checked before anything else — a request without an accepted one is
//! refused before its body is read — and a body is at most [`MAX_BODY_BYTES`]. Every
//! response carries [`security_headers`]: a content security policy (the console's own
//! script and style by hash, nothing inline, no framing), `nosniff`, no caching.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ecg_types::{AlertState, Priority};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::TokenConfig;
use crate::service::{ActionError, AlertService, Caller};
use crate::store::{
    AlertRecord, AuditEntry, DeliveryRecord, PrecisionRow, SilenceMatchers, Verdict,
};

/// The notice every list carries.
pub const DECISION_SUPPORT_NOTICE: &str =
    "Findings from AI models are decision support for clinicians, not diagnoses.";

/// Largest request body the API reads (a note or a silence is a few hundred bytes):
/// larger ones are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Tokens the API accepts, by SHA-256.
#[derive(Clone, Default)]
pub struct Tokens(Vec<([u8; 32], Caller)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(_, c)| (&c.team, &c.actor)))
            .finish()
    }
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("api token of {actor:?}: {reason}")]
pub struct TokenError {
    actor: String,
    reason: String,
}

impl Tokens {
    /// Tokens from the config (`token_sha256`, or `token_env` read now).
    ///
    /// # Errors
    /// A missing environment variable or a malformed hash.
    pub fn from_config(cfg: &[TokenConfig]) -> Result<Self, TokenError> {
        let mut t = Self::default();
        for c in cfg {
            let err = |reason: String| TokenError {
                actor: c.actor.clone(),
                reason,
            };
            let hash = match (&c.token_sha256, &c.token_env) {
                (Some(h), _) => {
                    let v = hex::decode(h).map_err(|e| err(format!("token_sha256: {e}")))?;
                    <[u8; 32]>::try_from(v.as_slice())
                        .map_err(|_| err("token_sha256 is not 32 bytes".into()))?
                }
                (None, Some(var)) => {
                    let v = std::env::var(var)
                        .map_err(|_| err(format!("environment variable {var} is not set")))?;
                    digest(&v)
                }
                (None, None) => return Err(err("no token_sha256 or token_env".into())),
            };
            t.0.push((
                hash,
                Caller {
                    team: c.team.clone(),
                    actor: c.actor.clone(),
                },
            ));
        }
        Ok(t)
    }

    /// Adds a plain token (the demo's generated one).
    pub fn add(&mut self, token: &str, caller: Caller) {
        self.0.push((digest(token), caller));
    }

    fn caller(&self, token: &str) -> Option<&Caller> {
        let h = digest(token);
        // Compare every entry fully, so timing does not tell which prefix matched.
        let mut found = None;
        for (k, c) in &self.0 {
            let diff = k
                .iter()
                .zip(h.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(c);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The service.
    pub service: Arc<AlertService>,
    /// Accepted tokens.
    pub tokens: Arc<Tokens>,
    /// Where model cards are (`models/`).
    pub models_dir: Option<PathBuf>,
}

/// The console and the API.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{id}", get(detail))
        .route("/api/v1/alerts/{id}/{action}", post(act))
        .route("/api/v1/silences", post(add_silence).get(silences))
        .route("/api/v1/precision", get(precision))
        .route("/api/v1/patients/{patient}/af-burden", get(af_burden))
        .route("/api/v1/models/{id}/card", get(model_card))
        .route_layer(middleware::from_fn_with_state(
            state.tokens.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(console))
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Middleware: the request's bearer token must be one of `tokens`; its [`Caller`] is
/// then in the request's extensions for the handler. Runs before any extractor, so
/// the body of a request without an accepted token is never read.
pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&tokens, req.headers()) {
        Ok(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        Err(e) => {
            // For intrusion detection: who was refused on which resource (the path's
            // first segments, `/api/v1/alerts`, never the rest, which may carry an
            // alert id; never the token).
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
            let resource = req
                .uri()
                .path()
                .split('/')
                .take(4)
                .collect::<Vec<_>>()
                .join("/");
            tracing::warn!(%peer, %resource, reason = %e.1, "api request refused: not authenticated");
            e.into_response()
        }
    }
}

/// The console's content security policy: its one inline script and one inline style
/// by SHA-256, the API on the same origin, nothing else; never framed.
fn console_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let html = CONSOLE_HTML;
        let hash = |open: &str, close: &str| -> String {
            use base64::Engine as _;
            let body = html
                .find(open)
                .map(|a| a + open.len())
                .and_then(|a| html[a..].find(close).map(|b| &html[a..a + b]))
                .unwrap_or("");
            let digest = Sha256::digest(body.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>")
        )
    })
}

/// Response middleware: `X-Content-Type-Options: nosniff`, no framing
/// (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), no referrer, and — for
/// everything but the console page, which sets its own — a policy that allows
/// nothing to run and `Cache-Control: no-store` (answers carry patient data).
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CONSOLE_HTML: &str = include_str!("web/console.html");

async fn console() -> Response {
    let csp = HeaderValue::from_str(console_csp())
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        Html(CONSOLE_HTML),
    )
        .into_response()
}

/// An API error as JSON `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let status = match &e {
            ActionError::NotFound => StatusCode::NOT_FOUND,
            ActionError::Forbidden => StatusCode::FORBIDDEN,
            ActionError::Conflict(_) => StatusCode::CONFLICT,
            ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
            ActionError::Store(err) => {
                tracing::error!(error = %err, "alert store failed");
                return ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "alert store unavailable".into(),
                );
            }
        };
        ApiError(status, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ActionError::Store(e).into()
    }
}

/// The caller a request's `Authorization: Bearer <token>` stands for.
///
/// # Errors
/// 401 without a bearer token or with one that is not accepted.
pub fn authenticate(tokens: &Tokens, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)".into(),
            )
        })?;
    tokens
        .caller(token)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "token not accepted".into()))
}

/// A JSON body (an empty one is `T::default()` where `empty` allows it), parsed only
/// after the token was accepted; errors are JSON like every other.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    empty: Option<T>,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if let Some(d) = empty {
            return Ok(d);
        }
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a JSON body is required".into(),
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be Content-Type: application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// One alert as the API shows it.
#[derive(Debug, Serialize)]
pub struct AlertJson {
    id: String,
    patient: String,
    stream: String,
    condition: ecg_types::Condition,
    priority: Priority,
    kind: ecg_types::AlertKind,
    state: AlertState,
    team: String,
    unit: Option<String>,
    summary: String,
    score: Option<f64>,
    value: Option<f64>,
    decision_support: bool,
    source: ecg_types::FindingSource,
    rule: String,
    model: Option<String>,
    since_us: i64,
    fired_at: String,
    updated_at: String,
    notified_at: Option<String>,
    escalation_level: i64,
    ack_deadline: Option<String>,
    acknowledged_by: Option<String>,
    acknowledged_at: Option<String>,
    verdict: Option<Verdict>,
    silenced: bool,
    model_card: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

impl From<&AlertRecord> for AlertJson {
    fn from(a: &AlertRecord) -> Self {
        let unacked = matches!(
            a.state,
            AlertState::Firing | AlertState::Notified | AlertState::Escalated
        );
        AlertJson {
            id: a.id.clone(),
            patient: a.patient.clone(),
            stream: a.stream.clone(),
            condition: a.condition,
            priority: a.priority,
            kind: a.kind,
            state: a.state,
            team: a.team.clone(),
            unit: a.unit.clone(),
            summary: a.summary.clone(),
            score: a.score,
            value: a.value,
            decision_support: a.decision_support,
            source: a.source.clone(),
            rule: a.rule.clone(),
            model: a.model.clone(),
            since_us: a.since_us,
            fired_at: rfc3339(a.fired_ms),
            updated_at: rfc3339(a.updated_ms),
            notified_at: a.notified_ms.map(rfc3339),
            escalation_level: a.level,
            ack_deadline: if unacked && a.state != AlertState::Firing {
                a.due_ms.map(rfc3339)
            } else {
                None
            },
            acknowledged_by: a.acked_by.clone(),
            acknowledged_at: a.acked_ms.map(rfc3339),
            verdict: a.verdict,
            silenced: a.silenced,
            model_card: match &a.source {
                ecg_types::FindingSource::Model { id, .. } => {
                    Some(format!("/api/v1/models/{id}/card"))
                }
                ecg_types::FindingSource::Detector { .. } => None,
            },
        }
    }
}

async fn me(Extension(c): Extension<Caller>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        serde_json::json!({ "team": c.team, "actor": c.actor }),
    ))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    priority: Option<Priority>,
    team: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(s): State<ApiState>,
    Extension(mut c): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(t) = q.team {
        if c.team != "*" && c.team != t {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("this token acts for team {:?}", c.team),
            ));
        }
        c.team = t;
    }
    let states: Vec<AlertState> = match q.state.as_deref() {
        None | Some("open") => vec![
            AlertState::Firing,
            AlertState::Notified,
            AlertState::Escalated,
            AlertState::Acknowledged,
        ],
        Some("all") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|st| {
                serde_json::from_value(serde_json::Value::String(st.trim().to_owned())).map_err(
                    |_| {
                        ApiError(
                            StatusCode::BAD_REQUEST,
                            format!("unknown state {st:?} (open, all, firing, notified, acknowledged, escalated, resolved)"),
                        )
                    },
                )
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let alerts = s.service.list(&c, &states, q.priority, limit).await?;
    Ok(Json(serde_json::json!({
        "alerts": alerts.iter().map(AlertJson::from).collect::<Vec<_>>(),
        "notice": DECISION_SUPPORT_NOTICE,
    })))
}

#[derive(Debug, Serialize)]
struct Detail {
    alert: AlertJson,
    strip: Option<ecg_types::Strip>,
    audit: Vec<AuditJson>,
    deliveries: Vec<DeliveryJson>,
    notice: &'static str,
}

#[derive(Debug, Serialize)]
struct AuditJson {
    at: String,
    actor: String,
    action: String,
    from: Option<String>,
    to: Option<String>,
    verdict: Option<Verdict>,
    note: Option<String>,
}

impl From<AuditEntry> for AuditJson {
    fn from(e: AuditEntry) -> Self {
        let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(e.at_us).unwrap_or(0));
        AuditJson {
            at: humantime::format_rfc3339_millis(t).to_string(),
            actor: crate::text::neutralise(&e.actor),
            action: e.action,
            from: e.from,
            to: e.to,
            verdict: e.verdict,
            // Entries stored before notes were neutralised on the way in.
            note: e.note.as_deref().map(crate::text::neutralise),
        }
    }
}

#[derive(Debug, Serialize)]
struct DeliveryJson {
    receiver: String,
    kind: String,
    event: String,
    level: i64,
    at: String,
    ok: Option<bool>,
    attempts: i64,
    error: Option<String>,
}

impl From<DeliveryRecord> for DeliveryJson {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryJson {
            at: rfc3339(d.done_ms.unwrap_or(d.claimed_ms)),
            receiver: d.receiver,
            kind: d.kind,
            event: d.event,
            level: d.level,
            ok: d.ok,
            attempts: d.attempts,
            error: d.error,
        }
    }
}

async fn detail(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (rec, audit, deliveries) = s.service.detail(&c, &id).await?;
    Ok(Json(Detail {
        alert: AlertJson::from(&rec),
        strip: rec.strip.clone(),
        audit: audit.into_iter().map(AuditJson::from).collect(),
        deliveries: deliveries.into_iter().map(DeliveryJson::from).collect(),
        notice: DECISION_SUPPORT_NOTICE,
    }))
}

/// Body of ack and resolve.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    verdict: Option<Verdict>,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v1/alerts/{id}/{ack|escalate|resolve}`.
async fn act(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    if !matches!(action.as_str(), "ack" | "escalate" | "resolve") {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no action {action:?} (ack, escalate, resolve)"),
        ));
    }
    let b: ActionBody = json_body(&headers, &body, Some(ActionBody::default()))?;
    let note = b.note.as_deref();
    let rec = match action.as_str() {
        "ack" => s.service.acknowledge(&c, &id, b.verdict, note).await?,
        "resolve" => s.service.resolve(&c, &id, b.verdict, note).await?,
        _ => {
            if b.verdict.is_some() {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "a verdict goes with ack or resolve, not escalate".into(),
                ));
            }
            s.service.escalate(&c, &id, note).await?
        }
    };
    Ok(Json(AlertJson::from(&rec)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: SilenceMatchers,
    duration_s: u64,
    comment: String,
}

async fn add_silence(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let b: SilenceBody = json_body(&headers, &body, None)?;
    let silence = s
        .service
        .silence(&c, b.matchers, b.duration_s, &b.comment)
        .await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

async fn silences(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    let now = crate::store::ms(SystemTime::now());
    let mut v = s.service.store().silences(now).await?;
    v.retain(|x| c.team == "*" || x.team == c.team || x.team == "*");
    for x in &mut v {
        x.comment = crate::text::neutralise(&x.comment);
    }
    Ok(Json(serde_json::json!({ "silences": v })))
}

/// `GET /api/v1/patients/{patient}/af-burden`: the share of the patient's monitored
/// (non-indeterminate) time in AF, from the AF findings of non-shadow sources.
async fn af_burden(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(patient): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let b = s
        .service
        .af_burden(&c, &patient)
        .await
        .map_err(|e| match e {
            ActionError::NotFound => ApiError(
                StatusCode::NOT_FOUND,
                format!("no AF monitoring recorded for patient {patient:?}"),
            ),
            e => e.into(),
        })?;
    let since = b.since_us.map(|us| {
        let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
        humantime::format_rfc3339_millis(t).to_string()
    });
    Ok(Json(serde_json::json!({
        "patient": b.patient,
        "af_s": b.af_us as f64 / 1e6,
        "monitored_s": b.monitored_us as f64 / 1e6,
        "burden": b.burden(),
        "since": since,
        "streams": b.streams,
        "notice": AF_BURDEN_NOTICE,
    })))
}

/// What the AF burden is, with every answer.
pub const AF_BURDEN_NOTICE: &str =
    "AF burden: share of monitored, non-indeterminate time in atrial \
     fibrillation, from the AF findings of active (non-shadow) detectors and models; decision \
     support for clinicians, not a diagnosis.";

async fn precision(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let rows: Vec<PrecisionRow> = s.service.store().precision().await?;
    Ok(Json(serde_json::json!({ "rows": rows })))
}

async fn model_card(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no model card for {id:?}"));
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || id.starts_with('.')
    {
        return Err(not_found());
    }
    let dir = s.models_dir.as_ref().ok_or_else(not_found)?;
    let text =
        std::fs::read_to_string(dir.join(&id).join("MODEL_CARD.md")).map_err(|_| not_found())?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    )
        .into_response())
}

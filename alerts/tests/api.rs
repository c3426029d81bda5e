//! The HTTP API over a real socket: bearer tokens scoped to teams (401 without a
//! known token, 403 for another team's alert), acknowledgement with a verdict through
//! the API ending up in the audit trail, silences, the precision feedback, model
//! cards, and the console page.

use std::sync::Arc;
use std::time::Instant;

use ecg_alerts::api::{self, ApiState, Tokens};
use ecg_alerts::config::ServiceConfig;
use ecg_alerts::service::{AlertService, Caller, NoHooks};
use ecg_alerts::store::Store;
use ecg_types::{
    Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn finding(stream: &str, c: Condition, t_s: i64) -> Finding {
    let stream = StreamId::new(stream).expect("id");
    let source = FindingSource::Model {
        id: "af-rr".into(),
        version: "1.0.0".into(),
    };
    let start = DeviceTimeUs(base_us() + t_s * 5_000_000);
    Finding {
        key: Finding::make_key(&stream, &source, c, start),
        patient: PatientId::new(format!("p-{stream}")).expect("id"),
        stream,
        source,
        condition: c,
        status: FindingStatus::Present,
        window_start: start,
        window_end: start.plus_us(30_000_000),
        score: Some(0.91),
        value: None,
        decision_support: true,
        shadow: false,
        strip: Some(Box::new(ecg_types::Strip {
            lead: ecg_types::Lead::II,
            sample_rate_hz: 250,
            start_us: start.0,
            samples_uv: (0..2500).map(|i| (i % 200) * 5).collect(),
            more: Vec::new(),
            // Two pacemaker pulses the device reported, 0.4 s and 1.2 s in.
            pace_us: vec![start.0 + 400_000, start.0 + 1_200_000],
        })),
        reason: None,
        episode_start: None,
        episode_end: None,
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (s, body) = self.call(reqwest::Method::GET, path, token, None).await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (s, b) = self
            .call(reqwest::Method::POST, path, Some(token), Some(body))
            .await;
        (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_teams_and_every_write_is_audited() {
    let cfg: ServiceConfig = toml::from_str(
        r#"
        [store]
        url = "sqlite::memory:"
        [[assignments]]
        stream_prefix = "icu-"
        team = "icu"
        [[assignments]]
        stream_prefix = "bed-"
        team = "telemetry"
        "#,
    )
    .expect("config");
    let store = Store::open(&cfg.store.url, 1).await.expect("store");
    let svc =
        Arc::new(AlertService::new(cfg, store, "api-test", Arc::new(NoHooks)).expect("service"));
    for s in ["bed-1", "icu-1"] {
        svc.on_finding(
            &finding(s, Condition::AtrialFibrillation, 0),
            Instant::now(),
        )
        .await
        .expect("finding");
    }
    let mut tokens = Tokens::default();
    tokens.add(
        "tele-token",
        Caller {
            team: "telemetry".into(),
            actor: "nurse-a".into(),
        },
    );
    tokens.add(
        "icu-token",
        Caller {
            team: "icu".into(),
            actor: "nurse-icu".into(),
        },
    );
    let models = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let app = api::router(ApiState {
        service: svc.clone(),
        tokens: Arc::new(tokens),
        models_dir: Some(models),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Api {
        base,
        http: reqwest::Client::new(),
    };

    // No token, a wrong token: 401.
    assert_eq!(
        api.get("/api/v1/alerts", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/api/v1/alerts", Some("guess")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Each team sees its own patients only.
    let (s, tele) = api.get("/api/v1/alerts", Some("tele-token")).await;
    assert_eq!(s, StatusCode::OK);
    let alerts = tele["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{tele}");
    assert_eq!(alerts[0]["stream"], "bed-1");
    assert_eq!(alerts[0]["decision_support"], true);
    assert_eq!(alerts[0]["kind"], "ai_screening");
    assert_eq!(alerts[0]["model_card"], "/api/v1/models/af-rr/card");
    assert!(tele["notice"]
        .as_str()
        .expect("notice")
        .contains("not diagnoses"));
    let tele_id = alerts[0]["id"].as_str().expect("id").to_owned();
    // The priority filter is applied in the store, before the limit.
    let (_, low) = api
        .get("/api/v1/alerts?priority=low&limit=1", Some("tele-token"))
        .await;
    assert_eq!(low["alerts"].as_array().expect("alerts").len(), 1, "{low}");
    let (_, high) = api
        .get("/api/v1/alerts?priority=high", Some("tele-token"))
        .await;
    assert!(
        high["alerts"].as_array().expect("alerts").is_empty(),
        "{high}"
    );
    let (_, icu) = api.get("/api/v1/alerts", Some("icu-token")).await;
    let icu_id = icu["alerts"][0]["id"].as_str().expect("id").to_owned();
    assert_ne!(tele_id, icu_id);
    // Another team's alert: 403, to read or to act on; asking for another team: 403.
    let enc = |id: &str| id.replace('/', "%2F");
    assert_eq!(
        api.get(
            &format!("/api/v1/alerts/{}", enc(&icu_id)),
            Some("tele-token")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.post(
            &format!("/api/v1/alerts/{}/ack", enc(&icu_id)),
            "tele-token",
            json!({})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/api/v1/alerts?team=icu", Some("tele-token"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/api/v1/alerts/nope", Some("tele-token")).await.0,
        StatusCode::NOT_FOUND
    );

    // The detail carries the strip, the audit trail and the decision-support notice.
    let (s, d) = api
        .get(
            &format!("/api/v1/alerts/{}", enc(&tele_id)),
            Some("tele-token"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        d["strip"]["samples_uv"].as_array().expect("strip").len(),
        2500
    );
    assert_eq!(d["strip"]["lead"], "II");
    // The pacemaker marks come back with it, at their device times.
    let start_us = d["strip"]["start_us"].as_i64().expect("start");
    assert_eq!(
        d["strip"]["pace_us"],
        json!([start_us + 400_000, start_us + 1_200_000])
    );

    // Acknowledge with a verdict through the API: audited under the token's actor.
    let (s, acked) = api
        .post(
            &format!("/api/v1/alerts/{}/ack", enc(&tele_id)),
            "tele-token",
            json!({"verdict": "confirmed", "note": "AF on the strip"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "nurse-a");
    let (s, again) = api
        .post(
            &format!("/api/v1/alerts/{}/ack", enc(&tele_id)),
            "tele-token",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    let (_, d) = api
        .get(
            &format!("/api/v1/alerts/{}", enc(&tele_id)),
            Some("tele-token"),
        )
        .await;
    let audit = d["audit"].as_array().expect("audit");
    let last = audit.last().expect("entry");
    assert_eq!(last["action"], "acknowledged");
    assert_eq!(last["actor"], "nurse-a");
    assert_eq!(last["verdict"], "confirmed");
    assert_eq!(last["note"], "AF on the strip");
    // A bad verdict is a 4xx, not a state change.
    let (s, _) = api
        .post(
            &format!("/api/v1/alerts/{}/resolve", enc(&tele_id)),
            "tele-token",
            json!({"verdict": "maybe"}),
        )
        .await;
    assert!(s.is_client_error(), "{s}");

    // The feedback loop: precision per rule and model.
    let (_, p) = api.get("/api/v1/precision", Some("tele-token")).await;
    assert_eq!(p["rows"][0]["rule"], "atrial_fibrillation/ai", "{p}");
    assert_eq!(p["rows"][0]["model"], "af-rr@1.0.0");
    assert_eq!(p["rows"][0]["precision"], 1.0);

    // Silences: validated, scoped to the caller's team, listed.
    let (s, sil) = api
        .post(
            "/api/v1/silences",
            "tele-token",
            json!({"matchers": {"stream": "bed-1"}, "duration_s": 600, "comment": "transport to imaging"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sil}");
    assert_eq!(sil["team"], "telemetry");
    assert_eq!(sil["created_by"], "nurse-a");
    let (s, _) = api
        .post(
            "/api/v1/silences",
            "tele-token",
            json!({"matchers": {}, "duration_s": 600, "comment": "everything"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, list) = api.get("/api/v1/silences", Some("icu-token")).await;
    assert_eq!(
        list["silences"].as_array().expect("list").len(),
        0,
        "{list}"
    );

    // Model cards by id, and nothing outside the models directory.
    let (s, card) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/models/af-rr/card",
            Some("tele-token"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        card.to_lowercase().contains("decision support"),
        "the card states the intended use"
    );
    let (s, _) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/models/..%2F..%2Fetc/card",
            Some("tele-token"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The console page is served without a token (it asks for one).
    let (s, page) = api.call(reqwest::Method::GET, "/", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.to_lowercase().contains("decision support"));
}

/// A service on an in-memory store with `cfg` (TOML of `[alerts]`), one AF finding
/// per stream in `streams`, and the API on a real socket with `tokens` (token, team,
/// actor).
async fn start(
    cfg: &str,
    streams: &[&str],
    tokens: &[(&str, &str, &str)],
) -> (Api, Arc<AlertService>) {
    let cfg: ServiceConfig = toml::from_str(cfg).expect("config");
    let store = Store::open(&cfg.store.url, 1).await.expect("store");
    let svc =
        Arc::new(AlertService::new(cfg, store, "api-test", Arc::new(NoHooks)).expect("service"));
    for s in streams {
        svc.on_finding(
            &finding(s, Condition::AtrialFibrillation, 0),
            Instant::now(),
        )
        .await
        .expect("finding");
    }
    let mut t = Tokens::default();
    for (token, team, actor) in tokens {
        t.add(
            token,
            Caller {
                team: (*team).into(),
                actor: (*actor).into(),
            },
        );
    }
    let app = api::router(ApiState {
        service: svc.clone(),
        tokens: Arc::new(t),
        models_dir: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Api {
        base,
        http: reqwest::Client::new(),
    };
    (api, svc)
}

const ONE_TEAM: &str = r#"
    [store]
    url = "sqlite::memory:"
    [[assignments]]
    stream_prefix = "bed-"
    team = "telemetry"
"#;

/// Issue 15, item 6: the token is checked before a body is read or parsed; bodies
/// and free-text fields have bounds (a 1.5 MB silence comment was stored, and every
/// new alert reloads every silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_body_and_bodies_and_fields_are_bounded() {
    let (api, svc) = start(ONE_TEAM, &["bed-1"], &[("t", "telemetry", "nurse-a")]).await;
    let id = svc
        .list(
            &Caller {
                team: "*".into(),
                actor: "test".into(),
            },
            &[],
            None,
            10,
        )
        .await
        .expect("list")[0]
        .id
        .replace('/', "%2F");
    // Garbage bodies without a token: 401, not a parse error.
    for path in [
        "/api/v1/silences".to_owned(),
        format!("/api/v1/alerts/{id}/ack"),
    ] {
        let (s, body) = api
            .call(
                reqwest::Method::POST,
                &path,
                None,
                Some(Value::String("{not json".into())),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let r = api
            .http
            .post(format!("{}{path}", api.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{\"matchers\": ")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A 1.5 MB comment is refused before it is parsed, let alone stored (checked
    // below). The server answers 413 as soon as the declared length is over its limit
    // and closes the connection; a client still writing the body may then see the
    // connection broken before it reads the answer. Both are a refusal; a success or
    // any other status is not.
    // Its own client: the connection the server closes is not pooled for the
    // requests after it (reusing it gave them a broken pipe).
    let huge = "x".repeat(1_500_000);
    let sent = reqwest::Client::new()
        .post(format!("{}/api/v1/silences", api.base))
        .bearer_auth("t")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            json!({"matchers": {"stream": "bed-1"}, "duration_s": 60, "comment": huge}).to_string(),
        )
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() && !e.is_timeout() && !e.is_connect(),
            "not a refusal of the body: {e:?}"
        ),
    }
    // Within the body limit, fields have their own bounds.
    let (s, e) = api
        .post(
            "/api/v1/silences",
            "t",
            json!({"matchers": {"stream": "bed-1"}, "duration_s": 60, "comment": "y".repeat(2001)}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().expect("error").contains("comment"),
        "{e}"
    );
    let (s, e) = api
        .post(
            "/api/v1/silences",
            "t",
            json!({"matchers": {"patient": "p".repeat(300)}, "duration_s": 60, "comment": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().expect("error").contains("patient"),
        "{e}"
    );
    let (s, e) = api
        .post(
            &format!("/api/v1/alerts/{id}/ack"),
            "t",
            json!({"note": "n".repeat(2001)}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // Nothing of it was stored.
    let now = ecg_alerts::store::ms(std::time::SystemTime::now());
    assert!(svc
        .store()
        .silences(now)
        .await
        .expect("silences")
        .is_empty());
    // A body that is not JSON, with a token: 400 with a JSON error; a body in
    // another content type: 415.
    let (s, e) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/silences",
            Some("t"),
            Some(Value::String("{not json".into())),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e.contains("\"error\""), "{e}");
    let r = api
        .http
        .post(format!("{}/api/v1/silences", api.base))
        .bearer_auth("t")
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(r#"{"matchers": {"stream": "bed-1"}, "duration_s": 60, "comment": "ok"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // And the ordinary case still works.
    let (s, e) = api
        .post(
            "/api/v1/silences",
            "t",
            json!({"matchers": {"stream": "bed-1"}, "duration_s": 60, "comment": "transport"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

/// Issue 15, item 6: a team name is matched literally, never as a `LIKE` pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_names_with_like_wildcards_match_only_themselves() {
    let cfg = r#"
        [store]
        url = "sqlite::memory:"
        [[assignments]]
        stream_prefix = "x-"
        team = "abc"
        [[assignments]]
        stream_prefix = "y-"
        team = "a_c"
        [[assignments]]
        stream_prefix = "z-"
        team = "a%"
    "#;
    let (api, _svc) = start(
        cfg,
        &["x-1", "y-1", "z-1"],
        &[
            ("under", "a_c", "u"),
            ("percent", "%", "p"),
            ("apct", "a%", "q"),
        ],
    )
    .await;
    let streams = |v: &Value| -> Vec<String> {
        v["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["stream"].as_str().expect("stream").to_owned())
            .collect()
    };
    let (_, v) = api.get("/api/v1/alerts", Some("under")).await;
    assert_eq!(streams(&v), ["y-1"], "{v}");
    let (_, v) = api.get("/api/v1/alerts", Some("percent")).await;
    assert!(streams(&v).is_empty(), "{v}");
    let (_, v) = api.get("/api/v1/alerts", Some("apct")).await;
    assert_eq!(streams(&v), ["z-1"], "{v}");
}

/// Issue 15, item 6: the console and the API send a content security policy that
/// allows the console's own script and style only (by hash) and no framing, and
/// `nosniff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_api_send_security_headers() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let (api, _svc) = start(ONE_TEAM, &[], &[("t", "telemetry", "nurse-a")]).await;
    let page = api
        .http
        .get(format!("{}/", api.base))
        .send()
        .await
        .expect("console");
    let h = page.headers().clone();
    let html = page.text().await.expect("html");
    let header = |n: &str| {
        h.get(n)
            .unwrap_or_else(|| panic!("no {n} header"))
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    let csp = header("content-security-policy");
    for d in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(d), "{d} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    // The inline script and style are allowed by their hashes, and nothing else
    // inline is on the page (no style attributes, no event handlers).
    let inner = |open: &str, close: &str| -> String {
        let a = html.find(open).expect(open) + open.len();
        let b = a + html[a..].find(close).expect(close);
        html[a..b].to_owned()
    };
    for (kind, body) in [
        ("script-src", inner("<script>", "</script>")),
        ("style-src", inner("<style>", "</style>")),
    ] {
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
        assert!(
            csp.contains(&format!("{kind} 'sha256-{hash}'")),
            "{kind} hash {hash} not in {csp}"
        );
    }
    assert_eq!(html.matches("<script").count(), 1);
    assert!(
        !html.contains(" style=\""),
        "inline style attributes need 'unsafe-inline'"
    );
    assert!(
        !html.contains(" onclick="),
        "inline handlers need 'unsafe-inline'"
    );
    // API answers: nosniff, no framing, not cached.
    let r = api
        .http
        .get(format!("{}/api/v1/alerts", api.base))
        .bearer_auth("t")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h["content-security-policy"]
        .to_str()
        .expect("ascii")
        .contains("frame-ancestors 'none'"));
    // Refusals too.
    let r = api
        .http
        .get(format!("{}/api/v1/alerts", api.base))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// Issue 15, item 6: bidirectional overrides and other control characters typed into
/// a note or a silence are neutralised before they are stored and shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_bidi_characters_in_notes_and_comments_are_neutralised() {
    let (api, svc) = start(ONE_TEAM, &["bed-1"], &[("t", "telemetry", "nurse-a")]).await;
    let id = svc
        .list(
            &Caller {
                team: "*".into(),
                actor: "test".into(),
            },
            &[],
            None,
            10,
        )
        .await
        .expect("list")[0]
        .id
        .replace('/', "%2F");
    // "checked, fine" that a bidi override would show as something else, a bell, an
    // escape sequence; a newline and a tab are kept as a line break and a space.
    let evil = "ok \u{202E}enif ,dekcehc\u{202C} \u{2066}x\u{2069}\u{7}\u{1b}[2J\u{200F}\nnext\tline\u{85}";
    let (s, e) = api
        .post(
            &format!("/api/v1/alerts/{id}/ack"),
            "t",
            json!({"note": evil}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, d) = api.get(&format!("/api/v1/alerts/{id}"), Some("t")).await;
    let note = d["audit"].as_array().expect("audit").last().expect("entry")["note"]
        .as_str()
        .expect("note")
        .to_owned();
    let bad = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    assert!(!note.chars().any(bad), "{note:?}");
    assert!(
        note.contains("enif ,dekcehc") && note.contains("\nnext line"),
        "{note:?}"
    );
    assert!(
        note.contains('\u{FFFD}'),
        "what was removed is visible: {note:?}"
    );
    let (s, sil) = api
        .post(
            "/api/v1/silences",
            "t",
            json!({"matchers": {"stream": "bed-1"}, "duration_s": 60, "comment": evil}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sil}");
    let now = ecg_alerts::store::ms(std::time::SystemTime::now());
    let stored = svc.store().silences(now).await.expect("silences");
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].comment.chars().any(bad),
        "{:?}",
        stored[0].comment
    );
    assert!(!sil["comment"].as_str().expect("comment").chars().any(bad));
}

/// Device time of the tests' first window: a minute before the tests started, on a
/// whole second (findings are current, within the alert service's staleness horizon,
/// whenever the tests run).
fn base_us() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs();
        i64::try_from(now - 60).expect("seconds") * 1_000_000
    })
}

/// `GET /api/v1/patients/{patient}/af-burden`: the patient's time in AF over
/// monitored time, to the team that looks after them only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn af_burden_per_patient() {
    let cfg: ServiceConfig = toml::from_str(
        r#"
        [store]
        url = "sqlite::memory:"
        [[assignments]]
        stream_prefix = "icu-"
        team = "icu"
        "#,
    )
    .expect("config");
    let store = Store::open(&cfg.store.url, 1).await.expect("store");
    let svc =
        Arc::new(AlertService::new(cfg, store, "api-test", Arc::new(NoHooks)).expect("service"));
    // 30 s windows every 5 s: four in AF (0–45 s), two without (to 55 s), one the
    // signal could not decide and one from a shadow model, neither counted.
    for t in 0..8 {
        let mut f = finding("icu-1", Condition::AtrialFibrillation, t);
        f.status = match t {
            0..=3 => FindingStatus::Present,
            4 | 5 => FindingStatus::Absent,
            _ => FindingStatus::Indeterminate,
        };
        svc.on_finding(&f, Instant::now()).await.expect("finding");
    }
    let mut shadow = finding("icu-1", Condition::AtrialFibrillation, 9);
    shadow.shadow = true;
    svc.on_finding(&shadow, Instant::now())
        .await
        .expect("finding");
    svc.flush_af_burden().await.expect("flush");
    let mut tokens = Tokens::default();
    for (token, team) in [("icu-token", "icu"), ("tele-token", "telemetry")] {
        tokens.add(
            token,
            Caller {
                team: team.into(),
                actor: format!("nurse-{team}"),
            },
        );
    }
    let app = api::router(ApiState {
        service: svc,
        tokens: Arc::new(tokens),
        models_dir: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Api {
        base,
        http: reqwest::Client::new(),
    };
    let path = "/api/v1/patients/p-icu-1/af-burden";

    let (s, b) = api.get(path, Some("icu-token")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["patient"], "p-icu-1");
    assert_eq!(b["af_s"], 45.0, "{b}");
    assert_eq!(b["monitored_s"], 55.0, "{b}");
    assert!((b["burden"].as_f64().expect("burden") - 45.0 / 55.0).abs() < 1e-9);
    assert!(b["since"].as_str().expect("since").ends_with('Z'), "{b}");
    assert!(b["notice"]
        .as_str()
        .expect("notice")
        .contains("not a diagnosis"));

    assert_eq!(api.get(path, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.get(path, Some("tele-token")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/api/v1/patients/p-nobody/af-burden", Some("icu-token"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // The console shows it on an alert's detail.
    let (s, page) = api.call(reqwest::Method::GET, "/", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("d-af-burden") && page.contains("/af-burden"));
}

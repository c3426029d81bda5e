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
    let start = DeviceTimeUs(1_800_000_000_000_000 + t_s * 5_000_000);
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
        })),
        reason: None,
        episode_start: None,
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

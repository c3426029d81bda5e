//! The alert service end to end on a real store — SQLite always, PostgreSQL when
//! `CARDIOSTREAM_TEST_PG` names a server (the test command starts one) — with a real
//! webhook peer on 127.0.0.1 that checks every signature.
//!
//! Each test runs once per backend, on a fresh database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ecg_alerts::config::ServiceConfig;
use ecg_alerts::service::{ActionError, AlertService, Caller, NoHooks};
use ecg_alerts::store::{SilenceMatchers, Store, Verdict};
use ecg_types::{
    AlertState, Condition, DeviceTimeUs, Finding, FindingSource, FindingStatus, PatientId, StreamId,
};

const SECRET: &str = "test-secret";

/// What the peer received: (idempotency key, JSON body).
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver that accepts only correctly signed notifications.
async fn peer() -> (String, Received) {
    async fn hook(
        State(rx): State<Received>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ecg_alerts::receivers::webhook::verify_request(SECRET.as_bytes(), &headers, &body) {
            return StatusCode::UNAUTHORIZED;
        }
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json body");
        rx.lock()
            .expect("lock")
            .push((h("idempotency-key").to_owned(), json));
        StatusCode::NO_CONTENT
    }
    let rx: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

/// Fresh stores: in-memory SQLite, a SQLite file, and a new PostgreSQL database
/// when a server is configured.
async fn backends() -> Vec<(&'static str, String)> {
    let mut v = vec![("sqlite", "sqlite::memory:".to_owned())];
    match std::env::var("CARDIOSTREAM_TEST_PG") {
        Ok(admin) => v.push(("postgres", fresh_pg(&admin).await)),
        Err(_) => eprintln!(
            "SKIP postgres backend: CARDIOSTREAM_TEST_PG is not set (scripts/setup/postgres.sh starts a server)"
        ),
    }
    v
}

/// A new database on the test server, for one test.
async fn fresh_pg(admin: &str) -> String {
    let name = format!("cs_test_{:016x}", rand::random::<u64>());
    Store::create_postgres_database(admin, &name)
        .await
        .expect("create database")
}

fn config(url: &str, extra: &str) -> ServiceConfig {
    let src = format!(
        r#"
        default_team = "telemetry"
        [store]
        url = "{url}"
        [[teams]]
        name = "telemetry"
        oncall = {{ members = ["nurse-a", "nurse-b"], shift_hours = 8, start = "2026-01-01T00:00:00Z" }}
        [[teams]]
        name = "cardiology"
        oncall = {{ members = ["dr-lee"], shift_hours = 12, start = "2026-01-01T00:00:00Z" }}
        [[receivers]]
        name = "ward"
        kind = "webhook"
        url = "PEER"
        secret = "{SECRET}"
        max_attempts = 3
        backoff_ms = 20
        {extra}
        "#
    );
    toml::from_str(&src).expect("test config")
}

async fn service(cfg: ServiceConfig, peer_url: &str, instance: &str) -> Arc<AlertService> {
    let mut cfg = cfg;
    for r in &mut cfg.receivers {
        if let ecg_alerts::receivers::ReceiverConfig::Webhook(w) = &mut r.config {
            w.url = peer_url.to_owned();
        }
    }
    let store = Store::open(&cfg.store.url, cfg.store.max_connections)
        .await
        .expect("store");
    Arc::new(AlertService::new(cfg, store, instance, Arc::new(NoHooks)).expect("service"))
}

fn finding(stream: &str, c: Condition, status: FindingStatus, t_s: i64) -> Finding {
    let stream = StreamId::new(stream).expect("id");
    let source = FindingSource::Detector {
        name: "rhythm".into(),
    };
    let start = DeviceTimeUs(1_800_000_000_000_000 + t_s * 5_000_000);
    Finding {
        key: Finding::make_key(&stream, &source, c, start),
        patient: PatientId::new(format!("p-{stream}")).expect("id"),
        stream,
        source,
        condition: c,
        status,
        window_start: start,
        window_end: start.plus_us(10_000_000),
        score: None,
        value: Some(0.0),
        decision_support: false,
        shadow: false,
        strip: None,
        reason: None,
        episode_start: None,
    }
}

fn nurse() -> Caller {
    Caller {
        team: "telemetry".into(),
        actor: "nurse-a".into(),
    }
}

/// Waits until `f` holds (deliveries run on spawned tasks).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events(rx: &Received) -> Vec<String> {
    rx.lock()
        .expect("lock")
        .iter()
        .map(|(k, _)| k.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_notify_acknowledge_with_verdict_audit_and_precision() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let svc = service(
            config(&url, "[route]\nreceivers = [\"ward\"]"),
            &peer_url,
            "i1",
        )
        .await;
        // Asystole is high priority: no group wait, notified at once.
        svc.on_finding(
            &finding("bed-1", Condition::Asystole, FindingStatus::Present, 0),
            Instant::now(),
        )
        .await
        .expect("finding");
        eventually("fired notification", || events(&rx).len() == 1).await;
        let (key, body) = rx.lock().expect("lock")[0].clone();
        let list = svc.list(&nurse(), &[], None, 10).await.expect("list");
        assert_eq!(list.len(), 1, "{backend}");
        let id = list[0].id.clone();
        assert_eq!(key, format!("{id}/fired/0"), "{backend}");
        assert_eq!(body["team"], "telemetry");
        assert_eq!(list[0].state, AlertState::Notified, "{backend}");

        // A replay of the same finding changes nothing.
        svc.on_finding(
            &finding("bed-1", Condition::Asystole, FindingStatus::Present, 0),
            Instant::now(),
        )
        .await
        .expect("replay");

        let acked = svc
            .acknowledge(
                &nurse(),
                &id,
                Some(Verdict::Confirmed),
                Some("checked at bedside"),
            )
            .await
            .expect("ack");
        assert_eq!(acked.state, AlertState::Acknowledged);
        assert_eq!(acked.acked_by.as_deref(), Some("nurse-a"));
        eventually("acknowledged notification", || events(&rx).len() == 2).await;
        assert_eq!(events(&rx)[1], format!("{id}/acknowledged/0"));
        // Acknowledging twice is a conflict, not a second transition.
        assert!(matches!(
            svc.acknowledge(&nurse(), &id, None, None).await,
            Err(ActionError::Conflict(_))
        ));

        let (_, audit, deliveries) = svc.detail(&nurse(), &id).await.expect("detail");
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("fired", "engine"),
                ("notified", "engine"),
                ("acknowledged", "nurse-a")
            ],
            "{backend}"
        );
        assert_eq!(audit[2].verdict, Some(Verdict::Confirmed));
        assert_eq!(audit[2].note.as_deref(), Some("checked at bedside"));
        assert!(!deliveries.is_empty(), "{backend}");

        // A second episode on another stream, judged a false alarm at resolution.
        svc.on_finding(
            &finding("bed-2", Condition::Asystole, FindingStatus::Present, 0),
            Instant::now(),
        )
        .await
        .expect("finding");
        let id2 = svc
            .list(&nurse(), &[AlertState::Notified], None, 10)
            .await
            .expect("list")[0]
            .id
            .clone();
        svc.resolve(&nurse(), &id2, Some(Verdict::FalseAlarm), None)
            .await
            .expect("resolve");
        let p = svc.store().precision().await.expect("precision");
        assert_eq!(p.len(), 1, "{backend}: {p:?}");
        assert_eq!(p[0].rule, "asystole/dsp");
        assert_eq!((p[0].confirmed, p[0].false_alarm), (1, 1));
        assert_eq!(p[0].precision, Some(0.5));
    }
}

/// Alerts with and without a score or value, one after the other through one
/// connection's cached statements (sqlx's `Any` driver once bound a NULL `f64` as
/// `f32`, and PostgreSQL then refused the next non-NULL value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_with_and_without_scores_share_a_connection() {
    for (backend, url) in backends().await {
        let (peer_url, _rx) = peer().await;
        let mut cfg = config(&url, "[route]\nreceivers = [\"ward\"]");
        cfg.store.max_connections = 1;
        let svc = service(cfg, &peer_url, "i1").await;
        let combos = [
            (None, None),
            (Some(0.9), None),
            (None, Some(3.5)),
            (Some(0.7), Some(4.0)),
            (None, None),
            (Some(0.8), Some(2.0)),
        ];
        for (i, (score, value)) in combos.iter().enumerate() {
            let mut f = finding(
                &format!("bed-s{i}"),
                Condition::Asystole,
                FindingStatus::Present,
                0,
            );
            f.score = *score;
            f.value = *value;
            svc.on_finding(&f, Instant::now()).await.expect("finding");
        }
        let all = svc.list(&nurse(), &[], None, 10).await.expect("list");
        assert_eq!(all.len(), combos.len(), "{backend}: every alert stored");
        for a in &all {
            let i: usize = a.stream.trim_start_matches("bed-s").parse().expect("index");
            assert_eq!(a.score.map(|s| s as f32), combos[i].0);
            assert_eq!(a.value.map(|v| v as f32), combos[i].1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_alerts_escalate_along_the_chain_then_repeat() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let cfg = config(
            &url,
            r#"
            [route]
            receivers = ["ward"]
            repeat_interval_s = 1
            escalation = [{ after_s = 1, team = "cardiology", receivers = ["ward"] }]
            "#,
        );
        let svc = service(cfg, &peer_url, "i1").await;
        svc.on_finding(
            &finding(
                "bed-3",
                Condition::VentricularTachycardia,
                FindingStatus::Present,
                0,
            ),
            Instant::now(),
        )
        .await
        .expect("finding");
        let cardiology = Caller {
            team: "cardiology".into(),
            actor: "dr-lee".into(),
        };
        let id = svc.list(&nurse(), &[], None, 1).await.expect("list")[0]
            .id
            .clone();
        assert!(
            matches!(
                svc.detail(&cardiology, &id).await,
                Err(ActionError::Forbidden)
            ),
            "{backend}: cardiology does not see it before escalation"
        );
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(2600) {
            svc.tick().await.expect("tick");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eventually("escalation and repeat delivered", || {
            let e = events(&rx);
            e.iter().any(|k| k.ends_with("/escalated/1"))
                && e.iter().any(|k| k.contains("/repeat-"))
        })
        .await;
        let (rec, audit, _) = svc.detail(&cardiology, &id).await.expect("visible now");
        assert_eq!(rec.state, AlertState::Escalated, "{backend}");
        assert_eq!(rec.level, 1);
        assert!(rec.visible_to.contains(&"cardiology".to_owned()));
        let escalated = rx
            .lock()
            .expect("lock")
            .iter()
            .find(|(k, _)| k.ends_with("/escalated/1"))
            .map(|(_, b)| b.clone())
            .expect("escalated body");
        assert_eq!(escalated["recipient"], "dr-lee", "cardiology's on-call");
        assert_eq!(escalated["team"], "cardiology");
        assert!(audit
            .iter()
            .any(|e| e.action == "escalated" && e.actor == "escalation"));
        assert!(audit.iter().any(|e| e.action == "repeat"));
        // No further step: a manual escalation is refused.
        assert!(matches!(
            svc.escalate(&cardiology, &id, None).await,
            Err(ActionError::Conflict(_))
        ));
        // Acknowledged: nothing more is due.
        svc.acknowledge(&cardiology, &id, None, None)
            .await
            .expect("ack");
        let before = events(&rx).len();
        for _ in 0..15 {
            svc.tick().await.expect("tick");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after: Vec<String> = events(&rx)[before..].to_vec();
        assert!(
            after.iter().all(|k| k.contains("/acknowledged/")),
            "{backend}: only acknowledgement notices after the ack: {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_wait_spares_episodes_that_clear_and_silences_hold_notifications() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let cfg = config(&url, "[route]\nreceivers = [\"ward\"]\ngroup_wait_s = 1");
        let svc = service(cfg, &peer_url, "i1").await;
        let brady = |s: &str, st, t| finding(s, Condition::Bradycardia, st, t);
        use FindingStatus::{Absent, Present};
        // bed-4: two windows fire it (medium: waits 1 s), two absent ones clear it.
        for (st, t) in [(Present, 0), (Present, 1), (Absent, 2), (Absent, 3)] {
            svc.on_finding(&brady("bed-4", st, t), Instant::now())
                .await
                .expect("finding");
        }
        // bed-5: fires and stays.
        for t in 0..2 {
            svc.on_finding(&brady("bed-5", Present, t), Instant::now())
                .await
                .expect("finding");
        }
        // bed-6: silenced before it fires.
        svc.silence(
            &nurse(),
            SilenceMatchers {
                stream: Some("bed-6".into()),
                ..SilenceMatchers::default()
            },
            600,
            "patient walking in the corridor",
        )
        .await
        .expect("silence");
        for t in 0..2 {
            svc.on_finding(&brady("bed-6", Present, t), Instant::now())
                .await
                .expect("finding");
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            svc.tick().await.expect("tick");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eventually("bed-5 notified", || {
            events(&rx).iter().any(|k| k.starts_with("bed-5/"))
        })
        .await;
        let all = svc.list(&nurse(), &[], None, 10).await.expect("list");
        let by_stream: HashMap<&str, _> = all.iter().map(|a| (a.stream.as_str(), a)).collect();
        assert_eq!(by_stream["bed-4"].state, AlertState::Resolved, "{backend}");
        assert_eq!(by_stream["bed-4"].notified_ms, None, "never paged anyone");
        assert_eq!(by_stream["bed-5"].state, AlertState::Notified);
        assert!(by_stream["bed-6"].silenced);
        assert_eq!(by_stream["bed-6"].state, AlertState::Firing);
        let keys = events(&rx);
        assert!(
            keys.iter().all(|k| k.starts_with("bed-5/")),
            "{backend}: only bed-5 notified: {keys:?}"
        );
        let (_, audit, _) = svc
            .detail(&nurse(), &by_stream["bed-6"].id)
            .await
            .expect("detail");
        assert_eq!(audit[0].action, "silenced");
        // A silence must say what it silences and why.
        assert!(matches!(
            svc.silence(&nurse(), SilenceMatchers::default(), 60, "x")
                .await,
            Err(ActionError::Invalid(_))
        ));
        assert!(matches!(
            svc.silence(
                &nurse(),
                SilenceMatchers {
                    patient: Some("p".into()),
                    ..SilenceMatchers::default()
                },
                10 * 24 * 3600,
                "too long"
            )
            .await,
            Err(ActionError::Invalid(_))
        ));
    }
}

/// Several instances on one store, fed the same findings at the same time (as after
/// a rebalance replay), notify each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_store_never_notify_twice() {
    let mut stores = vec![(
        "sqlite-file",
        format!(
            "sqlite://{}/cs-shared-{:x}.db",
            std::env::temp_dir().display(),
            rand::random::<u64>()
        ),
    )];
    match std::env::var("CARDIOSTREAM_TEST_PG") {
        Ok(admin) => stores.push(("postgres", fresh_pg(&admin).await)),
        Err(_) => eprintln!("SKIP postgres backend: CARDIOSTREAM_TEST_PG is not set"),
    }
    for (backend, url) in stores {
        let (peer_url, rx) = peer().await;
        let extra = r#"
            [route]
            receivers = ["ward"]
            group_wait_s = 1
            escalation = [{ after_s = 1, team = "cardiology", receivers = ["ward"] }]
        "#;
        let a = service(config(&url, extra), &peer_url, "a").await;
        let b = service(config(&url, extra), &peer_url, "b").await;
        let mut findings = Vec::new();
        for s in 0..12 {
            let c = if s % 3 == 0 {
                Condition::Asystole
            } else {
                Condition::Tachycardia
            };
            for t in 0..3 {
                findings.push(finding(&format!("bed-{s}"), c, FindingStatus::Present, t));
            }
        }
        let feed = |svc: Arc<AlertService>, fs: Vec<Finding>| {
            tokio::spawn(async move {
                for f in &fs {
                    svc.on_finding(f, Instant::now()).await.expect("finding");
                }
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(2500) {
                    svc.tick().await.expect("tick");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let (ra, rb) = tokio::join!(feed(a.clone(), findings.clone()), feed(b.clone(), findings));
        ra.expect("a");
        rb.expect("b");
        let alerts = a.list(&nurse(), &[], None, 100).await.expect("list");
        assert_eq!(alerts.len(), 12, "{backend}: one alert per stream");
        eventually("every alert fired and escalated", || {
            let e = events(&rx);
            alerts.iter().all(|al| {
                e.contains(&format!("{}/fired/0", al.id))
                    && e.contains(&format!("{}/escalated/1", al.id))
            })
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let keys = events(&rx);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for k in &keys {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        let dup: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
        assert!(dup.is_empty(), "{backend}: notified twice: {dup:?}");
        // Both instances did some of the work.
        eprintln!(
            "{backend}: {} notifications for {} alerts, none twice",
            keys.len(),
            alerts.len()
        );
    }
}

/// A notification claimed by an instance that died before sending it is taken over
/// once its lease ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_claimed_notification_is_taken_over() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let svc = service(
            config(&url, "[route]\nreceivers = [\"ward\"]\ngroup_wait_s = 30"),
            &peer_url,
            "live",
        )
        .await;
        use FindingStatus::Present;
        for t in 0..2 {
            svc.on_finding(
                &finding("bed-7", Condition::Tachycardia, Present, t),
                Instant::now(),
            )
            .await
            .expect("finding");
        }
        let id = svc.list(&nurse(), &[], None, 1).await.expect("list")[0]
            .id
            .clone();
        // An instance claimed the notification 31 s ago and died.
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(31);
        let key = ecg_alerts::store::DeliveryKey {
            alert: &id,
            event: "fired",
            level: 0,
            receiver: "ward",
        };
        assert!(svc
            .store()
            .claim(&key, "webhook", "dead", long_ago)
            .await
            .expect("claim"));
        svc.tick().await.expect("tick");
        eventually("taken over", || {
            events(&rx) == vec![format!("{id}/fired/0")]
        })
        .await;
        let d = svc.store().deliveries(&id).await.expect("deliveries");
        assert_eq!(d.len(), 1, "{backend}");
    }
}

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
    let start = DeviceTimeUs(base_us() + t_s * 5_000_000);
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
        episode_end: None,
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

/// Instances started together on one new SQLite file (the deployables of a small site,
/// or a restart of two at once) all open it: none fails on the tables another one's
/// migrations created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_opening_one_new_sqlite_file_at_once_all_start() {
    for round in 0..5 {
        let url = format!(
            "sqlite://{}/cs-open-{:x}.db",
            std::env::temp_dir().display(),
            rand::random::<u64>()
        );
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url, 2).await })
            })
            .collect();
        let mut opened = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(s) => opened.push(s),
                Err(e) => panic!("round {round}, instance {i}: {e}"),
            }
        }
        assert_eq!(opened.len(), 4);
        let path = url.trim_start_matches("sqlite://").to_owned();
        drop(opened);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{ext}"));
        }
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

// ---------------------------------------------------------------- issue 15

/// A detector finding whose window ended at `end` (wall clock), 10 s long.
fn finding_ending(
    stream: &str,
    c: Condition,
    status: FindingStatus,
    end: std::time::SystemTime,
) -> Finding {
    let end_us = i64::try_from(
        end.duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_micros(),
    )
    .expect("µs");
    let mut f = finding(stream, c, status, 0);
    f.window_end = DeviceTimeUs(end_us);
    f.window_start = DeviceTimeUs(end_us - 10_000_000);
    f.key = Finding::make_key(&f.stream, &f.source, c, f.window_start);
    f
}

fn ago(s: u64) -> std::time::SystemTime {
    std::time::SystemTime::now() - Duration::from_secs(s)
}

/// Issue 15, item 5: a new consumer group reading history — episodes long over, and
/// one that began before the horizon and is still going on — pages no one for the
/// history; the episode still going on is paged by its first current finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_older_than_the_staleness_horizon_are_recorded_but_never_paged() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let svc = service(
            config(&url, "[route]\nreceivers = [\"ward\"]"),
            &peer_url,
            "i1",
        )
        .await;
        use FindingStatus::{Absent, Present};
        let asystole = |s: &str, st, end| finding_ending(s, Condition::Asystole, st, end);
        // bed-1: an hour ago, began and ended.
        for (st, end) in [
            (Present, ago(3600)),
            (Absent, ago(3590)),
            (Absent, ago(3580)),
        ] {
            svc.on_finding(&asystole("bed-1", st, end), Instant::now())
                .await
                .expect("finding");
        }
        // bed-2: began 10 minutes ago.
        svc.on_finding(&asystole("bed-2", Present, ago(600)), Instant::now())
            .await
            .expect("finding");
        for _ in 0..5 {
            svc.tick().await.expect("tick");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            events(&rx).is_empty(),
            "{backend}: nothing paged for history: {:?}",
            events(&rx)
        );
        let all = svc.list(&nurse(), &[], None, 10).await.expect("list");
        let by_stream: HashMap<&str, _> = all.iter().map(|a| (a.stream.as_str(), a)).collect();
        assert_eq!(by_stream["bed-1"].state, AlertState::Resolved, "{backend}");
        assert_eq!(by_stream["bed-1"].notified_ms, None, "{backend}");
        assert_eq!(by_stream["bed-2"].state, AlertState::Firing, "{backend}");
        assert_eq!(by_stream["bed-2"].notified_ms, None, "{backend}");
        let (_, audit, _) = svc
            .detail(&nurse(), &by_stream["bed-1"].id)
            .await
            .expect("detail");
        assert_eq!(audit[0].action, "stale", "{backend}: {audit:?}");
        assert!(
            audit[0]
                .note
                .as_deref()
                .unwrap_or("")
                .contains("not notified"),
            "{audit:?}"
        );
        // bed-2 is still in asystole now: its first current finding pages it, once.
        svc.on_finding(&asystole("bed-2", Present, ago(1)), Instant::now())
            .await
            .expect("finding");
        let id2 = by_stream["bed-2"].id.clone();
        eventually("bed-2 paged once current", || {
            events(&rx).contains(&format!("{id2}/fired/0"))
        })
        .await;
        svc.on_finding(&asystole("bed-2", Present, ago(0)), Instant::now())
            .await
            .expect("finding");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(events(&rx), vec![format!("{id2}/fired/0")], "{backend}");
        let rec = svc.store().get(&id2).await.expect("get").expect("bed-2");
        assert_eq!(rec.state, AlertState::Notified, "{backend}");
    }
}

/// Issue 15, item 7: `recipient` names an on-call member only where one is being
/// notified — at the escalation steps — not on the first notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_is_named_only_at_escalation_steps() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let cfg = config(
            &url,
            r#"
            [route]
            receivers = ["ward"]
            escalation = [{ after_s = 1, team = "cardiology", receivers = ["ward"] }]
            "#,
        );
        let svc = service(cfg, &peer_url, "i1").await;
        svc.on_finding(
            &finding_ending("bed-8", Condition::Asystole, FindingStatus::Present, ago(0)),
            Instant::now(),
        )
        .await
        .expect("finding");
        let id = svc.list(&nurse(), &[], None, 1).await.expect("list")[0]
            .id
            .clone();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1600) {
            svc.tick().await.expect("tick");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        svc.acknowledge(&nurse(), &id, None, None)
            .await
            .expect("ack");
        eventually("fired, escalated and both acknowledgements", || {
            events(&rx).len() == 4
        })
        .await;
        let body = |key: &str| {
            rx.lock()
                .expect("lock")
                .iter()
                .find(|(k, _)| k == &format!("{id}/{key}"))
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| panic!("no {key}"))
        };
        assert_eq!(
            body("fired/0")["recipient"],
            serde_json::Value::Null,
            "{backend}"
        );
        assert_eq!(body("acknowledged/0")["recipient"], serde_json::Value::Null);
        assert_eq!(body("escalated/1")["recipient"], "dr-lee", "{backend}");
        assert_eq!(body("acknowledged/1")["recipient"], "dr-lee");
    }
}

/// What the service's hooks were told of pruning.
#[derive(Debug, Default)]
struct PruneLog(Mutex<Vec<ecg_alerts::store::Pruned>>);

impl ecg_alerts::service::Hooks for PruneLog {
    fn pruned(&self, p: &ecg_alerts::store::Pruned) {
        self.0.lock().expect("lock").push(*p);
    }
}

/// Issue 15, item 6: resolved alerts are pruned with their audit trail and
/// deliveries once older than the retention, and ended silences with them; open
/// alerts are kept. The ticker runs it every `interval_s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_resolved_alerts_with_their_audit_and_deliveries() {
    for (backend, url) in backends().await {
        let (peer_url, rx) = peer().await;
        let mut cfg = config(
            &url,
            "[retention]\nkeep_resolved_s = 1\ninterval_s = 1\n[route]\nreceivers = [\"ward\"]",
        );
        for r in &mut cfg.receivers {
            if let ecg_alerts::receivers::ReceiverConfig::Webhook(w) = &mut r.config {
                w.url = peer_url.clone();
            }
        }
        let store = Store::open(&cfg.store.url, cfg.store.max_connections)
            .await
            .expect("store");
        let log = Arc::new(PruneLog::default());
        let svc = Arc::new(AlertService::new(cfg, store, "i1", log.clone()).expect("service"));
        for s in ["bed-1", "bed-2"] {
            svc.on_finding(
                &finding_ending(s, Condition::Asystole, FindingStatus::Present, ago(0)),
                Instant::now(),
            )
            .await
            .expect("finding");
        }
        let all = svc.list(&nurse(), &[], None, 10).await.expect("list");
        let id = |s: &str| all.iter().find(|a| a.stream == s).expect(s).id.clone();
        let (gone, kept) = (id("bed-1"), id("bed-2"));
        svc.resolve(&nurse(), &gone, None, Some("returned to the ward"))
            .await
            .expect("resolve");
        svc.silence(
            &nurse(),
            SilenceMatchers {
                stream: Some("bed-9".into()),
                ..SilenceMatchers::default()
            },
            1,
            "electrode change",
        )
        .await
        .expect("silence");
        eventually("resolved notification", || {
            events(&rx).contains(&format!("{gone}/resolved/0"))
        })
        .await;
        // Recorded outcomes of both deliveries.
        let t = Instant::now();
        loop {
            let d = svc.store().deliveries(&gone).await.expect("deliveries");
            if d.len() == 2 && d.iter().all(|d| d.ok.is_some()) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{backend}: {d:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!svc.store().audit(&gone).await.expect("audit").is_empty());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        svc.tick().await.expect("tick");
        assert!(
            svc.store().get(&gone).await.expect("get").is_none(),
            "{backend}"
        );
        assert!(
            svc.store().audit(&gone).await.expect("audit").is_empty(),
            "{backend}"
        );
        assert!(svc
            .store()
            .deliveries(&gone)
            .await
            .expect("deliveries")
            .is_empty());
        // The open alert stays, with its trail.
        let rec = svc.store().get(&kept).await.expect("get").expect("kept");
        assert_eq!(rec.state, AlertState::Notified, "{backend}");
        assert!(!svc.store().audit(&kept).await.expect("audit").is_empty());
        assert!(!svc.store().deliveries(&kept).await.expect("d").is_empty());
        // What was pruned, once: the next tick within the interval does not run it.
        svc.tick().await.expect("tick");
        let pruned = log.0.lock().expect("lock").clone();
        assert_eq!(pruned.len(), 1, "{backend}: {pruned:?}");
        let p = pruned[0];
        assert_eq!(
            (p.alerts, p.deliveries, p.silences),
            (1, 2, 1),
            "{backend}: {p:?}"
        );
        assert!(p.audit >= 3, "fired, notified, resolved: {p:?}");
    }
}

/// The store over TLS to PostgreSQL with the server's certificate verified
/// (`sslmode=verify-full`): runs when `CARDIOSTREAM_TEST_PG_TLS` names such a server
/// (an admin URL with `sslmode=verify-full&sslrootcert=<CA file>`), else skips. With
/// another CA the connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_certificate() {
    let Ok(admin) = std::env::var("CARDIOSTREAM_TEST_PG_TLS") else {
        eprintln!("SKIP: CARDIOSTREAM_TEST_PG_TLS is not set (a PostgreSQL server with TLS)");
        return;
    };
    let url = fresh_pg(&admin).await;
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let (peer_url, rx) = peer().await;
    let svc = service(
        config(&url, "[route]\nreceivers = [\"ward\"]"),
        &peer_url,
        "tls",
    )
    .await;
    svc.on_finding(
        &finding("bed-1", Condition::Asystole, FindingStatus::Present, 0),
        Instant::now(),
    )
    .await
    .expect("finding over TLS");
    eventually("notified", || events(&rx).len() == 1).await;
    assert_eq!(
        svc.list(&nurse(), &[], None, 10).await.expect("list").len(),
        1
    );
    // The same server under a CA that did not sign its certificate: refused.
    let other = std::env::var("CARDIOSTREAM_TEST_PG_TLS_OTHER_CA").ok();
    if let Some(ca) = other {
        let (head, _) = url.split_once("sslrootcert=").expect("sslrootcert");
        let wrong = format!("{head}sslrootcert={ca}");
        let e = Store::open(&wrong, 1)
            .await
            .expect_err("an unknown CA is refused");
        eprintln!("with another CA: {e}");
    }
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

/// AF burden totals survive a restart, on a SQLite file and on PostgreSQL: windows
/// overlap (10 s every 5 s) and count once, indeterminate ones and shadow models not
/// at all, duplicates and replays add nothing. The first window is stored at once,
/// the rest when flushed (as at shutdown); a new service starts from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn af_burden_is_kept_in_the_store_across_a_restart() {
    use FindingStatus::{Absent, Indeterminate, Present};
    let mut stores = vec![(
        "sqlite-file",
        format!(
            "sqlite://{}/cs-burden-{:x}.db",
            std::env::temp_dir().display(),
            rand::random::<u64>()
        ),
    )];
    match std::env::var("CARDIOSTREAM_TEST_PG") {
        Ok(admin) => stores.push(("postgres", fresh_pg(&admin).await)),
        Err(_) => eprintln!("SKIP postgres backend: CARDIOSTREAM_TEST_PG is not set"),
    }
    let af = |stream: &str, status, t| finding(stream, Condition::AtrialFibrillation, status, t);
    for (backend, url) in stores {
        let (peer_url, _rx) = peer().await;
        let svc = service(config(&url, ""), &peer_url, "a").await;
        let statuses = [
            Present,
            Present,
            Indeterminate,
            Absent,
            Absent,
            Present,
            Present,
        ];
        for (t, st) in statuses.iter().enumerate() {
            svc.on_finding(&af("bed-1", *st, t as i64), Instant::now())
                .await
                .expect("finding");
            if t == 0 {
                let first = svc.store().af_burden("p-bed-1").await.expect("read");
                assert_eq!(first.map(|b| b.af_us), Some(10_000_000), "{backend}");
            }
        }
        let mut shadow = af("bed-1", Present, 7);
        shadow.shadow = true;
        for f in [shadow, af("bed-1", Present, 1), af("bed-2", Present, 0)] {
            svc.on_finding(&f, Instant::now()).await.expect("finding");
        }
        svc.flush_af_burden().await.expect("flush");
        let b = svc
            .store()
            .af_burden("p-bed-1")
            .await
            .expect("read")
            .expect("counted");
        assert_eq!(
            (b.af_us, b.monitored_us),
            (25_000_000, 40_000_000),
            "{backend}"
        );
        assert_eq!(b.burden(), Some(0.625), "{backend}");
        assert_eq!(b.since_us, Some(base_us()), "{backend}");
        assert_eq!(b.streams, ["bed-1"], "{backend}");
        drop(svc);

        // A restart: a new service on the same database keeps counting from there.
        let svc = service(config(&url, ""), &peer_url, "b").await;
        for f in [
            af("bed-1", Absent, 3),
            af("bed-1", Indeterminate, 2),
            af("bed-1", Absent, 7),
        ] {
            svc.on_finding(&f, Instant::now()).await.expect("finding");
        }
        svc.flush_af_burden().await.expect("flush");
        let b = svc
            .store()
            .af_burden("p-bed-1")
            .await
            .expect("read")
            .expect("counted");
        assert_eq!(
            (b.af_us, b.monitored_us),
            (25_000_000, 45_000_000),
            "{backend}"
        );
        let other = svc.store().af_burden("p-bed-2").await.expect("read");
        assert_eq!(other.map(|b| b.monitored_us), Some(10_000_000), "{backend}");
        assert_eq!(svc.store().af_burden("p-nobody").await.expect("read"), None);
    }
}

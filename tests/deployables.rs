//! The two deployables, configured from a file, against a Kafka cluster (librdkafka's
//! in-process mock cluster):
//! simulated devices → `cardiostream pipeline` → findings → two `cardiostream alerts`
//! instances in one consumer group sharing one store (PostgreSQL when the test
//! command started one, else a SQLite file) → `ecg.alerts.v1` and a signed webhook
//! that must hear of every alert exactly once. The alert group reads its fresh topic
//! from the start (`alerts.start_offset = "earliest"`): the pipeline may publish
//! before the alert consumers have joined.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod support;

use cardiostream::config::Config;
use cardiostream::deployables;
use cardiostream::devices::{self, PublishOptions};
use ecg_ingest::codec::Encoding;
use ecg_ingest::kafka;
use ecg_types::{Alert, AlertState, Condition, Finding, Lead};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_and_alerts_deployables_turn_frames_into_alerts() {
    let cluster = MockCluster::new(1).unwrap();
    for t in [
        "ecg.frames.v1",
        "ecg.findings.v1",
        "ecg.frames.dlq",
        "ecg.alerts.v1",
    ] {
        cluster.create_topic(t, 2, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cardiostream.toml");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let store = match std::env::var("CARDIOSTREAM_TEST_PG") {
        Ok(admin) => support::fresh_pg(&admin).await,
        Err(_) => {
            eprintln!("store: a SQLite file (CARDIOSTREAM_TEST_PG unset: no PostgreSQL)");
            format!("sqlite://{}", dir.path().join("alerts.db").display())
        }
    };
    let (hook_url, heard) = support::webhook_peer("s3cret").await;
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = {bootstrap:?}\n[pipeline]\nmodels_dir = {:?}\n[http]\naddr = \"127.0.0.1:0\"\n\
             [alerts]\nstart_offset = \"earliest\"\n\
             [alerts.store]\nurl = {store:?}\n\
             [alerts.route]\nreceivers = [\"ward\"]\ngroup_wait_s = 0\n\
             [[alerts.receivers]]\nname = \"ward\"\nkind = \"webhook\"\nurl = {hook_url:?}\nsecret = \"s3cret\"\n",
            models.display().to_string()
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(&file)).unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let pipeline = tokio::spawn(deployables::run_pipeline(
        cfg.clone(),
        stopped(stop_rx.clone()),
    ));
    let alerts = tokio::spawn(deployables::run_alerts(
        cfg.clone(),
        stopped(stop_rx.clone()),
    ));
    let alerts2 = tokio::spawn(deployables::run_alerts(cfg, stopped(stop_rx.clone())));

    // Two devices: one in AF, one bradycardic, 40 device seconds at 20x, recorded
    // over the last minute (findings within the alert service's staleness horizon).
    let t0 = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
        - 60_000_000;
    let sources = [
        ecg_sim::Preset::AtrialFibrillation,
        ecg_sim::Preset::Bradycardia,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, p)| {
        devices::Source::Sim(Box::new(support::sim_device(
            &format!("s{i}"),
            &format!("p{i}"),
            p,
            i as u64,
            Lead::II,
            t0,
        )))
    })
    .collect();
    let producer: FutureProducer = kafka::producer_config(&kafka::connection(&bootstrap), 5)
        .create()
        .unwrap();
    let opts = PublishOptions {
        topic: "ecg.frames.v1".into(),
        encoding: Encoding::Protobuf,
        speed: 20.0,
        duration: Some(Duration::from_secs(2)),
    };
    let (_tx, rx) = watch::channel(false);
    devices::publish(&producer, sources, &opts, || {}, rx)
        .await
        .unwrap();

    let reader: StreamConsumer = kafka::consumer_config(&kafka::connection(&bootstrap), "reader")
        .create()
        .unwrap();
    reader.subscribe(&["ecg.alerts.v1"]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    // A liveness bound, not a speed check: alone the alerts come within a few
    // seconds, but a machine busy with other work has taken over 30 s to start the
    // deployables' consumers and models.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !(seen.contains(&("p0".to_owned(), Condition::AtrialFibrillation))
        && seen.contains(&("p1".to_owned(), Condition::Bradycardia)))
    {
        let Ok(m) = tokio::time::timeout_at(deadline, reader.recv()).await else {
            panic!(
                "alerts seen so far: {seen:?}; findings on ecg.findings.v1: {:?}",
                findings_on_topic(&bootstrap).await
            );
        };
        let m = m.unwrap();
        let a: Alert = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if a.state == AlertState::Firing {
            seen.insert((a.patient.to_string(), a.condition));
        }
    }
    assert!(
        !seen.contains(&("p1".to_owned(), Condition::AtrialFibrillation)),
        "{seen:?}"
    );
    // The ward's webhook heard of both alerts, and of no notification twice, although
    // two instances consumed the findings and shared the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let keys = heard.lock().unwrap().clone();
        let fired = |c: &str| keys.iter().any(|k| k.contains(c) && k.contains("/fired/"));
        if fired("/atrial_fibrillation/") && fired("/bradycardia/") {
            let unique: std::collections::BTreeSet<_> = keys.iter().collect();
            assert_eq!(unique.len(), keys.len(), "notified twice: {keys:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook heard {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    pipeline.await.unwrap().unwrap();
    alerts.await.unwrap().unwrap();
    alerts2.await.unwrap().unwrap();
}

/// What the pipeline published, for a failure message: the number of findings per
/// (patient, condition, status) on the findings topic, read from its start for 5 s.
async fn findings_on_topic(
    bootstrap: &str,
) -> std::collections::BTreeMap<(String, String, String), usize> {
    let c: StreamConsumer = kafka::consumer_config(&kafka::connection(bootstrap), "diagnosis")
        .create()
        .unwrap();
    c.subscribe(&["ecg.findings.v1"]).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(m)) = tokio::time::timeout_at(until, c.recv()).await {
        let Some(p) = m.payload() else { continue };
        let key = match serde_json::from_slice::<Finding>(p) {
            Ok(f) => (
                f.patient.to_string(),
                format!("{:?}", f.condition),
                format!("{:?}", f.status),
            ),
            Err(e) => ("?".into(), "?".into(), format!("undecodable: {e}")),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

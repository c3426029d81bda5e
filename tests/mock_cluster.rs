//! The pipeline on rdkafka's in-process `MockCluster`, which behaves like Kafka where
//! the real broker of the test suite (`tansu`) deviates (docs/broker.md), and which
//! can take brokers down: consumer groups splitting partitions and taking over, and
//! a whole-cluster outage in the middle of a stream. Each check asserts that every
//! window an offline run scores is published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardiostream::telemetry::Metrics;
use ecg_ingest::kafka;
use ecg_pipeline::PipelineConfig;
use ecg_types::Lead;
use rdkafka::mocking::MockCluster;
use support::{keyed, Msg, Reader, Topics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const T0: i64 = 1_800_000_000_000_000;

fn topics() -> Topics {
    Topics {
        frames: "frames".into(),
        findings: "findings".into(),
        dlq: "dlq".into(),
        alerts: "alerts".into(),
        group: "pipeline".into(),
    }
}

fn cluster(t: &Topics) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(&t.frames, 4, 1).unwrap();
    c.create_topic(&t.findings, 4, 1).unwrap();
    c.create_topic(&t.dlq, 1, 1).unwrap();
    c
}

/// One in-process pipeline instance with its own metrics.
struct Instance {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    metrics: Metrics,
}

impl Instance {
    fn start(bootstrap: &str, t: &Topics) -> Instance {
        Self::start_with(bootstrap, t, |_| {})
    }

    fn start_with(bootstrap: &str, t: &Topics, edit: impl FnOnce(&mut PipelineConfig)) -> Instance {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        Self::start_in(bootstrap, t, &dir, edit)
    }

    fn start_in(
        bootstrap: &str,
        t: &Topics,
        models_dir: &std::path::Path,
        edit: impl FnOnce(&mut PipelineConfig),
    ) -> Instance {
        let mut conn = kafka::connection(bootstrap);
        conn.set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        let mut cfg = PipelineConfig::new(conn);
        cfg.group_id = t.group.clone();
        cfg.frames_topic = t.frames.clone();
        cfg.findings_topic = t.findings.clone();
        cfg.dlq_topic = t.dlq.clone();
        edit(&mut cfg);
        let models = Arc::new(ecg_inference::load_models(models_dir, 1).unwrap());
        let metrics = Metrics::new();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(ecg_pipeline::run(
            cfg,
            models,
            metrics.pipeline.clone(),
            Arc::new(Mutex::new(HashMap::new())),
            rx,
        ));
        Instance {
            stop,
            task,
            metrics,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// `seconds` of 200 ms frames of `n` simulated streams named `{prefix}{i}`.
fn frames(prefix: &str, n: u64, seconds: u32) -> Vec<Msg> {
    let mut sources: Vec<ecg_sim::FrameSource> = (0..n)
        .map(|i| {
            support::sim_device(
                &format!("{prefix}{i}"),
                &format!("p-{prefix}{i}"),
                support::RHYTHMS[(i % 3) as usize],
                i,
                Lead::II,
                T0,
            )
        })
        .collect();
    (0..seconds * 5)
        .flat_map(|_| {
            sources
                .iter_mut()
                .map(|s| support::frame_msg(&s.next_frame()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn offline(msgs: &[Msg]) -> std::collections::BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(dir.path(), "127.0.0.1:9092", &topics(), 9);
    keyed(&support::offline(&cfg, msgs).0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_partitions_and_one_takes_over() {
    let t = topics();
    let cluster = cluster(&t);
    let bootstrap = cluster.bootstrap_servers();
    let started = Instant::now();
    let a = Instance::start(&bootstrap, &t);
    let b = Instance::start(&bootstrap, &t);
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    // Both members are in the group once each owns partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ma.pipeline.partitions_assigned.get() == 0 || mb.pipeline.partitions_assigned.get() == 0 {
        assert!(Instant::now() < deadline, "both instances own partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ma.pipeline.partitions_assigned.get() + mb.pipeline.partitions_assigned.get(),
        4
    );

    let first = frames("one-", 8, 40);
    let second = frames("two-", 8, 40);
    let want_first = offline(&first);
    let all: Vec<Msg> = first.iter().chain(&second).cloned().collect();
    let want_all = offline(&all);
    let producer = support::producer(&bootstrap);
    let mut reader = Reader::new(&bootstrap, &t.findings);
    support::send_all(&producer, &t.frames, &first).await;
    reader
        .until(
            Duration::from_secs(60),
            "findings of the first streams",
            |ms| keyed(&support::findings(ms)).is_superset(&want_first),
        )
        .await;
    let (ca, cb) = (
        ma.pipeline.frames_consumed.get(),
        mb.pipeline.frames_consumed.get(),
    );
    assert!(ca > 0 && cb > 0, "both consume: a {ca}, b {cb}");
    assert_eq!(
        ca + cb,
        first.len() as u64,
        "a settled group reads each frame once"
    );

    a.stop().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mb.pipeline.partitions_assigned.get() < 4 {
        assert!(
            Instant::now() < deadline,
            "b takes over all four partitions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::send_all(&producer, &t.frames, &second).await;
    reader
        .until(Duration::from_secs(60), "findings of every stream", |ms| {
            keyed(&support::findings(ms)).is_superset(&want_all)
        })
        .await;
    b.stop().await;
    let keys = |s: &std::collections::BTreeSet<(String, String)>| {
        s.iter()
            .map(|k| k.0.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let got = keys(&keyed(&support::findings(&reader.messages)));
    let want_keys = keys(&want_all);
    let invented: Vec<_> = got.difference(&want_keys).collect();
    assert!(
        invented.is_empty(),
        "keys the offline run lacks: {invented:?}"
    );
    println!(
        "a consumed {ca}, b {cb} then {} in all; {} findings, as offline, in {:.1?}",
        mb.pipeline.frames_consumed.get(),
        reader.messages.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_rides_out_a_cluster_outage() {
    let t = topics();
    let cluster = cluster(&t);
    let bootstrap = cluster.bootstrap_servers();
    let started = Instant::now();
    let p = Instance::start(&bootstrap, &t);
    let msgs = frames("out-", 6, 60);
    let want = offline(&msgs);
    let (before, after) = msgs.split_at(msgs.len() / 2);
    let producer = support::producer(&bootstrap);
    support::send_all(&producer, &t.frames, before).await;
    // Let the pipeline get going, then take the only broker down for 4 s while the
    // second half is being produced (the producer buffers and retries).
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.metrics.pipeline.frames_consumed.get() == 0 {
        assert!(Instant::now() < deadline, "pipeline consumes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.broker_down(1).unwrap();
    let sending = {
        let producer = producer.clone();
        let topic = t.frames.clone();
        let after = after.to_vec();
        tokio::spawn(async move { support::send_all(&producer, &topic, &after).await })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.broker_up(1).unwrap();
    sending.await.unwrap();
    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(Duration::from_secs(90), "every offline finding", |ms| {
            keyed(&support::findings(ms)).is_superset(&want)
        })
        .await;
    assert!(!p.task.is_finished(), "the pipeline kept running");
    let consumed = p.metrics.pipeline.frames_consumed.get();
    p.stop().await;
    println!(
        "{} frames ({consumed} consumed), 4 s outage, {} findings published, all {} offline ones among them, in {:.1?}",
        msgs.len(),
        reader.messages.len(),
        want.len(),
        started.elapsed()
    );
}

/// Streams that stop on a topic that then stays quiet: once they are evicted, the
/// windows they held are published, once each, and every frame's offset is
/// committed, with no further record to drive the stages (the source's idle epochs
/// do).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_held_by_streams_that_stop_are_published_on_a_quiet_topic() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let t = topics();
    let cluster = cluster(&t);
    let bootstrap = cluster.bootstrap_servers();
    let p = Instance::start_with(&bootstrap, &t, |c| {
        c.streams.commit_hold_s = 1.0;
        c.streams.idle_evict_s = 1.0;
    });
    let msgs = frames("quiet-", 3, 44);
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(dir.path(), "127.0.0.1:9092", &t, 9);
    let (before, held) = support::offline_then_silent(&cfg, &msgs);
    assert!(
        !held.is_empty(),
        "the streams hold no window when they stop"
    );
    let mut want = keyed(&before);
    want.extend(keyed(&held));
    let sent = support::send_all(&support::producer(&bootstrap), &t.frames, &msgs).await;
    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(
            Duration::from_secs(60),
            "every finding, the held windows' too",
            |ms| keyed(&support::findings(ms)).is_superset(&want),
        )
        .await;
    // Every partition's committed offset reaches its end: nothing holds it back
    // once the streams are gone.
    let mut ends: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for (partition, offset) in &sent {
        let e = ends.entry(*partition).or_insert(0);
        *e = (*e).max(offset + 1);
    }
    let mut end = rdkafka::TopicPartitionList::new();
    for (partition, offset) in &ends {
        end.add_partition_offset(&t.frames, *partition, rdkafka::Offset::Offset(*offset))
            .unwrap();
    }
    let group: BaseConsumer = kafka::connection(&bootstrap)
        .set("group.id", &t.group)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = group
            .committed_offsets(end.clone(), Duration::from_secs(5))
            .unwrap();
        let at_end = committed.elements().iter().all(|e| {
            e.offset() == rdkafka::Offset::Offset(ends.get(&e.partition()).copied().unwrap_or(-1))
        });
        if at_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?}, the ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.stop().await;
    reader.drain(Duration::from_secs(2)).await;
    let got = support::findings(&reader.messages);
    assert_eq!(
        keyed(&got),
        want,
        "the offline findings and the held windows'"
    );
    assert_eq!(got.len(), before.len() + held.len(), "each published once");
    println!(
        "{} frames, {} findings published, {} of them from windows held when the streams stopped; offsets committed to the ends {ends:?}",
        msgs.len(),
        got.len(),
        held.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_processing_stage_pauses_consumption() {
    let t = topics();
    let cluster = cluster(&t);
    let bootstrap = cluster.bootstrap_servers();
    // Small batches and a one-batch channel: the processing stage falls behind a
    // topic that is already full, so the consume stage must pause the partitions.
    let p = Instance::start_with(&bootstrap, &t, |c| {
        c.batch_max = 8;
        c.channel_batches = 1;
    });
    let msgs = frames("bp-", 12, 60);
    let want = offline(&msgs);
    support::send_all(&support::producer(&bootstrap), &t.frames, &msgs).await;
    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(Duration::from_secs(90), "every offline finding", |ms| {
            keyed(&support::findings(ms)).is_superset(&want)
        })
        .await;
    let pauses = p.metrics.pipeline.backpressure_pauses.get();
    // librdkafka statistics (every 5 s) report the lag of every assigned partition.
    let text = p.metrics.render();
    for i in 0..4 {
        assert!(
            text.contains(&format!(
                "cardiostream_ingest_consumer_lag{{partition=\"{i}\"}}"
            )),
            "lag of partition {i}:\n{text}"
        );
    }
    p.stop().await;
    assert!(pauses > 0, "consumption paused while processing was behind");
    println!(
        "{} frames, {pauses} pauses, all findings published",
        msgs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_model_is_recorded_and_compared_never_alerted() {
    // The same weights twice: as version 1.0.0 active and as version 1.1.0 in shadow.
    let models = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/af-rr");
    for (dir, version, mode) in [("active", "1.0.0", "active"), ("shadow", "1.1.0", "shadow")] {
        let d = models.path().join(dir);
        std::fs::create_dir(&d).unwrap();
        for f in ["af_rr.onnx", "MODEL_CARD.md"] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
        // The bundled manifest states its mode (shadow since af-cnn is active): this
        // test sets it per copy.
        let bundled = std::fs::read_to_string(src.join("af_rr.toml")).unwrap();
        let bundled_version = bundled
            .lines()
            .find(|l| l.starts_with("version = "))
            .expect("the manifest states its version");
        let manifest = bundled.replace("mode = \"shadow\"\n", "").replace(
            bundled_version,
            &format!("version = \"{version}\"\nmode = \"{mode}\""),
        );
        assert_eq!(manifest.matches("mode = ").count(), 1, "{manifest}");
        std::fs::write(d.join("af_rr.toml"), manifest).unwrap();
    }
    let t = topics();
    let cluster = cluster(&t);
    let bootstrap = cluster.bootstrap_servers();
    let p = Instance::start_in(&bootstrap, &t, models.path(), |_| {});
    let msgs = frames("sh-", 6, 70);
    support::send_all(&support::producer(&bootstrap), &t.frames, &msgs).await;
    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(
            Duration::from_secs(60),
            "findings of both model versions",
            |ms| {
                let fs = support::findings(ms);
                let n = |v: &str| {
                    fs.iter()
                        .filter(|f| f.source.label() == format!("model:af-rr@{v}"))
                        .count()
                };
                n("1.0.0") >= 18 && n("1.1.0") >= 18
            },
        )
        .await;
    p.stop().await;
    let findings = support::findings(&reader.messages);
    for f in &findings {
        let shadow_source = f.source.label() == "model:af-rr@1.1.0";
        assert_eq!(f.shadow, shadow_source, "{}", f.key);
    }
    // Recorded, never alerted.
    let mut engine = ecg_alerts::AlertEngine::new(ecg_alerts::RuleSet::default());
    let now = std::time::SystemTime::now();
    for f in findings.iter().filter(|f| f.shadow) {
        assert!(engine.on_finding(f, now).is_empty());
    }
    // `model compare` reads the topic: same weights, full agreement.
    let all = ecg_eval::compare::read_topic(&bootstrap, &t.findings, Duration::from_secs(2))
        .await
        .unwrap();
    let c = ecg_eval::compare::compare(&all, "af-rr@1.0.0", "af-rr@1.1.0");
    assert!(c.pairs >= 18, "{c:?}");
    assert_eq!((c.only_active, c.only_shadow), (0, 0), "{c:?}");
    assert!((c.agreement - 1.0).abs() < 1e-12, "{c:?}");
    assert_eq!(c.mean_abs_score_diff, Some(0.0));
    println!("{c:?}");
}

//! The pipeline on a real Kafka-protocol broker: `tansu`, started per test on a free
//! loopback port (tests/support/tansu.rs; docs/broker.md). Each test skips with a
//! printed reason when `tansu` is not installed (scripts/test.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cardiostream::config::Config;
use cardiostream::deployables;
use cardiostream::devices::{self, PublishOptions, RecordSource, Source};
use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF};
use ecg_ingest::kafka;
use ecg_types::{Frame, Lead};
use prost::Message as _;
use rdkafka::message::Message;
use support::tansu::{self, Broker};
use support::{frame_msg, keyed, Msg, Reader, Topics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const T0: i64 = 1_800_000_000_000_000;
const FRAMES_CONSUMED: &str = "cardiostream_ingest_frames_consumed_total";

/// A running `run_pipeline` with its stop switch.
struct Instance {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    http_port: u16,
}

impl Instance {
    fn start(dir: &std::path::Path, bootstrap: &str, t: &Topics) -> (Instance, Config) {
        let http_port = tansu::free_port();
        let cfg = support::config(dir, bootstrap, t, http_port);
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(deployables::run_pipeline(cfg.clone(), async move {
            let _ = rx.changed().await;
        }));
        (
            Instance {
                stop,
                task,
                http_port,
            },
            cfg,
        )
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("pipeline stops within 30 s")
            .unwrap()
            .unwrap();
    }

    fn frames_consumed(&self) -> f64 {
        support::scrape(self.http_port, FRAMES_CONSUMED).unwrap_or(0.0)
    }
}

/// `seconds` of frames (200 ms at 250 Hz) of simulated device `i` with a rhythm
/// chosen by `i`.
fn sim_frames(prefix: &str, i: u64, seconds: u32) -> Vec<Frame> {
    let mut src = support::sim_device(
        &format!("{prefix}{i}"),
        &format!("p-{prefix}{i}"),
        support::RHYTHMS[(i % 3) as usize],
        i,
        Lead::II,
        T0,
    );
    (0..seconds * 5).map(|_| src.next_frame()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_records_give_the_offline_findings() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let Some(data) = support::data_dir() else {
        println!("skipping: shared records not available (../shared/data or CARDIOSTREAM_DATA)");
        return;
    };
    let started = Instant::now();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker, 2);
    let tmp = tempfile::tempdir().unwrap();
    let (pipeline, cfg) = Instance::start(tmp.path(), &bootstrap, &t);

    // Three MIT-BIH records, 90 s each: the same frames go to the broker and offline.
    let mut msgs = Vec::new();
    let mut sources = Vec::new();
    for name in ["101", "119", "201"] {
        let rec = ecg_ingest::wfdb::read_record(&data.join("mitdb").join(name)).unwrap();
        let src = RecordSource::new(&rec, T0, 200, Some(90.0)).unwrap();
        let mut copy = RecordSource::new(&rec, T0, 200, Some(90.0)).unwrap();
        while let Some(f) = copy.next_frame().unwrap() {
            msgs.push(frame_msg(&f));
        }
        sources.push(Source::Record(Box::new(src)));
    }
    let (offline, dead) = support::offline(&cfg, &msgs);
    assert!(dead.is_empty());
    let want = keyed(&offline);
    assert!(want.len() > 100, "{} offline findings", want.len());

    let opts = PublishOptions {
        topic: t.frames.clone(),
        encoding: Encoding::Protobuf,
        speed: 0.0,
        duration: None,
    };
    let (_tx, rx) = watch::channel(false);
    let sent = devices::publish(&support::producer(&bootstrap), sources, &opts, || {}, rx)
        .await
        .unwrap();
    assert_eq!(sent as usize, msgs.len());

    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(Duration::from_secs(40), "the offline findings", |ms| {
            keyed(&support::findings(ms)).is_superset(&want)
        })
        .await;
    pipeline.stop().await;
    reader.drain(Duration::from_secs(2)).await;
    let got = support::findings(&reader.messages);
    assert_eq!(
        keyed(&got),
        want,
        "same windows scored, same keys and statuses"
    );
    assert_eq!(
        got.len(),
        offline.len(),
        "no duplicates in an undisturbed run"
    );
    println!(
        "{} frames, {} findings, equal to the offline run, in {:.1?}",
        msgs.len(),
        got.len(),
        started.elapsed()
    );
}

/// Malformed variants of a valid frame, each with the error kind it must get.
fn malformed(f: &Frame, which: usize) -> (Msg, &'static str) {
    let key = f.stream.as_str().to_owned();
    let pb = |edit: &dyn Fn(&mut codec::pb::Frame)| {
        let mut m = codec::to_pb(f);
        edit(&mut m);
        Msg {
            key: key.clone(),
            payload: m.encode_to_vec(),
            content_type: Some(CONTENT_TYPE_PROTOBUF),
        }
    };
    match which % 6 {
        0 => (
            Msg {
                key: key.clone(),
                payload: vec![0xff; 12],
                content_type: Some(CONTENT_TYPE_PROTOBUF),
            },
            "undecodable",
        ),
        1 => (pb(&|m| m.sample_rate_hz = 3), "bad_sample_rate"),
        2 => (pb(&|m| m.channels.clear()), "bad_lead_count"),
        3 => (
            pb(&|m| m.channels[0].samples[7] = 900_000_000),
            "bad_samples",
        ),
        4 => (pb(&|m| m.schema_version = 9), "unsupported_version"),
        _ => (
            Msg {
                key,
                payload: b"{\"schema_version\": 1, \"stream_id\": ".to_vec(),
                content_type: Some(CONTENT_TYPE_JSON),
            },
            "undecodable",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_topic_receives_exactly_the_malformed_frames() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let started = Instant::now();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker, 2);
    let tmp = tempfile::tempdir().unwrap();
    let (pipeline, cfg) = Instance::start(tmp.path(), &bootstrap, &t);

    // Two simulated devices, 40 s each; 12 malformed frames among their valid ones.
    let mut msgs = Vec::new();
    let mut bad_kinds = BTreeMap::new(); // index in msgs -> kind
    for s in 0..2u64 {
        for (j, f) in sim_frames("dlq", s, 40).iter().enumerate() {
            msgs.push(frame_msg(f));
            if j % 31 == 7 && bad_kinds.len() < 12 {
                let (m, kind) = malformed(f, bad_kinds.len());
                bad_kinds.insert(msgs.len(), kind);
                msgs.push(m);
            }
        }
    }
    assert_eq!(bad_kinds.len(), 12);
    let (offline, offline_dead) = support::offline(&cfg, &msgs);
    assert_eq!(
        offline_dead,
        bad_kinds.values().copied().collect::<Vec<_>>(),
        "each malformed frame is dead-lettered offline with its kind"
    );
    let want = keyed(&offline);

    let acks = support::send_all(&support::producer(&bootstrap), &t.frames, &msgs).await;
    // (partition, offset) -> (payload, kind) of the injected frames.
    let injected: BTreeMap<(i32, i64), (&[u8], &str)> = bad_kinds
        .iter()
        .map(|(&i, &k)| (acks[i], (msgs[i].payload.as_slice(), k)))
        .collect();
    assert_eq!(
        injected.len(),
        12,
        "distinct offsets acknowledged: {acks:?}"
    );

    let mut dlq = Reader::new(&bootstrap, &t.dlq);
    dlq.until(Duration::from_secs(40), "12 dead letters", |ms| {
        ms.len() >= 12
    })
    .await;
    let mut reader = Reader::new(&bootstrap, &t.findings);
    reader
        .until(Duration::from_secs(40), "the offline findings", |ms| {
            keyed(&support::findings(ms)).is_superset(&want)
        })
        .await;
    pipeline.stop().await;
    dlq.drain(Duration::from_secs(2)).await;
    reader.drain(Duration::from_millis(500)).await;

    assert_eq!(dlq.messages.len(), 12, "exactly the injected frames");
    let mut seen = BTreeSet::new();
    for m in &dlq.messages {
        let h = |k| support::header(m, k).unwrap_or_else(|| panic!("header {k}"));
        assert_eq!(h(kafka::DLQ_SOURCE_TOPIC), t.frames);
        let at = (
            h(kafka::DLQ_SOURCE_PARTITION).parse::<i32>().unwrap(),
            h(kafka::DLQ_SOURCE_OFFSET).parse::<i64>().unwrap(),
        );
        let (payload, kind) = injected
            .get(&at)
            .unwrap_or_else(|| panic!("dead letter from {at:?} was not injected"));
        assert_eq!(m.payload().unwrap(), *payload, "payload kept as sent");
        assert_eq!(h(kafka::DLQ_ERROR_KIND), *kind, "at {at:?}");
        assert!(!h(kafka::DLQ_ERROR_MESSAGE).is_empty());
        assert!(seen.insert(at), "{at:?} dead-lettered twice");
    }
    assert_eq!(
        keyed(&support::findings(&reader.messages)),
        want,
        "valid frames still give the offline findings"
    );
    println!(
        "{} frames ({} malformed): DLQ and findings as offline, in {:.1?}",
        msgs.len(),
        injected.len(),
        started.elapsed()
    );
}

/// Waits until both instances own partitions: sends one frame of each of a set of
/// probe streams (less than a window, so no findings) covering every partition until
/// both instances have consumed some. (tansu 0.6.0 answers ListGroups/DescribeGroups
/// with no groups, so membership cannot be asked of the broker.)
async fn wait_until_both_consume(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    a: &Instance,
    b: &Instance,
) -> (f64, f64) {
    let probes: Vec<Msg> = (0..12u64)
        .map(|i| frame_msg(&sim_frames("probe-", i, 1)[0]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut sent = 0.0;
    loop {
        support::send_all(producer, topic, &probes).await;
        sent += probes.len() as f64;
        let poll_until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < poll_until {
            let (ca, cb) = (a.frames_consumed(), b.frames_consumed());
            if ca > 0.0 && cb > 0.0 && ca + cb == sent {
                return (ca, cb);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            Instant::now() < deadline,
            "both instances never consumed: a {}, b {}",
            a.frames_consumed(),
            b.frames_consumed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_partitions_and_one_takes_over() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let started = Instant::now();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker, 4);
    let tmp = tempfile::tempdir().unwrap();
    let (a, cfg) = Instance::start(tmp.path(), &bootstrap, &t);
    let (b, _) = Instance::start(tmp.path(), &bootstrap, &t);

    let batch = |prefix: &str| -> Vec<Msg> {
        (0..12u64)
            .flat_map(|i| sim_frames(prefix, i, 30))
            .map(|f| frame_msg(&f))
            .collect()
    };
    let first = batch("one-");
    let second = batch("two-");
    let all: Vec<Msg> = first.iter().chain(&second).cloned().collect();
    let want_first = keyed(&support::offline(&cfg, &first).0);
    let want_all = keyed(&support::offline(&cfg, &all).0);
    let producer = support::producer(&bootstrap);
    let mut reader = Reader::new(&bootstrap, &t.findings);
    let (a0, b0) = wait_until_both_consume(&producer, &t.frames, &a, &b).await;

    // Both instances in the group: the partitions are split between them.
    let acks = support::send_all(&producer, &t.frames, &first).await;
    let parts: BTreeSet<i32> = acks.iter().map(|a| a.0).collect();
    assert_eq!(parts.len(), 4, "12 streams cover the 4 partitions");
    reader
        .until(
            Duration::from_secs(40),
            "findings of the first streams",
            |ms| keyed(&support::findings(ms)).is_superset(&want_first),
        )
        .await;
    let (ca, cb) = (a.frames_consumed() - a0, b.frames_consumed() - b0);
    println!("frames consumed: a {ca}, b {cb} of {}", first.len());
    assert!(
        ca > 0.0 && cb > 0.0,
        "both instances consume: a {ca}, b {cb}"
    );
    // At least once: a rebalance still settling replays from the committed offset.
    assert!(
        ca + cb >= first.len() as f64,
        "every frame consumed: {} of {}",
        ca + cb,
        first.len()
    );

    // One instance stops; the other takes over all four partitions.
    a.stop().await;
    let acks = support::send_all(&producer, &t.frames, &second).await;
    assert_eq!(acks.iter().map(|a| a.0).collect::<BTreeSet<_>>().len(), 4);
    reader
        .until(Duration::from_secs(50), "findings of every stream", |ms| {
            keyed(&support::findings(ms)).is_superset(&want_all)
        })
        .await;
    let cb2 = b.frames_consumed() - b0;
    assert!(
        cb2 - cb >= second.len() as f64,
        "b consumed the second streams on all partitions: {cb} -> {cb2}"
    );
    b.stop().await;
    reader.drain(Duration::from_millis(500)).await;
    let got = support::findings(&reader.messages);
    let got_keys = keyed(&got);
    let extra: Vec<_> = got_keys.difference(&want_all).collect();
    assert!(
        extra.is_empty(),
        "findings the offline run lacks: {extra:?}"
    );
    println!(
        "{} findings published ({} distinct, {} expected), in {:.1?}",
        got.len(),
        got_keys.len(),
        want_all.len(),
        started.elapsed()
    );
}

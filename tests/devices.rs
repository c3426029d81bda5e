//! Device side: replayed WFDB records and simulated patients published as wire
//! frames to an in-process Kafka cluster, read back through a consumer and decoded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

mod support;

use cardiostream::devices::{self, PublishOptions, RecordSource, Source};
use ecg_ingest::codec::{self, Encoding};
use ecg_ingest::kafka;
use ecg_types::{Frame, Lead};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

async fn consume(bootstrap: &str, topic: &str, n: usize) -> Vec<(String, Frame, Option<String>)> {
    let c: StreamConsumer = kafka::consumer_config(&kafka::connection(bootstrap), "test-reader")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("frames arrive")
            .unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let ct = kafka::content_type(&m);
        let f = codec::decode(m.payload().unwrap(), ct.as_deref()).unwrap();
        out.push((key, f, ct));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_record_arrives_sample_for_sample() {
    let Some(dir) = support::data_dir() else {
        println!("skipping: shared records not available (../shared/data or CARDIOSTREAM_DATA)");
        return;
    };
    let rec = ecg_ingest::wfdb::read_record(&dir.join("mitdb/101")).unwrap();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("frames", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: FutureProducer = kafka::producer_config(&kafka::connection(&bootstrap), 5)
        .create()
        .unwrap();
    let src = RecordSource::new(&rec, 1_800_000_000_000_000, 200, Some(20.0)).unwrap();
    let opts = PublishOptions {
        topic: "frames".into(),
        encoding: Encoding::Protobuf,
        speed: 0.0,
        duration: None,
    };
    let (_tx, rx) = watch::channel(false);
    let sent = devices::publish(
        &producer,
        vec![Source::Record(Box::new(src))],
        &opts,
        || {},
        rx,
    )
    .await
    .unwrap();
    assert_eq!(sent, 100, "20 s in 200 ms frames");
    let got = consume(&bootstrap, "frames", 100).await;
    let mut samples: HashMap<Lead, Vec<i32>> = HashMap::new();
    for (i, (key, f, ct)) in got.iter().enumerate() {
        assert_eq!(key, "rec-101");
        assert_eq!(ct.as_deref(), Some("application/x-protobuf"));
        assert_eq!(
            f.seq, i as u64,
            "one partition per key keeps frames in order"
        );
        assert_eq!(f.t0.0, 1_800_000_000_000_000 + i as i64 * 200_000);
        assert_eq!(f.leads, vec![Lead::II, Lead::V1], "MLII and V1");
        for (l, lead) in f.leads.iter().enumerate() {
            samples
                .entry(*lead)
                .or_default()
                .extend_from_slice(f.lead_samples(l));
        }
    }
    for (sig, lead) in [(0, Lead::II), (1, Lead::V1)] {
        let want: Vec<i32> = rec.physical(sig)[..7200]
            .iter()
            .map(|v| (f64::from(*v) * 1000.0).round() as i32)
            .collect();
        assert_eq!(samples[&lead], want, "lead {lead} in µV");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_publish_json_frames_keyed_by_stream() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("frames", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: FutureProducer = kafka::producer_config(&kafka::connection(&bootstrap), 5)
        .create()
        .unwrap();
    let sources = (0..3)
        .map(|i| support::sim_source(i, ecg_sim::Preset::NormalSinus, Lead::I))
        .collect();
    let opts = PublishOptions {
        topic: "frames".into(),
        encoding: Encoding::Json,
        speed: 20.0,
        duration: Some(Duration::from_millis(1500)),
    };
    let (_tx, rx) = watch::channel(false);
    let sent = devices::publish(&producer, sources, &opts, || {}, rx)
        .await
        .unwrap();
    // 1.5 s at 20x is 30 device seconds: about 150 frames of 200 ms per stream.
    assert!(
        (3 * 120..=3 * 160).contains(&(sent as usize)),
        "sent {sent}"
    );
    let got = consume(&bootstrap, "frames", sent as usize).await;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    for (key, f, ct) in got {
        assert_eq!(ct.as_deref(), Some("application/json"));
        assert_eq!(key, f.stream.as_str());
        let want = next_seq.entry(key).or_default();
        assert_eq!(f.seq, *want);
        *want += 1;
    }
    assert_eq!(next_seq.len(), 3);
}

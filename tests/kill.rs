//! At-least-once on a real broker: the `cardiostream pipeline` process is killed with
//! SIGKILL at random moments, again and again, while a producer keeps publishing
//! frames, and restarted each time. Every window an undisturbed run would score must
//! be published at least once, duplicates must carry the same idempotency key, and no
//! window may appear that the undisturbed run lacks. Skips without `tansu`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use ecg_ingest::codec::{self, CONTENT_TYPE_PROTOBUF};
use ecg_types::{Condition, Finding};
use rand::{Rng as _, SeedableRng as _};
use support::tansu::{self, Broker};
use support::{window_keys, Devices, Killed, Reader, Topics};

const T0: i64 = 1_800_000_000_000_000;
/// SIGKILLs per run (`KILL_TEST_KILLS` overrides: scripts/chaos.sh runs more).
const KILLS: usize = 20;
const STREAMS: u64 = 8;

/// One `cardiostream pipeline` process.
fn spawn_pipeline(config: &Path, log: &Path) -> Killed {
    support::spawn_cardiostream("pipeline", config, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_pipeline_loses_no_window() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let started = Instant::now();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker, 4);
    let tmp = tempfile::tempdir().unwrap();
    let http_port = tansu::free_port();
    let config = support::config_file(tmp.path(), &bootstrap, &t, http_port);
    let cfg = cardiostream::config::Config::load(Some(&config)).unwrap();

    // The producer: STREAMS simulated devices at 4× real time (160 frames/s) until
    // the kills are done. It keeps every message it sent for the offline run.
    let devices = Devices::start(&bootstrap, &t.frames, "kill", STREAMS, T0);

    // Kill at random moments: each instance is killed a random 0–3 s after it has
    // consumed its first frame (or after 40 s if it never does).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("KILL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2026),
    );
    let kills = std::env::var("KILL_TEST_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&k: &usize| k >= 2)
        .unwrap_or(KILLS);
    let frames_consumed = "cardiostream_ingest_frames_consumed_total";
    let mut kill_log = Vec::new();
    for k in 0..kills {
        let log = tmp.path().join(format!("pipeline-{k}.log"));
        let mut child = spawn_pipeline(&config, &log);
        let up = Instant::now();
        let mut consumed = 0.0;
        while up.elapsed() < Duration::from_secs(40) {
            consumed = support::scrape(http_port, frames_consumed).unwrap_or(0.0);
            if consumed > 0.0 {
                break;
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "pipeline exited on its own ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let delay = Duration::from_millis(rng.random_range(0..3000));
        tokio::time::sleep(delay).await;
        let at = support::scrape(http_port, frames_consumed).unwrap_or(consumed);
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        let committed = {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let c: BaseConsumer = ecg_ingest::kafka::consumer_config(
                &ecg_ingest::kafka::connection(&bootstrap),
                &t.group,
            )
            .create()
            .unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..4 {
                tpl.add_partition(&t.frames, p);
            }
            let committed = c.committed_offsets(tpl, Duration::from_secs(5)).ok();
            committed
                .map(|t| {
                    t.elements()
                        .iter()
                        .map(|e| match e.offset() {
                            rdkafka::Offset::Offset(o) => o,
                            _ => -1,
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        println!("  committed offsets after the kill: {committed:?}");
        kill_log.push(committed);
        println!(
            "kill {}: after {:.1?} (first frame, then {delay:?}), {at} frames consumed",
            k + 1,
            up.elapsed()
        );
    }
    // Work is committed as it is published: later restarts do not start over.
    let (first, last) = (&kill_log[1], &kill_log[kills - 1]);
    assert!(
        first.iter().zip(last).all(|(a, b)| b > a),
        "committed offsets advance: {first:?} -> {last:?}"
    );
    let msgs = devices.stop().await;

    // What an undisturbed run publishes.
    let (offline, dead) = support::offline(&cfg, &msgs);
    assert!(dead.is_empty());
    let want = window_keys(&offline);

    // A last instance finishes the work.
    let log = tmp.path().join("pipeline-final.log");
    let child = spawn_pipeline(&config, &log);
    let mut reader = Reader::new(&bootstrap, &t.findings);
    let (mut seen, mut decoded) = (BTreeSet::new(), 0);
    let complete = reader
        .wait_for(Duration::from_secs(150), |ms| {
            // Incremental: decoding every finding again per message is quadratic.
            seen.extend(window_keys(&support::findings(&ms[decoded..])));
            decoded = ms.len();
            seen.is_superset(&want)
        })
        .await;
    for m in [
        "cardiostream_ingest_signal_gaps_total",
        "cardiostream_ingest_clock_jumps_total",
        "cardiostream_ingest_frames_duplicate_total",
        "cardiostream_ingest_frames_reordered_total",
        "cardiostream_ingest_frames_consumed_total",
    ] {
        println!("final instance: {m} {:?}", support::scrape(http_port, m));
    }
    if !complete {
        let mut frames = Reader::new(&bootstrap, &t.frames);
        frames.drain(Duration::from_secs(3)).await;
        let mut last: BTreeMap<(i32, String), u64> = BTreeMap::new();
        for m in &frames.messages {
            use rdkafka::message::Message as _;
            let f = codec::decode(m.payload().unwrap(), Some(CONTENT_TYPE_PROTOBUF)).unwrap();
            let k = (m.partition(), f.stream.as_str().to_owned());
            if let Some(prev) = last.get(&k) {
                if f.seq != prev + 1 {
                    println!(
                        "partition {} offset {}: {} seq {} after {prev}",
                        m.partition(),
                        m.offset(),
                        k.1,
                        f.seq
                    );
                }
            }
            last.insert(k, f.seq);
        }
        println!(
            "{} frames on the topic, {} sent",
            frames.messages.len(),
            msgs.len()
        );
        let got = window_keys(&support::findings(&reader.messages));
        let missing: Vec<_> = want.difference(&got).collect();
        if let Some(first) = missing.first() {
            let prefix = first.split("/1").next().unwrap_or_default().to_owned();
            let seen: Vec<_> = got.iter().filter(|k| k.starts_with(&prefix)).collect();
            let offline_keys: Vec<_> = want.iter().filter(|k| k.starts_with(&prefix)).collect();
            println!("seen {prefix}: {seen:?}\noffline: {offline_keys:?}");
        }
        panic!(
            "{} of {} windows never published, e.g. {:?}\nlast log:\n{}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(20)],
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    reader.drain(Duration::from_secs(2)).await;
    drop(child);

    let got = support::findings(&reader.messages);
    let got_keys = window_keys(&got);
    let invented: Vec<_> = got_keys.difference(&want).collect();
    assert!(
        invented.is_empty(),
        "windows the undisturbed run lacks: {invented:?}"
    );
    // Duplicates share the key, and with it stream, source, condition and window. A
    // lethal alarm is the exception by design: it is published at its onset, again
    // every 5 s while it lasts and with its last extent, all under the key of its
    // start, so its window's end grows (docs/accuracy-alarms.md).
    let lethal = ecg_pipeline::analyzer::lethal_source();
    let mut by_key: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &got {
        by_key.entry(f.key.as_str()).or_default().push(f);
    }
    let mut duplicates = 0;
    let mut status_differs = 0;
    for (key, fs) in &by_key {
        duplicates += fs.len() - 1;
        let end = |f: &Finding| (f.source != lethal).then_some(f.window_end);
        for f in &fs[1..] {
            assert_eq!(
                (&f.stream, &f.source, f.condition, f.window_start, end(f)),
                (
                    &fs[0].stream,
                    &fs[0].source,
                    fs[0].condition,
                    fs[0].window_start,
                    end(fs[0])
                ),
                "duplicates of {key} describe the same window"
            );
            if f.status != fs[0].status {
                status_differs += 1;
            }
        }
    }
    let expected_windows = offline
        .iter()
        .filter(|f| f.condition == Condition::LeadOff)
        .count();
    let seen_windows = got
        .iter()
        .filter(|f| f.condition == Condition::LeadOff)
        .map(|f| &f.key)
        .collect::<BTreeSet<_>>()
        .len();
    assert_eq!(seen_windows, expected_windows);
    assert!(
        duplicates > 0,
        "{kills} kills mid-stream replay some windows"
    );
    println!(
        "kills: {kills}; frames produced: {}; rhythm windows expected {expected_windows}, seen \
         {seen_windows}; window findings expected {}, distinct seen {}; findings published {} \
         ({duplicates} duplicates, {status_differs} with a different status after warm-up); \
         in {:.1?}",
        msgs.len(),
        want.len(),
        got_keys.len(),
        got.len(),
        started.elapsed()
    );
}

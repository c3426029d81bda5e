//! The sequencer's policies against hostile and buggy input: a stale frame never pins
//! a commit nor takes a genuine frame's place, waits are bounded in wall-clock time
//! and bytes, the number of streams is capped, and all of it is visible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF};
use ecg_pipeline::commit::{Checkpoint, Holder};
use ecg_pipeline::events::Recorder;
use ecg_pipeline::sequencer::Sequenced;
use ecg_pipeline::{Sequencer, StreamSettings};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{Condition, DeviceId, Frame, Lead, PatientId, Position, SourceRecord, StreamId};

const T0: i64 = 1_800_000_000_000_000;

fn source(stream: &str, rate: u32, leads: Vec<Lead>, frame_samples: usize) -> FrameSource {
    let dev = Device::new(Preset::NormalSinus.config(1, rate, leads)).unwrap();
    FrameSource::new(
        dev,
        StreamId::new(stream).unwrap(),
        DeviceId::new("dev").unwrap(),
        PatientId::new("p").unwrap(),
        T0,
        frame_samples,
        1000,
    )
}

fn record(f: &Frame, offset: i64, enc: Encoding) -> SourceRecord {
    SourceRecord {
        payload: codec::encode(f, enc),
        key: Some(f.stream.as_str().as_bytes().to_vec()),
        content_type: Some(
            match enc {
                Encoding::Protobuf => CONTENT_TYPE_PROTOBUF,
                Encoding::Json => CONTENT_TYPE_JSON,
            }
            .into(),
        ),
        topic: "frames".into(),
        position: Position {
            partition: 0,
            offset,
        },
        timestamp_us: None,
    }
}

struct Run {
    seq: Sequencer,
    events: Arc<Recorder>,
    epoch: u64,
}

impl Run {
    fn new(settings: StreamSettings) -> Self {
        let events = Arc::new(Recorder::default());
        Self {
            seq: Sequencer::new(settings, events.clone()),
            events,
            epoch: 0,
        }
    }

    fn epoch(&mut self, records: Vec<SourceRecord>) -> (Sequenced, Checkpoint) {
        let mut cp = Checkpoint::new(self.epoch);
        self.epoch += 1;
        let out = self.seq.process(records, || T0, &mut cp);
        (out, cp)
    }
}

/// Issue 15, item 1: the wire-format example sent as it stands — a live stream's id,
/// a sequence number far ahead and a device time a year back — once sat in the
/// reorder buffer for minutes, pinned the partition's commit and made the genuine
/// frame of that number a "duplicate".
#[test]
fn a_stale_frame_is_dead_lettered_and_the_genuine_one_still_counts() {
    let mut src = source("bed-12.ecg", 250, vec![Lead::II], 50);
    let frames: Vec<Frame> = (0..400).map(|_| src.next_frame()).collect();
    let mut run = Run::new(StreamSettings::default());
    let mut offset = 0i64;
    let mut batch = Vec::new();
    for f in &frames[..300] {
        batch.push(record(f, offset, Encoding::Protobuf));
        offset += 1;
    }
    let (out, _) = run.epoch(batch);
    assert_eq!(out.frames.len(), 300);
    // The stale frame: seq 342 (ahead of 300), device time a year back.
    let mut stale = frames[342].clone();
    stale.t0 = stale.t0.plus_us(-365 * 24 * 3_600_000_000);
    let stale_offset = offset;
    let (out, cp) = run.epoch(vec![record(&stale, offset, Encoding::Json)]);
    offset += 1;
    assert_eq!(out.dead_letters.len(), 1);
    let dl = &out.dead_letters[0];
    assert_eq!(dl.kind, "late");
    assert!(dl.reason.contains("seq 342"), "{}", dl.reason);
    assert_eq!(dl.record.key.as_deref(), Some(b"bed-12.ecg".as_slice()));
    assert_eq!(dl.record.content_type.as_deref(), Some(CONTENT_TYPE_JSON));
    assert!(
        cp.holds
            .get(&Holder::Sequencer)
            .is_none_or(|h| h.get(&0).is_none_or(|&o| o > stale_offset)),
        "the stale frame holds back no commit: {cp:?}"
    );
    // The genuine frames, 342 among them, all go through: none is a duplicate.
    let batch: Vec<SourceRecord> = frames[300..]
        .iter()
        .map(|f| {
            offset += 1;
            record(f, offset - 1, Encoding::Protobuf)
        })
        .collect();
    let (out, _) = run.epoch(batch);
    assert_eq!(out.frames.len(), 100);
    assert!(out
        .frames
        .iter()
        .any(|s| s.frame.seq == 342 && s.frame.t0 == frames[342].t0));
    assert_eq!(run.events.count("FrameDuplicate"), 0);
    assert_eq!(run.events.count("RecordDeadLettered { kind: \"late\" }"), 1);
    assert!(out.findings.is_empty(), "no gap: {:?}", out.findings);

    // And one from the future, far ahead in device time for its number.
    let mut ahead = src.next_frame();
    let _ = src.next_frame();
    ahead.seq += 5;
    ahead.t0 = ahead.t0.plus_us(3_600_000_000);
    let (out, _) = run.epoch(vec![record(&ahead, offset, Encoding::Protobuf)]);
    assert_eq!(out.dead_letters[0].kind, "future");
}

#[test]
fn a_hole_waits_no_longer_than_the_wall_clock_bound() {
    let mut src = source("s", 250, vec![Lead::II], 50);
    let frames: Vec<Frame> = (0..20).map(|_| src.next_frame()).collect();
    let settings = StreamSettings {
        reorder_horizon_ms: 600_000,
        reorder_wait_ms: 50,
        ..StreamSettings::default()
    };
    let mut run = Run::new(settings);
    let mut batch: Vec<SourceRecord> = frames[..10]
        .iter()
        .enumerate()
        .map(|(i, f)| record(f, i as i64, Encoding::Protobuf))
        .collect();
    // Frame 10 never comes; 11..20 wait behind the hole.
    batch.extend(
        frames[11..]
            .iter()
            .enumerate()
            .map(|(i, f)| record(f, 11 + i as i64, Encoding::Protobuf)),
    );
    // The first 10 frames wait the whole horizon too (a new stream's start), so both
    // waits are bounded by the wall clock alone here.
    let (out, cp) = run.epoch(batch);
    assert!(out.frames.is_empty());
    assert_eq!(cp.holds[&Holder::Sequencer][&0], 0);
    std::thread::sleep(Duration::from_millis(80));
    let (out, cp) = run.epoch(Vec::new());
    assert_eq!(out.frames.len(), 19, "released once the wait ran out");
    let gaps: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.condition == Condition::SignalGap)
        .collect();
    assert_eq!(gaps.len(), 1);
    assert!(cp
        .holds
        .get(&Holder::Sequencer)
        .is_none_or(|h| h.is_empty()));
    assert!(run.events.count("ReorderWaitExpired") >= 1);
}

#[test]
fn a_stream_over_its_byte_budget_stops_waiting() {
    // 12 leads at 500 Hz, 1 s frames: 24 KB of samples each.
    let mut src = source("s12", 500, Lead::STANDARD_12.to_vec(), 500);
    let frames: Vec<Frame> = (0..12).map(|_| src.next_frame()).collect();
    let settings = StreamSettings {
        reorder_horizon_ms: 600_000,
        max_reorder_bytes: 64 << 10,
        ..StreamSettings::default()
    };
    let mut run = Run::new(settings);
    // Start the stream (its first frames wait, then the budget releases them).
    let first: Vec<SourceRecord> = frames[..4]
        .iter()
        .enumerate()
        .map(|(i, f)| record(f, i as i64, Encoding::Protobuf))
        .collect();
    let (out, _) = run.epoch(first);
    assert_eq!(
        out.frames.len(),
        4,
        "released by the budget, not the horizon"
    );
    // A hole at 4; 5.. wait until they take more than 64 KiB.
    let mut released = 0;
    for (i, f) in frames[5..].iter().enumerate() {
        let (out, _) = run.epoch(vec![record(f, 5 + i as i64, Encoding::Protobuf)]);
        released += out.frames.len();
        if released > 0 {
            assert_eq!(i, 2, "the third waiting frame (72 KB) ends the wait");
            assert_eq!(out.findings[0].condition, Condition::SignalGap);
            break;
        }
    }
    assert_eq!(released, 3);
    assert!(run.events.count("ReorderBudgetExceeded") >= 1);
}

#[test]
fn streams_beyond_the_cap_are_dead_lettered_until_others_leave() {
    let settings = StreamSettings {
        max_streams: 2,
        idle_evict_s: 1.0,
        commit_hold_s: 1.0,
        ..StreamSettings::default()
    };
    let mut run = Run::new(settings);
    let recs: Vec<SourceRecord> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            record(
                &source(s, 250, vec![Lead::II], 50).next_frame(),
                i as i64,
                Encoding::Protobuf,
            )
        })
        .collect();
    let (out, _) = run.epoch(recs.clone());
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].kind, "stream_limit");
    assert!(out.dead_letters[0].reason.contains("max_streams"));
    assert_eq!(run.seq.streams(), 2);
    assert_eq!(run.events.count("StreamLimitReached"), 1);
    // Once the others are evicted, the stream gets in.
    std::thread::sleep(Duration::from_millis(1100));
    let (out, _) = run.epoch(Vec::new());
    assert_eq!(out.evicted.len(), 2);
    let (out, _) = run.epoch(vec![recs[2].clone()]);
    assert!(out.dead_letters.is_empty());
    assert_eq!(run.seq.streams(), 1);
}

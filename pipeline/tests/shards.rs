//! The analyzer split over threads gives each stream exactly what one analyzer gives
//! it: the same findings (keys, statuses, values, strips, reasons), the same stream
//! statuses and the same offsets held back for a restart. Only the interleaving of
//! different streams within an epoch may differ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ecg_dsp::stream::DspConfig;
use ecg_pipeline::events::Discard;
use ecg_pipeline::offline::{frame_record, now_us};
use ecg_pipeline::{Checkpoint, Sequencer, Shards, Sink, StreamSettings};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, Lead, PatientId, SourceRecord, StreamId};

const RATE: u32 = 250;
const SECONDS: usize = 45;

/// Eight three-lead streams of different rhythms (lethal ones among them), their
/// 200 ms frames interleaved as a consumer reads them, offsets across two partitions.
fn records() -> Vec<SourceRecord> {
    let presets = [
        Preset::NormalSinus,
        Preset::AtrialFibrillation,
        Preset::Asystole,
        Preset::VentricularTachycardia,
        Preset::Pvcs,
        Preset::NoisyNormalSinus,
        Preset::Bradycardia,
        Preset::Tachycardia,
    ];
    let mut sources: Vec<FrameSource> = presets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dev = Device::new(p.config(40 + i as u64, RATE, vec![Lead::I, Lead::II, Lead::V1]))
                .unwrap();
            FrameSource::new(
                dev,
                StreamId::new(format!("bed-{i}.ecg")).unwrap(),
                DeviceId::new(format!("mon-{i}")).unwrap(),
                PatientId::new(format!("p-{i}")).unwrap(),
                1_800_000_000_000_000 + i as i64 * 13_000,
                RATE as usize / 5,
                1000,
            )
        })
        .collect();
    let mut out = Vec::new();
    let mut offsets = [0i64; 2];
    for _ in 0..SECONDS * 5 {
        for (i, src) in sources.iter_mut().enumerate() {
            let partition = (i % 2) as i32;
            let mut r = frame_record(&src.next_frame(), offsets[i % 2]);
            r.position.partition = partition;
            offsets[i % 2] += 1;
            out.push(r);
        }
    }
    out
}

/// Per stream: its findings and statuses as JSON, in order; and per epoch the
/// offsets held back.
type Run = (BTreeMap<String, Vec<String>>, Vec<Vec<(i32, i64)>>);

fn run(threads: usize, records: &[SourceRecord]) -> Run {
    let telemetry: Sink = Arc::new(Discard);
    let settings = StreamSettings::default();
    let mut sequencer = Sequencer::new(settings.clone(), telemetry.clone());
    let mut shards = Shards::new(
        threads,
        &DspConfig::default(),
        5.0,
        &Arc::new(Vec::new()),
        &settings,
        &telemetry,
    );
    assert_eq!(shards.len(), threads);
    let mut per_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut safe = Vec::new();
    for (epoch, chunk) in records.chunks(50).enumerate() {
        let mut cp = Checkpoint::new(epoch as u64);
        let seq = sequencer.process(chunk.to_vec(), now_us, &mut cp);
        let out = shards.process(seq.frames, &mut cp);
        for f in &out.findings {
            per_stream
                .entry(f.stream.as_str().to_owned())
                .or_default()
                .push(serde_json::to_string(f).unwrap());
        }
        for s in &out.statuses {
            per_stream
                .entry(s.stream.as_str().to_owned())
                .or_default()
                .push(serde_json::to_string(s).unwrap());
        }
        safe.push(cp.safe_offsets());
    }
    assert_eq!(shards.streams(), 8);
    (per_stream, safe)
}

#[test]
fn three_analyzer_threads_give_each_stream_what_one_gives_it() {
    let records = records();
    let (one, one_safe) = run(1, &records);
    let (three, three_safe) = run(3, &records);
    assert_eq!(one.len(), 8, "every stream has findings");
    let lethal = one
        .values()
        .flatten()
        .filter(|f| f.contains("\"lethal\"") && f.contains("\"present\""))
        .count();
    assert!(lethal > 0, "the lethal presets raise alarms");
    for (stream, findings) in &one {
        assert_eq!(Some(findings), three.get(stream), "{stream}");
    }
    assert_eq!(one, three);
    assert_eq!(one_safe, three_safe);
    assert!(one_safe.iter().flatten().any(|(_, o)| *o > 0));
}

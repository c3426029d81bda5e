//! The pipeline's per-stream work against the bare DSP chain, on one thread, without
//! a broker: what the load test's capacity ratio measures, in a minute instead of an
//! hour, for profiling and A/B runs.
//!
//! ```sh
//! cargo run --release -p ecg-pipeline --example stages_bench -- [PATIENTS] [ROUNDS] [THREADS]
//! ```
//!
//! `PATIENTS` (default 100) 12-lead 500 Hz streams, 60 s each, of the simulator's
//! rhythms in turn, are encoded once as the wire format's protobuf frames of 100
//! samples (200 ms, the load test's) and then, in each of `ROUNDS` (default 5)
//! alternating rounds:
//! - **bare**: `StreamDsp::push` on every frame's samples (already in mV): the chain
//!   the load test's "bare DSP chain" runs;
//! - **stages**: the [`Sequencer`] (decode, validation, order) and the [`Analyzer`]
//!   (the same DSP, the lethal-arrhythmia detector on nine of the twelve leads, aVR,
//!   aVL and aVF being combinations of I, II and III; windows, findings,
//!   strips, the bundled models' inputs) on the encoded records, in epochs of 512
//!   records interleaved across the streams as a consumer reads them, with the
//!   prometheus subscriber the deployable uses. The models' inputs are built but not
//!   scored (the scorer is its own thread in the deployable); with no ONNX Runtime
//!   (`CARDIOSTREAM_ORT_LIB`) there are no models and no inputs.
//!
//! It prints each round's thread CPU time per stream-second and the ratio
//! bare/stages (the load test's "ratio to the bare DSP chain" without the scorer,
//! the publisher and the Kafka client), and the median over rounds. With `THREADS`
//! above 1 the analyzer is split over that many threads (`analyzer_threads`,
//! [`Shards`]): the calling thread's CPU then covers one shard only, and the wall
//! time per stream-second (last column) is what shows the scaling.

#![allow(clippy::print_stdout, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecg_dsp::stream::DspConfig;
use ecg_dsp::StreamDsp;
use ecg_inference::Model;
use ecg_pipeline::offline::{frame_record, now_us};
use ecg_pipeline::{Checkpoint, PipelineMetrics, Sequencer, Shards, Sink, StreamSettings};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, Frame, Lead, PatientId, SourceRecord, StreamId};
use sha2::{Digest as _, Sha256};

const RATE: u32 = 500;
const FRAME_SAMPLES: usize = 100;
const SECONDS: usize = 60;
const EPOCH_RECORDS: usize = 512;
const RHYTHMS: [Preset; 6] = Preset::BENCH_MIX;

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, ns on CPU).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn streams(patients: usize) -> Vec<Vec<Frame>> {
    (0..patients)
        .map(|i| {
            let preset = RHYTHMS[i % RHYTHMS.len()];
            let dev = Device::new(preset.config(11 + i as u64, RATE, Lead::STANDARD_12.to_vec()))
                .expect("valid sim config");
            let mut src = FrameSource::new(
                dev,
                StreamId::new(format!("bench-{i}.ecg")).expect("id"),
                DeviceId::new(format!("dev-{i}")).expect("id"),
                PatientId::new(format!("p-{i}")).expect("id"),
                1_800_000_000_000_000 + i as i64 * 7_000,
                FRAME_SAMPLES,
                1000,
            );
            (0..SECONDS * RATE as usize / FRAME_SAMPLES)
                .map(|_| src.next_frame())
                .collect()
        })
        .collect()
}

/// The records as a consumer reads them: frame k of every stream, then frame k + 1.
fn interleaved(streams: &[Vec<Frame>]) -> Vec<SourceRecord> {
    let frames = streams[0].len();
    let mut out = Vec::with_capacity(frames * streams.len());
    for k in 0..frames {
        for s in streams {
            out.push(frame_record(&s[k], out.len() as i64));
        }
    }
    out
}

#[inline(never)]
fn bare(streams: &[Vec<Vec<f32>>]) -> Duration {
    let cfg = DspConfig::default();
    let lead_off = [false; 12];
    let mut events = Vec::new();
    let t = thread_cpu();
    for blocks in streams {
        let mut dsp = StreamDsp::new(&cfg, RATE, 12);
        for b in blocks {
            events.clear();
            dsp.push(std::hint::black_box(b), &lead_off, &mut events);
        }
    }
    thread_cpu() - t
}

/// The same chain on the same blocks in the order the stages read them (frame k of
/// every stream, then frame k + 1), every stream's state kept: what the chain costs when
/// it serves these streams at once, its state as cold as the stages find theirs.
#[inline(never)]
fn bare_interleaved(streams: &[Vec<Vec<f32>>]) -> Duration {
    let cfg = DspConfig::default();
    let lead_off = [false; 12];
    let mut events = Vec::new();
    // Timed from the states' creation, as `bare` times its own.
    let t = thread_cpu();
    let mut dsps: Vec<StreamDsp> = streams
        .iter()
        .map(|_| StreamDsp::new(&cfg, RATE, 12))
        .collect();
    let frames = streams.iter().map(Vec::len).min().unwrap_or(0);
    for k in 0..frames {
        for (dsp, blocks) in dsps.iter_mut().zip(streams) {
            events.clear();
            dsp.push(std::hint::black_box(&blocks[k]), &lead_off, &mut events);
        }
    }
    thread_cpu() - t
}

/// SHA-256 over text (as `lethal_dump`): the digest of what the stages output, fed
/// their outputs' `Debug` text (whose floats print as the shortest text that reads back
/// as the same value, so equal text is equal bits).
struct TextDigest(Sha256);

impl std::fmt::Write for TextDigest {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Sequencer and analyzer (the scorer is its own thread in the deployable; the model
/// inputs the analyzer builds are dropped here), the analyzer on `threads` threads.
/// Returns the calling thread's CPU time, the wall time, the findings and the model
/// inputs built. With a `digest`, every epoch's outputs are fed to it in the order
/// produced (the sequencer's findings and dead letters, then the analyzer's findings,
/// model inputs with their strips, and stream statuses; not the wall-clock closing
/// times), and the time that takes is left out of both times returned.
fn stages(
    records: &[SourceRecord],
    models: &Arc<Vec<Model>>,
    threads: usize,
    mut digest: Option<&mut TextDigest>,
) -> (Duration, Duration, usize, usize) {
    let names: Vec<String> = models.iter().map(|m| m.manifest().id.clone()).collect();
    let metrics: Sink = Arc::new(PipelineMetrics::new(&names, &mut |_| {}).expect("metrics"));
    let settings = StreamSettings::default();
    let mut sequencer = Sequencer::new(settings.clone(), metrics.clone());
    let mut analyzer = Shards::new(
        threads,
        &DspConfig::default(),
        5.0,
        models,
        &settings,
        &metrics,
    );
    let (mut findings, mut inputs) = (0, 0);
    let (mut paused, mut paused_wall) = (Duration::ZERO, Duration::ZERO);
    let t = thread_cpu();
    let wall = Instant::now();
    for (i, epoch) in records.chunks(EPOCH_RECORDS).enumerate() {
        let mut cp = Checkpoint::new(i as u64);
        let seq = sequencer.process(epoch.to_vec(), now_us, &mut cp);
        let (seq_findings, dead_letters) = (seq.findings, seq.dead_letters);
        let analyzed = analyzer.process(seq.frames, &mut cp);
        findings += seq_findings.len() + analyzed.findings.len();
        inputs += analyzed.inputs.len();
        if let Some(d) = digest.as_deref_mut() {
            let (p, pw) = (thread_cpu(), Instant::now());
            let _ = write!(d, "epoch {i}\n{seq_findings:?}\n{}\n", dead_letters.len());
            let _ = write!(d, "{:?}\n{:?}\n", analyzed.findings, analyzed.statuses);
            for s in &analyzed.inputs {
                let _ = writeln!(d, "{} {:?} {:?}", s.model, s.input, s.strip);
            }
            paused += thread_cpu() - p;
            paused_wall += pw.elapsed();
        }
    }
    (
        thread_cpu() - t - paused,
        wall.elapsed() - paused_wall,
        findings,
        inputs,
    )
}

/// The bundled models (`models/`), where ONNX Runtime is found; none otherwise.
fn models() -> Arc<Vec<Model>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    match ecg_inference::load_models(&dir, 1) {
        Ok(m) => {
            let ids: Vec<&str> = m.iter().map(|m| m.manifest().id.as_str()).collect();
            println!("models (their input building counted, not their scoring): {ids:?}");
            Arc::new(m)
        }
        Err(e) => {
            println!("no models ({e}): set CARDIOSTREAM_ORT_LIB to count their input building");
            Arc::new(Vec::new())
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let patients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let frames = streams(patients.max(1));
    let blocks: Vec<Vec<Vec<f32>>> = frames
        .iter()
        .map(|fs| fs.iter().map(Frame::samples_mv).collect())
        .collect();
    let records = interleaved(&frames);
    drop(frames);
    let models = models();
    let stream_s = (patients * SECONDS) as f64;
    println!(
        "{patients} streams x {SECONDS} s, 12 leads at {RATE} Hz, frames of {FRAME_SAMPLES}; \
         thread CPU per stream-second (us)"
    );
    println!(
        "round   bare us/s   stages us/s   ratio bare/stages   findings   model inputs   \
         stages wall us/s ({threads} analyzer threads)   bare interleaved us/s   ratio"
    );
    let mut ratios = Vec::new();
    let (mut b_all, mut s_all, mut walls) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bi_all, mut ratios_i) = (Vec::new(), Vec::new());
    let mut digest = TextDigest(Sha256::new());
    for r in 1..=rounds.max(1) {
        let b = bare(&blocks).as_secs_f64() * 1e6 / stream_s;
        let bi = bare_interleaved(&blocks).as_secs_f64() * 1e6 / stream_s;
        let d = (r == 1).then_some(&mut digest);
        let (s, wall, findings, inputs) = stages(&records, &models, threads, d);
        let s = s.as_secs_f64() * 1e6 / stream_s;
        let w = wall.as_secs_f64() * 1e6 / stream_s;
        println!(
            "{r:>5}   {b:>9.1}   {s:>11.1}   {:>17.3}   {findings:>8}   {inputs:>12}   {w:>16.1}   \
             {bi:>21.1}   {:>5.3}",
            b / s,
            bi / s
        );
        bi_all.push(bi);
        ratios_i.push(bi / s);
        walls.push(w);
        ratios.push(b / s);
        b_all.push(b);
        s_all.push(s);
    }
    let (b, s) = (median(&mut b_all), median(&mut s_all));
    println!(
        "median  {b:>9.1}   {s:>11.1}   {:>17.3}   (patients per core: bare {:.0}, stages {:.0}; \
         stages wall {:.1} us/s = {:.0} patients)",
        median(&mut ratios),
        1e6 / b,
        1e6 / s,
        median(&mut walls),
        1e6 / median(&mut walls)
    );
    let bi = median(&mut bi_all);
    println!(
        "bare chain with the stages' order (every stream's state kept, frame k of each, then \
         k + 1): median {bi:.1} us/s = {:.0} patients per core, ratio to the stages {:.3}",
        1e6 / bi,
        median(&mut ratios_i)
    );
    let hex: String = digest
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("digest: {hex} (the first round's outputs, SHA-256)");
}

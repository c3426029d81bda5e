//! End-to-end load test: the largest number of simulated patients the real
//! deployables sustain on this machine, and the pipeline's capacity per core of its
//! CPU against the bare DSP chain's on the same streams. Results and how to read
//! them: docs/performance.md, "End-to-end load test".
//!
//! A tool, not a benchmark: `scripts/loadtest.sh [options]` (builds the
//! `cardiostream` binary and this tool in release mode, then runs it), or
//! `cargo run --release -p cardiostream-loadtest -- [options]` after
//! `cargo build --release --bin cardiostream`. Options:
//! `--patients 500,1000,2000,3000,3500` (the ramp), `--pipelines K` (default 1),
//! `--analyzer-threads T` (each pipeline's `analyzer_threads`, default 1),
//! `--partitions P` (default 4), `--warmup S` (default 40), `--measure S` (default 60),
//! `--fetch-wait-ms W` (consumers' `fetch.wait.max.ms`, default 10: the documented
//! setting for tansu, docs/performance.md), `--linger-ms L` (the load generator's
//! producer, default 20), `--batch-num-messages B` (default: librdkafka's),
//! `--p99-limit S` (default 0.5, see below), `--skip-model ID` (run the pipelines
//! without that bundled model),
//! `--no-stop` (run every step even after one fails).
//!
//! Each step of the ramp, for N patients:
//!
//! 1. a fresh `tansu` broker (tests/support/tansu.rs, in-memory storage) with fresh
//!    topics: frames (P partitions), findings, dead letters, alerts;
//! 2. K `cardiostream pipeline` processes (one consumer group) and one
//!    `cardiostream alerts` process (SQLite store in a temp dir), children of the
//!    `cardiostream` binary beside this tool (`--exe PATH` to choose another),
//!    configs written to the temp dir; waits until the group owns all P partitions;
//! 3. the load generator, in this process: N patients, each 12 leads at 500 Hz in
//!    200 ms frames (wire format v1, protobuf, key = stream id), replaying one of the
//!    rhythms of `demo::PATIENT_MIX` (60 s of signal per rhythm simulated once with
//!    `ecg_sim` before the step, each patient starting at its own offset) with its own
//!    stream, device and patient ids, `seq` and `t0`, at real time: patients are split
//!    into 10 slots 20 ms apart inside each 200 ms tick, and a frame's last sample is
//!    stamped with the wall-clock time it is due to be sent (device time = wall clock
//!    at send; a generator running late shows as latency). Produced with an rdkafka
//!    `FutureProducer` (`kafka::producer_config`; batching on unless
//!    `--batch-num-messages 1`);
//! 4. `--warmup` seconds unmeasured, then `--measure` seconds measured: every second
//!    each pipeline's `/metrics` is scraped (consumer lag, frames consumed); at the
//!    start and the end of the window the `cardiostream_window_closed_to_finding_seconds`
//!    and `cardiostream_window_to_finding_seconds` histograms of every pipeline, the alert service's applied findings and the CPU
//!    time (`utime + stime` of /proc/PID/stat) of every component;
//! 5. peak memory (`VmHWM`) of every component; then everything is stopped.
//!
//! A step holds when (a) the consumer lag (the sum of `cardiostream_ingest_consumer_lag`
//! over partitions and pipelines) does not grow over the window — the least-squares
//! slope × window length stays below 2 s of the fleet's frames or 10 % of the mean
//! lag, whichever is larger (commits move in steps) — and the pipelines
//! consumed at least 97 % of the frames produced in the window; and (b) the p99 of
//! window closed → finding published (`cardiostream_window_closed_to_finding_seconds`:
//! from the Kafka timestamp of the frame that completed the window, so broker,
//! consumer queue, processing, scoring and publishing all count), from the histogram's
//! bucket deltas over the window, is within `--p99-limit` (the 500 ms by
//! default; a bucket bound, so the test is exact). Window end (device time) → finding
//! is reported beside it: it adds the QRS detector's fixed ≈ 2.05 s decision latency
//! (`dsp/src/qrs.rs`) and the rest of the closing 200 ms frame, which no load changes.
//! The ramp stops at the first step that fails (unless `--no-stop`); the largest N
//! that held is reported.
//! A table is printed and a JSON line appended to `target/loadtest.json`.
//!
//! **Capacity per core, as a ratio measured in the same run.** Before the ramp the
//! tool runs the bare DSP chain the analyzer runs per stream (`StreamDsp` on the same
//! simulated 12-lead 500 Hz streams, in 200 ms blocks, one thread) and reports
//! patients per core of it. Each step reports patients per core of pipeline CPU
//! (N / pipeline CPU in cores) and the ratio of the two: what the whole pipeline
//! (Kafka client, decode, sequencing, DSP, model inputs, scoring, publishing) costs
//! per patient relative to its DSP alone. Machines of this kind differ by up to
//! 2.5x in speed; the ratio does not. That chain runs one stream after another, its
//! state warm; the pipeline meets thousands of streams' frames interleaved, each
//! finding its stream's state cold. So before each step the tool also runs the chain
//! serving that step's N streams at once (every state kept, frame k of each stream,
//! then k + 1) and reports the ratio to that as well: the pipeline's cost relative to
//! its DSP when both serve the same patients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../../../benches/support/mod.rs"]
mod support;
#[allow(dead_code)]
#[path = "../../../tests/support/tansu.rs"]
mod tansu;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_PROTOBUF};
use ecg_ingest::kafka;
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, DeviceTimeUs, Frame, Lead, PatientId, StreamId};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const SAMPLE_RATE: u32 = 500;
const LEADS: usize = 12;
/// 200 ms at 500 Hz.
const FRAME_SAMPLES: usize = 100;
const FRAME_US: i64 = 200_000;
const FRAMES_PER_S: usize = 5;
/// Simulated signal per rhythm, replayed in a loop (60 s: two AF model windows).
const PRESET_FRAMES: usize = 60 * FRAMES_PER_S;
/// Send slots per 200 ms tick (20 ms apart).
const SLOTS: usize = 10;
/// The latency target: p99 window closed → finding published.
const P99_TARGET_S: f64 = 0.5;
/// Lag may grow by at most this many seconds of the fleet's frames over the window
/// (or `LAG_GROWTH_SHARE` of its mean, whichever is larger: commits move in steps).
const LAG_GROWTH_S: f64 = 2.0;
const LAG_GROWTH_SHARE: f64 = 0.1;
/// The pipelines must consume at least this share of what was produced in the window.
const CONSUMED_MIN: f64 = 0.97;
/// The judged hop: window closed (the Kafka timestamp of the frame that completed it)
/// → finding published.
const CLOSED_METRIC: &str = "cardiostream_window_closed_to_finding_seconds";
/// Reported beside it: window end (device time) → finding published, which adds the
/// QRS detector's decision latency and the rest of the closing frame.
const END_METRIC: &str = "cardiostream_window_to_finding_seconds";

/// Command-line options (`cargo bench` appends `--bench`).
#[derive(Debug, Clone, serde::Serialize)]
struct Args {
    patients: Vec<usize>,
    pipelines: usize,
    analyzer_threads: usize,
    partitions: u32,
    warmup_s: u64,
    measure_s: u64,
    fetch_wait_ms: u32,
    linger_ms: u32,
    batch_num_messages: u32,
    p99_limit_s: f64,
    skip_models: Vec<String>,
    no_stop: bool,
    /// The `cardiostream` binary the deployables run as.
    exe: PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        patients: vec![500, 1000, 2000, 3000, 3500],
        pipelines: 1,
        analyzer_threads: 1,
        partitions: 4,
        warmup_s: 40,
        measure_s: 60,
        fetch_wait_ms: 10,
        linger_ms: 20,
        batch_num_messages: 0,
        p99_limit_s: P99_TARGET_S,
        skip_models: Vec::new(),
        no_stop: false,
        exe: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("cardiostream")))
            .unwrap_or_else(|| PathBuf::from("target/release/cardiostream")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        let num = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a whole number, not {v:?}"))
        };
        match arg.as_str() {
            "--no-stop" => a.no_stop = true,
            "--exe" => a.exe = PathBuf::from(value("--exe")),
            "--patients" => {
                a.patients = value("--patients")
                    .split(',')
                    .map(|s| num("--patients", s.trim().to_owned()) as usize)
                    .collect();
            }
            "--pipelines" => a.pipelines = num("--pipelines", value("--pipelines")) as usize,
            "--analyzer-threads" => {
                a.analyzer_threads =
                    num("--analyzer-threads", value("--analyzer-threads")) as usize;
            }
            "--partitions" => a.partitions = num("--partitions", value("--partitions")) as u32,
            "--warmup" => a.warmup_s = num("--warmup", value("--warmup")),
            "--measure" => a.measure_s = num("--measure", value("--measure")),
            "--fetch-wait-ms" => {
                a.fetch_wait_ms = num("--fetch-wait-ms", value("--fetch-wait-ms")) as u32;
            }
            "--linger-ms" => a.linger_ms = num("--linger-ms", value("--linger-ms")) as u32,
            "--batch-num-messages" => {
                a.batch_num_messages =
                    num("--batch-num-messages", value("--batch-num-messages")) as u32;
            }
            "--skip-model" => a.skip_models.push(value("--skip-model")),
            "--p99-limit" => {
                let v = value("--p99-limit");
                a.p99_limit_s = v
                    .parse()
                    .unwrap_or_else(|_| panic!("--p99-limit: seconds, not {v:?}"));
            }
            other => panic!(
                "unknown option {other:?} (see the doc comment of tools/loadtest/src/main.rs)"
            ),
        }
    }
    assert!(
        !a.patients.is_empty()
            && a.patients.iter().all(|&n| n > 0)
            && a.pipelines > 0
            && a.analyzer_threads > 0
            && a.partitions > 0
            && a.measure_s >= 10,
        "patients, pipelines and partitions must be positive, --measure at least 10 s"
    );
    a
}

fn main() {
    let args = parse_args();
    if tansu::binary().is_none() {
        println!("loadtest: not run (tansu not installed; scripts/test.sh installs it)");
        return;
    }
    let exe = args.exe.clone();
    assert!(
        exe.is_file(),
        "{} does not exist: cargo build --release --bin cardiostream (or --exe PATH)",
        exe.display()
    );
    let version = tansu::binary()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "tansu (version unknown)".to_owned());
    println!(
        "loadtest (issue #7 item 5): {version}; {} CPUs, load average {}; binary {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        exe.display()
    );
    println!(
        "ramp {:?} patients; {} pipeline(s), {} partitions; warm-up {} s, measured {} s; \
         consumers fetch.wait.max.ms={}, generator linger.ms={}, batch.num.messages={}; \
         p99 limit {} s; models skipped {:?}",
        args.patients,
        args.pipelines,
        args.partitions,
        args.warmup_s,
        args.measure_s,
        args.fetch_wait_ms,
        args.linger_ms,
        if args.batch_num_messages > 0 {
            args.batch_num_messages.to_string()
        } else {
            "default".to_owned()
        },
        args.p99_limit_s,
        args.skip_models
    );
    let t = Instant::now();
    let presets = Arc::new(Presets::simulate());
    println!(
        "simulated {} rhythms x {} s in {:.1} s",
        presets.frames.len(),
        PRESET_FRAMES / FRAMES_PER_S,
        t.elapsed().as_secs_f64()
    );
    let dsp_patients_per_core = presets.bare_chain_patients_per_core();
    println!(
        "bare DSP chain (StreamDsp, the same streams, one thread): {dsp_patients_per_core:.0} patients per core = {:.1} M samples/s",
        dsp_patients_per_core * (LEADS * SAMPLE_RATE as usize) as f64 / 1e6
    );

    let mut steps: Vec<Step> = Vec::new();
    for &n in &args.patients {
        println!("\n== {n} patients");
        // The same chain serving these n streams at once, measured before the step's
        // processes start so that nothing else runs beside it.
        let dsp_interleaved = presets.bare_chain_interleaved_patients_per_core(n);
        println!(
            "bare DSP chain serving {n} streams at once (every stream's state kept, frames \
             interleaved as the analyzer meets them): {dsp_interleaved:.0} patients per core"
        );
        let mut step = run_step(&args, &exe, &presets, n, dsp_patients_per_core);
        step.dsp_interleaved_patients_per_core = dsp_interleaved;
        step.capacity_ratio_interleaved = step.pipeline_patients_per_core / dsp_interleaved;
        print_step(&step);
        let held = step.held;
        steps.push(step);
        if !held && !args.no_stop {
            println!("step failed: ramp stopped");
            break;
        }
    }

    let largest = steps.iter().filter(|s| s.held).map(|s| s.patients).max();
    println!(
        "\nsummary ({} pipeline(s), {} partitions; load average at the end {}):",
        args.pipelines,
        args.partitions,
        loadavg()
    );
    print_table(&steps);
    match largest {
        Some(n) => println!(
            "largest N that held: {n} patients = {} samples/s, {} frames/s (target >= 1000: {})",
            n * LEADS * SAMPLE_RATE as usize,
            n * FRAMES_PER_S,
            if n >= 1000 { "met" } else { "NOT met" }
        ),
        None => println!("no step held"),
    }
    let line = serde_json::json!({
        "tool": "loadtest",
        "dsp_patients_per_core": dsp_patients_per_core,
        "broker": version,
        "args": args,
        "largest_patients_held": largest,
        "steps": steps,
        "unix_time": SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    support::append_json("loadtest.json", &line.to_string());
}

// ---------------------------------------------------------------------------------
// Signal: one simulated stretch per rhythm, replayed by every patient of that rhythm.

struct Presets {
    /// Distinct rhythms of `PATIENT_MIX`, in order of first appearance.
    kinds: Vec<Preset>,
    /// `PRESET_FRAMES` frames per rhythm.
    frames: Vec<Vec<Frame>>,
}

impl Presets {
    fn simulate() -> Presets {
        let mut kinds: Vec<Preset> = Vec::new();
        for p in cardiostream::demo::PATIENT_MIX {
            if !kinds.contains(&p) {
                kinds.push(p);
            }
        }
        let frames = kinds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let dev =
                    Device::new(p.config(7 + i as u64, SAMPLE_RATE, Lead::STANDARD_12.to_vec()))
                        .expect("valid sim config");
                let mut src = FrameSource::new(
                    dev,
                    StreamId::new("preset").expect("id"),
                    DeviceId::new("preset").expect("id"),
                    PatientId::new("preset").expect("id"),
                    0,
                    FRAME_SAMPLES,
                    1000,
                );
                (0..PRESET_FRAMES).map(|_| src.next_frame()).collect()
            })
            .collect();
        Presets { kinds, frames }
    }

    /// Every preset's frames as the blocks (mV) the bare chain takes.
    fn blocks_mv(&self) -> Vec<Vec<Vec<f32>>> {
        self.frames
            .iter()
            .map(|fs| fs.iter().map(Frame::samples_mv).collect())
            .collect()
    }

    /// Patients per core of the bare DSP chain the analyzer runs per stream:
    /// `StreamDsp::push` over every preset's 60 s in 200 ms blocks, repeated for at
    /// least 3 s of one thread's CPU; a patient is one 12-lead 500 Hz stream.
    fn bare_chain_patients_per_core(&self) -> f64 {
        let blocks = self.blocks_mv();
        let cfg = ecg_dsp::stream::DspConfig::default();
        let lead_off = [false; LEADS];
        let started = Instant::now();
        let mut samples = 0u64;
        let mut events = Vec::new();
        while started.elapsed() < Duration::from_secs(3) {
            for stream in &blocks {
                let mut dsp = ecg_dsp::StreamDsp::new(&cfg, SAMPLE_RATE, LEADS);
                for b in stream {
                    events.clear();
                    dsp.push(std::hint::black_box(b), &lead_off, &mut events);
                    samples += b.len() as u64;
                }
            }
        }
        patients_per_core(samples, started.elapsed())
    }

    /// Patients per core of the same chain serving `n` streams at once, as the
    /// pipeline's analyzer does: every stream's state kept (patient `i` replays the
    /// preset of its rhythm), the 200 ms blocks pushed frame k of every stream, then
    /// frame k + 1, for at least 3 s. With thousands of streams each block finds its
    /// stream's state cold, as the pipeline finds its own; the figure above, one stream
    /// after another, finds it warm.
    fn bare_chain_interleaved_patients_per_core(&self, n: usize) -> f64 {
        let blocks = self.blocks_mv();
        let cfg = ecg_dsp::stream::DspConfig::default();
        let lead_off = [false; LEADS];
        // Timed from the states' creation, as the warm chain times its own.
        let started = Instant::now();
        let mut streams: Vec<(ecg_dsp::StreamDsp, &Vec<Vec<f32>>)> = (0..n.max(1))
            .map(|i| {
                (
                    ecg_dsp::StreamDsp::new(&cfg, SAMPLE_RATE, LEADS),
                    &blocks[self.kind_of(i)],
                )
            })
            .collect();
        let mut samples = 0u64;
        let mut events = Vec::new();
        let mut k = 0usize;
        while started.elapsed() < Duration::from_secs(3) {
            for (dsp, stream) in &mut streams {
                let b = &stream[k % stream.len()];
                events.clear();
                dsp.push(std::hint::black_box(b), &lead_off, &mut events);
                samples += b.len() as u64;
            }
            k += 1;
        }
        patients_per_core(samples, started.elapsed())
    }

    /// The rhythm of patient `i` (the demo's mix, in turn).
    fn kind_of(&self, i: usize) -> usize {
        let mix = cardiostream::demo::PATIENT_MIX;
        let p = mix[i % mix.len()];
        self.kinds.iter().position(|k| *k == p).unwrap_or(0)
    }
}

/// Patients (12-lead streams at the sample rate) per core, from the samples one thread
/// pushed through the chain in `elapsed`.
fn patients_per_core(samples: u64, elapsed: Duration) -> f64 {
    samples as f64 / elapsed.as_secs_f64() / (LEADS * SAMPLE_RATE as usize) as f64
}

// ---------------------------------------------------------------------------------
// The load generator.

#[derive(Debug, Default)]
struct GenCounters {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    /// Largest delay of a slot behind its schedule, µs.
    max_late_us: AtomicU64,
    /// Slots more than 20 ms behind schedule.
    late_slots: AtomicU64,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Sends every patient's frames at real time until `stop`.
async fn generate(
    bootstrap: String,
    topic: String,
    args: Args,
    presets: Arc<Presets>,
    n: usize,
    counters: Arc<GenCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut cfg = kafka::producer_config(&kafka::connection(&bootstrap), args.linger_ms);
    cfg.set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    if args.batch_num_messages > 0 {
        cfg.set("batch.num.messages", args.batch_num_messages.to_string());
    }
    let producer: FutureProducer = cfg.create().expect("producer");
    let headers = OwnedHeaders::new().insert(Header {
        key: kafka::CONTENT_TYPE,
        value: Some(CONTENT_TYPE_PROTOBUF),
    });
    // Per patient: its rhythm, where in the rhythm it starts, and a frame to fill.
    let mut patients: Vec<(usize, usize, Frame)> = (0..n)
        .map(|i| {
            let kind = presets.kind_of(i);
            let mut f = presets.frames[kind][0].clone();
            f.stream = StreamId::new(format!("load-{i:05}.ecg")).expect("id");
            f.device = DeviceId::new(format!("dev-{i:05}")).expect("id");
            f.patient = PatientId::new(format!("pt-{i:05}")).expect("id");
            (kind, (i * 37) % PRESET_FRAMES, f)
        })
        .collect();
    let started = tokio::time::Instant::now();
    // The first frame ends when slot 0 of tick 0 is due.
    let base_us = now_us() - FRAME_US;
    let slot_us = FRAME_US / SLOTS as i64;
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut pending = Vec::with_capacity(n);
        for slot in 0..SLOTS {
            let due_us = tick as i64 * FRAME_US + slot as i64 * slot_us;
            let due = started + Duration::from_micros(due_us as u64);
            tokio::time::sleep_until(due).await;
            let late = tokio::time::Instant::now().saturating_duration_since(due);
            counters
                .max_late_us
                .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
            if late > Duration::from_micros(slot_us as u64) {
                counters.late_slots.fetch_add(1, Ordering::Relaxed);
            }
            for (kind, offset, f) in patients.iter_mut().skip(slot).step_by(SLOTS) {
                let src = &presets.frames[*kind][(*offset + tick as usize) % PRESET_FRAMES];
                f.samples.copy_from_slice(&src.samples);
                f.lead_off.copy_from_slice(&src.lead_off);
                f.seq = tick;
                f.t0 = DeviceTimeUs(base_us + due_us);
                let payload = codec::encode(f, Encoding::Protobuf);
                let rec = FutureRecord::to(&topic)
                    .key(f.stream.as_str())
                    .payload(&payload)
                    .headers(headers.clone());
                match kafka::enqueue(&producer, rec).await {
                    Ok(d) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        pending.push(d);
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("produce: {e}");
                    }
                }
            }
        }
        let c = counters.clone();
        tokio::spawn(async move {
            for d in pending {
                match d.await {
                    Ok(Ok(_)) => c.acked.fetch_add(1, Ordering::Relaxed),
                    _ => c.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        tick += 1;
    }
}

// ---------------------------------------------------------------------------------
// Child processes.

/// A child process, SIGKILLed when dropped.
struct Proc {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proc {
    fn spawn(exe: &Path, cmd: &str, name: &str, config: &Path, port: u16, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(exe)
            .args([cmd, "--config"])
            .arg(config)
            .current_dir(repo_root())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning cardiostream {cmd}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            port,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct Topics {
    frames: String,
    findings: String,
    dlq: String,
    alerts: String,
    /// The pipelines' consumer group.
    group: String,
}

fn write_config(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    t: &Topics,
    port: u16,
    args: &Args,
    models: &Path,
) -> PathBuf {
    let (fetch_wait_ms, analyzer_threads) = (args.fetch_wait_ms, args.analyzer_threads);
    let file = dir.join(format!("{name}.toml"));
    let store = dir.join("alerts.db");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = {bootstrap:?}\n\
             [kafka.client_properties]\n\
             \"fetch.wait.max.ms\" = \"{fetch_wait_ms}\"\n\
             \"fetch.queue.backoff.ms\" = \"10\"\n\
             [topics]\nframes = {:?}\nfindings = {:?}\ndlq = {:?}\nalerts = {:?}\n\
             [pipeline]\ngroup_id = {:?}\nmodels_dir = {:?}\nanalyzer_threads = {analyzer_threads}\n\
             [alerts]\ngroup_id = {:?}\n\
             [alerts.store]\nurl = {:?}\n\
             [http]\naddr = \"127.0.0.1:{port}\"\n",
            t.frames,
            t.findings,
            t.dlq,
            t.alerts,
            t.group,
            models.display().to_string(),
            tansu::unique("loadtest-alerts"),
            format!("sqlite://{}", store.display()),
        ),
    )
    .expect("writing a config");
    file
}

/// The repository's root (this tool lives in `tools/loadtest`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's `models/`, or with `skip` a directory in `dir` linking every
/// model directory but the skipped ones.
fn models_dir(dir: &Path, skip: &[String]) -> PathBuf {
    let repo = repo_root().join("models");
    if skip.is_empty() {
        return repo;
    }
    let out = dir.join("models");
    std::fs::create_dir_all(&out).expect("models dir");
    for e in std::fs::read_dir(&repo).expect("models/").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !skip.contains(&name) {
            std::os::unix::fs::symlink(e.path(), out.join(&name)).expect("linking a model");
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// One step.

/// One component's resource use over the measurement window.
#[derive(Debug, Clone, serde::Serialize)]
struct Usage {
    component: String,
    /// CPU time over the window / window length, in % of one core.
    cpu_percent: f64,
    /// Peak resident set size at the end of the step (`VmHWM`), MB.
    peak_rss_mb: f64,
}

/// What one step measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    patients: usize,
    samples_per_s: usize,
    frames_per_s: usize,
    held: bool,
    /// Why it failed (empty when it held).
    reasons: Vec<String>,
    measured_s: f64,
    frames_sent_in_window: u64,
    frames_consumed_in_window: f64,
    generator_failed: u64,
    generator_max_late_ms: f64,
    generator_late_slots: u64,
    /// (seconds into the window, summed consumer lag) as scraped.
    lag_samples: Vec<(f64, f64)>,
    lag_growth_frames: f64,
    lag_mean_frames: f64,
    findings_in_window: f64,
    p50_s: f64,
    p99_s: f64,
    /// Share of the window's findings at most 500 ms late.
    within_500ms: f64,
    /// The target (p99 < 500 ms) met.
    p99_below_500ms: bool,
    /// Share of the window's findings within `--p99-limit`.
    within_limit: f64,
    /// The smallest histogram bucket bound that holds ≥ 99 % of the window's findings.
    p99_bucket_s: f64,
    /// Window end (device time) → finding: p50, p99 (interpolated) and p99 bucket.
    window_end_p50_s: f64,
    window_end_p99_s: f64,
    window_end_p99_bucket_s: f64,
    alerts_applied_in_window: f64,
    signal_gaps: f64,
    backpressure_pauses: f64,
    rebalances_while_generating: f64,
    usage: Vec<Usage>,
    /// Patients per core of pipeline CPU (all pipeline processes).
    pipeline_patients_per_core: f64,
    /// That over the bare DSP chain's patients per core (same run, same streams).
    capacity_ratio: f64,
    /// Patients per core of the bare chain serving this step's streams at once
    /// (`Presets::bare_chain_interleaved_patients_per_core`).
    dsp_interleaved_patients_per_core: f64,
    /// The pipeline's patients per core over that.
    capacity_ratio_interleaved: f64,
}

/// What the scrapes of every pipeline add up to at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    /// Window closed → finding (the judged hop).
    buckets: Vec<(f64, f64)>,
    /// Window end (device time) → finding.
    end_buckets: Vec<(f64, f64)>,
    consumed: f64,
    findings: f64,
    lag: Option<f64>,
    gaps: f64,
    pauses: f64,
    rebalances: f64,
}

/// Adds one process's histogram buckets to the fleet's.
fn add_buckets(acc: &mut Vec<(f64, f64)>, b: Vec<(f64, f64)>) {
    if acc.is_empty() {
        *acc = b;
    } else {
        for (a, x) in acc.iter_mut().zip(b) {
            a.1 += x.1;
        }
    }
}

fn snapshot(pipelines: &[Proc]) -> Snapshot {
    let mut s = Snapshot::default();
    let mut lag_known = false;
    for p in pipelines {
        let Some(body) = support::scrape_metrics(p.port) else {
            continue;
        };
        add_buckets(
            &mut s.buckets,
            support::histogram_buckets(&body, CLOSED_METRIC),
        );
        add_buckets(
            &mut s.end_buckets,
            support::histogram_buckets(&body, END_METRIC),
        );
        s.consumed +=
            support::metric_sum(&body, "cardiostream_ingest_frames_consumed_total", |_| {
                false
            });
        s.findings += support::metric_sum(&body, &format!("{CLOSED_METRIC}_count"), |_| false);
        let lag = support::metric_sum(&body, "cardiostream_ingest_consumer_lag", |v| v < 0.0);
        if body
            .lines()
            .any(|l| l.starts_with("cardiostream_ingest_consumer_lag{") && !l.ends_with(" -1"))
        {
            lag_known = true;
            *s.lag.get_or_insert(0.0) += lag;
        }
        s.gaps += support::metric_sum(&body, "cardiostream_ingest_signal_gaps_total", |_| false);
        s.rebalances +=
            support::metric_sum(&body, "cardiostream_ingest_rebalances_total", |_| false);
        s.pauses += support::metric_sum(
            &body,
            "cardiostream_ingest_backpressure_pauses_total",
            |_| false,
        );
    }
    if !lag_known {
        s.lag = None;
    }
    s
}

fn run_step(
    args: &Args,
    exe: &Path,
    presets: &Arc<Presets>,
    n: usize,
    dsp_patients_per_core: f64,
) -> Step {
    let broker = tansu::Broker::start().expect("tansu");
    let bootstrap = broker.bootstrap();
    let tansu_pid = support::pid_by_cmdline(&format!("--listener-url tcp://{bootstrap}"));
    let t = Topics {
        frames: tansu::unique("load-frames"),
        findings: tansu::unique("load-findings"),
        dlq: tansu::unique("load-dlq"),
        alerts: tansu::unique("load-alerts"),
        group: tansu::unique("loadtest-pipeline"),
    };
    broker.create_topic(&t.frames, args.partitions);
    broker.create_topic(&t.findings, args.partitions);
    broker.create_topic(&t.dlq, 1);
    broker.create_topic(&t.alerts, 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let models = models_dir(dir.path(), &args.skip_models);
    let mut pipelines = Vec::new();
    for k in 0..args.pipelines {
        let port = tansu::free_port();
        let name = format!("pipeline-{}", k + 1);
        let cfg = write_config(dir.path(), &name, &bootstrap, &t, port, args, &models);
        pipelines.push(Proc::spawn(exe, "pipeline", &name, &cfg, port, dir.path()));
    }
    let port = tansu::free_port();
    let cfg = write_config(dir.path(), "alerts", &bootstrap, &t, port, args, &models);
    let mut alerts = Proc::spawn(exe, "alerts", "alerts", &cfg, port, dir.path());

    // Ready: every process serves /metrics and the group owns every partition.
    let ready_by = Instant::now() + Duration::from_secs(90);
    loop {
        let assigned: Option<f64> = pipelines
            .iter()
            .map(|p| {
                support::scrape_metrics(p.port).map(|b| {
                    support::metric_sum(&b, "cardiostream_ingest_partitions_assigned", |_| false)
                })
            })
            .sum();
        let alerts_up = support::scrape_metrics(alerts.port).is_some();
        if alerts_up && assigned == Some(f64::from(args.partitions)) {
            break;
        }
        for p in pipelines.iter_mut().chain(std::iter::once(&mut alerts)) {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("{} exited ({status}):\n{}", p.name, p.log_tail());
            }
        }
        assert!(
            Instant::now() < ready_by,
            "not ready after 90 s (partitions assigned {assigned:?}, alerts up {alerts_up}):\n{}",
            pipelines
                .iter()
                .chain(std::iter::once(&alerts))
                .map(|p| format!("--- {}\n{}", p.name, p.log_tail()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "ready: {} pipeline(s) own {} partitions, alert service up; generating",
        args.pipelines, args.partitions
    );

    let rebalances_before = snapshot(&pipelines).rebalances;

    // The generator on its own thread and runtime, in this process.
    let counters = Arc::new(GenCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let gen = {
        let (bootstrap, topic, presets) = (bootstrap.clone(), t.frames.clone(), presets.clone());
        let (counters, stop, args) = (counters.clone(), stop.clone(), args.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(generate(bootstrap, topic, args, presets, n, counters, stop));
        })
    };

    let mut pids: Vec<(String, u32)> = Vec::new();
    if let Some(pid) = tansu_pid {
        pids.push(("tansu".into(), pid));
    }
    pids.extend(pipelines.iter().map(|p| (p.name.clone(), p.pid())));
    pids.push(("alerts".into(), alerts.pid()));
    pids.push(("generator".into(), std::process::id()));
    let cpu = |pids: &[(String, u32)]| -> Vec<u64> {
        pids.iter()
            .map(|(_, pid)| support::cpu_ticks(*pid).unwrap_or(0))
            .collect()
    };

    let gen_start = Instant::now();
    let warm_end = gen_start + Duration::from_secs(args.warmup_s);
    let end = warm_end + Duration::from_secs(args.measure_s);
    let mut last_print = Instant::now();
    while Instant::now() < warm_end {
        std::thread::sleep(Duration::from_millis(500));
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            let s = snapshot(&pipelines);
            println!(
                "  warm-up {:>3.0} s: sent {}, consumed {:.0}, lag {:?}, findings {:.0}",
                gen_start.elapsed().as_secs_f64(),
                counters.sent.load(Ordering::Relaxed),
                s.consumed,
                s.lag,
                s.findings
            );
        }
    }
    let t_a = Instant::now();
    let cpu_a = cpu(&pids);
    let snap_a = snapshot(&pipelines);
    let sent_a = counters.sent.load(Ordering::Relaxed);
    let alerts_a = support::scrape_metrics(alerts.port).map_or(0.0, |b| {
        support::metric_sum(&b, "cardiostream_alert_findings_total", |_| false)
    });
    let mut lag_samples = Vec::new();
    let mut next = t_a;
    while Instant::now() < end {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let s = snapshot(&pipelines);
        if let Some(lag) = s.lag {
            lag_samples.push((t_a.elapsed().as_secs_f64(), lag));
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  measure {:>3.0} s: sent {}, consumed {:.0}, lag {:?}, findings {:.0}",
                t_a.elapsed().as_secs_f64(),
                counters.sent.load(Ordering::Relaxed),
                s.consumed,
                s.lag,
                s.findings
            );
        }
    }
    let t_b = Instant::now();
    let cpu_b = cpu(&pids);
    let snap_b = snapshot(&pipelines);
    let sent_b = counters.sent.load(Ordering::Relaxed);
    let alerts_b = support::scrape_metrics(alerts.port).map_or(0.0, |b| {
        support::metric_sum(&b, "cardiostream_alert_findings_total", |_| false)
    });
    let window = (t_b - t_a).as_secs_f64();
    let ticks = support::clock_ticks_per_s();
    let usage: Vec<Usage> = pids
        .iter()
        .zip(cpu_a.iter().zip(&cpu_b))
        .map(|((name, pid), (a, b))| Usage {
            component: name.clone(),
            cpu_percent: 100.0 * b.saturating_sub(*a) as f64 / ticks / window,
            peak_rss_mb: support::vmhwm_kb_of(*pid) as f64 / 1024.0,
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    gen.join().expect("generator thread");
    drop(alerts);
    drop(pipelines);
    drop(broker);

    // Verdict.
    let fleet_fps = (n * FRAMES_PER_S) as f64;
    let (growth, mean) = lag_trend(&lag_samples, window);
    let sent = sent_b - sent_a;
    let consumed = snap_b.consumed - snap_a.consumed;
    let findings = snap_b.findings - snap_a.findings;
    let p99 = support::bucket_quantile(&snap_a.buckets, &snap_b.buckets, 0.99);
    let p50 = support::bucket_quantile(&snap_a.buckets, &snap_b.buckets, 0.50);
    let within = share_at_most(&snap_a.buckets, &snap_b.buckets, P99_TARGET_S);
    let within_limit = share_at_most(&snap_a.buckets, &snap_b.buckets, args.p99_limit_s);
    let p99_bucket = p99_bound(&snap_a.buckets, &snap_b.buckets);
    let end_p50 = support::bucket_quantile(&snap_a.end_buckets, &snap_b.end_buckets, 0.50);
    let end_p99 = support::bucket_quantile(&snap_a.end_buckets, &snap_b.end_buckets, 0.99);
    let end_p99_bucket = p99_bound(&snap_a.end_buckets, &snap_b.end_buckets);
    let lag_limit = (LAG_GROWTH_S * fleet_fps).max(LAG_GROWTH_SHARE * mean);
    let mut reasons = Vec::new();
    if lag_samples.len() < 3 {
        reasons.push("consumer lag unknown".to_owned());
    } else if growth.is_nan() || growth > lag_limit {
        reasons.push(format!(
            "consumer lag grew by {growth:.0} frames (> {lag_limit:.0})"
        ));
    }
    if consumed < CONSUMED_MIN * sent as f64 {
        reasons.push(format!(
            "consumed {consumed:.0} of {sent} frames produced in the window"
        ));
    }
    if findings <= 0.0 {
        reasons.push("no findings in the window".to_owned());
    } else if within_limit.is_nan() || within_limit < 0.99 {
        reasons.push(format!(
            "p99 window closed -> finding above {} s ({:.2} % within)",
            args.p99_limit_s,
            100.0 * within_limit
        ));
    }
    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        reasons.push(format!("{failed} frames not produced"));
    }
    let pipeline_cores: f64 = usage
        .iter()
        .filter(|u| u.component.starts_with("pipeline"))
        .map(|u| u.cpu_percent / 100.0)
        .sum();
    let pipeline_patients_per_core = if pipeline_cores > 0.0 {
        n as f64 / pipeline_cores
    } else {
        f64::NAN
    };
    Step {
        patients: n,
        samples_per_s: n * LEADS * SAMPLE_RATE as usize,
        frames_per_s: n * FRAMES_PER_S,
        held: reasons.is_empty(),
        reasons,
        measured_s: window,
        frames_sent_in_window: sent,
        frames_consumed_in_window: consumed,
        generator_failed: failed,
        generator_max_late_ms: counters.max_late_us.load(Ordering::Relaxed) as f64 / 1e3,
        generator_late_slots: counters.late_slots.load(Ordering::Relaxed),
        lag_samples,
        lag_growth_frames: growth,
        lag_mean_frames: mean,
        findings_in_window: findings,
        p50_s: p50,
        p99_s: p99,
        within_500ms: within,
        p99_below_500ms: within >= 0.99,
        within_limit,
        p99_bucket_s: p99_bucket,
        window_end_p50_s: end_p50,
        window_end_p99_s: end_p99,
        window_end_p99_bucket_s: end_p99_bucket,
        alerts_applied_in_window: alerts_b - alerts_a,
        signal_gaps: snap_b.gaps,
        backpressure_pauses: snap_b.pauses,
        rebalances_while_generating: snap_b.rebalances - rebalances_before,
        usage,
        pipeline_patients_per_core,
        capacity_ratio: pipeline_patients_per_core / dsp_patients_per_core,
        // Set by the caller, which measures it before the step.
        dsp_interleaved_patients_per_core: f64::NAN,
        capacity_ratio_interleaved: f64::NAN,
    }
}

/// Least-squares growth of the lag over the window (slope × window) and its mean.
fn lag_trend(samples: &[(f64, f64)], window: f64) -> (f64, f64) {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope * window, my)
}

/// The smallest bucket bound under which at least 99 % of the window's observations
/// fall (`INFINITY` for the `+Inf` bucket, `NAN` without observations).
fn p99_bound(before: &[(f64, f64)], after: &[(f64, f64)]) -> f64 {
    after
        .iter()
        .map(|&(le, _)| le)
        .find(|&le| share_at_most(before, after, le) >= 0.99)
        .unwrap_or(f64::NAN)
}

/// Share of the window's observations at most `le` (a bucket bound).
fn share_at_most(before: &[(f64, f64)], after: &[(f64, f64)], le: f64) -> f64 {
    let d = |v: &[(f64, f64)], b: f64| v.iter().find(|x| x.0 == b).map_or(0.0, |x| x.1);
    let total = d(after, f64::INFINITY) - d(before, f64::INFINITY);
    (d(after, le) - d(before, le)) / total
}

fn fmt_s(s: f64) -> String {
    if s.is_infinite() {
        "> 10 s".to_owned()
    } else if s.is_nan() {
        "n/a".to_owned()
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

fn print_step(s: &Step) {
    println!(
        "  {} patients: {} ({}); sent {} / consumed {:.0} frames in {:.0} s; lag mean {:.0}, \
         growth {:.0} frames; findings {:.0}; window closed -> finding p50 {}, p99 {} (bucket <= {} s), \
         <= 500 ms {:.2} %, <= limit {:.2} %; window end -> finding p50 {}, p99 {} (bucket <= {} s); alerts applied {:.0}; generator max late {:.0} ms; gaps {:.0}, pauses {:.0}, rebalances {:.0}",
        s.patients,
        if s.held { "HELD" } else { "FAILED" },
        if s.held {
            "lag bounded, p99 within the limit".to_owned()
        } else {
            s.reasons.join("; ")
        },
        s.frames_sent_in_window,
        s.frames_consumed_in_window,
        s.measured_s,
        s.lag_mean_frames,
        s.lag_growth_frames,
        s.findings_in_window,
        fmt_s(s.p50_s),
        fmt_s(s.p99_s),
        s.p99_bucket_s,
        100.0 * s.within_500ms,
        100.0 * s.within_limit,
        fmt_s(s.window_end_p50_s),
        fmt_s(s.window_end_p99_s),
        s.window_end_p99_bucket_s,
        s.alerts_applied_in_window,
        s.generator_max_late_ms,
        s.signal_gaps,
        s.backpressure_pauses,
        s.rebalances_while_generating
    );
    for u in &s.usage {
        println!(
            "    {:<12} cpu {:>6.1} %  peak RSS {:>8.1} MB  (per 1,000 patients: {:.1} % cpu, {:.0} MB)",
            u.component,
            u.cpu_percent,
            u.peak_rss_mb,
            u.cpu_percent * 1000.0 / s.patients as f64,
            u.peak_rss_mb * 1000.0 / s.patients as f64
        );
    }
    println!(
        "    pipeline capacity: {:.0} patients per core of pipeline CPU; {:.2} of the bare DSP chain's \
         ({:.2} of the chain serving these streams at once)",
        s.pipeline_patients_per_core, s.capacity_ratio, s.capacity_ratio_interleaved
    );
}

fn print_table(steps: &[Step]) {
    let comps: Vec<String> = steps
        .first()
        .map(|s| s.usage.iter().map(|u| u.component.clone()).collect())
        .unwrap_or_default();
    let mut head = format!(
        "{:>8} {:>10} {:>8} {:>7} {:>9} {:>8} {:>8}",
        "patients", "samples/s", "frames/s", "verdict", "lag grow", "p99 <=", "findings"
    );
    for c in &comps {
        head.push_str(&format!(" {:>20}", format!("{c} cpu%/MB")));
    }
    println!("{head}");
    for s in steps {
        let mut row = format!(
            "{:>8} {:>10} {:>8} {:>7} {:>9.0} {:>8} {:>8.0}",
            s.patients,
            s.samples_per_s,
            s.frames_per_s,
            if s.held { "held" } else { "FAILED" },
            s.lag_growth_frames,
            format!("{} s", s.p99_bucket_s),
            s.findings_in_window
        );
        for u in &s.usage {
            row.push_str(&format!(
                " {:>20}",
                format!("{:.0} / {:.0}", u.cpu_percent, u.peak_rss_mb)
            ));
        }
        println!("{row}");
    }
}

/// `/proc/loadavg`'s three averages (other work on the machine skews the figures).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

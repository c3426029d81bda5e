//! Ingest-stage throughput against a bare rdkafka consumer loop (issue #4, item 8).
//! Results and how to read them: docs/performance.md.
//!
//! `cargo bench --bench ingest`; options after `--`: `--frames N` (or
//! `INGEST_BENCH_FRAMES`; default 100,000), `--rounds R` (default 5), `--streams S`
//! (default 50), `--profile fast-fetch|pipeline|both` (default both), `--breakdown`.
//! `INGEST_BENCH_CONSUMER_CONFIG=k=v,k=v` adds consumer settings to both loops (for
//! experiments).
//!
//! Starts a `tansu` broker (tests/support/tansu.rs; skips with a printed reason when it
//! is not installed), creates a 4-partition topic and produces N protobuf wire frames of
//! simulated 12-lead devices (500 Hz, 200 ms frames, `content-type` header set). Then it
//! reads the whole topic from the start, each time in a fresh child process (this binary
//! re-executed with `--child`) with a fresh consumer group, alternating two loops:
//!
//! - `bare`: `StreamConsumer::recv()` and a touch of the payload (length, first and last
//!   byte) — the floor any consumer pays;
//! - `ingest`: the same loop doing what the pipeline does per message:
//!   `ecg_pipeline::record_from` (copies payload, key, topic, content type) and
//!   `codec::decode` (protobuf decode + every wire-format validation rule).
//!
//! `--breakdown` adds two loops that do half each: `copy` (`input_from` only) and
//! `decode` (`codec::decode` of the borrowed payload only).
//!
//! Consumer settings come in two profiles, each applied to every loop alike:
//! `fast-fetch` (`fetch.wait.max.ms = 10`: tansu 0.6.0 holds every fetch for the full
//! wait, which would otherwise pace both loops; `fetch.queue.backoff.ms = 10`: see
//! `Profile::FastFetch`) and `pipeline` (the pipeline's own settings). Both raise
//! `fetch.max.bytes` / `max.partition.fetch.bytes`.
//!
//! Each child reports frames, payload bytes, the time from its first message to its
//! last, and its peak RSS (`VmHWM`). The parent prints every run, the medians per
//! profile, and the ratio ingest/bare of frames per second (target ≥ 0.8), and appends
//! one JSON line to `target/ingest-bench.json`. Without `--bench` (i.e. under `cargo
//! test --all-targets`) it runs a small smoke version (2,000 frames, one round,
//! `fast-fetch` only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[allow(dead_code)]
mod support;
#[path = "../tests/support/tansu.rs"]
mod tansu;

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_PROTOBUF};
use ecg_ingest::kafka;
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, Frame, Lead, PatientId, StreamId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: u32 = 4;
const SAMPLE_RATE: u32 = 500;
/// 200 ms at 500 Hz.
const FRAME_SAMPLES: usize = 100;
/// Distinct simulated seconds per stream; longer streams repeat them with later
/// timestamps and sequence numbers (so every frame is still a valid, distinct frame).
const BASE_FRAMES_PER_STREAM: usize = 150;
const T0: i64 = 1_800_000_000_000_000;
/// A child that has not read the whole topic by then fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Consumer settings both loops share, on top of `kafka::consumer_config`.
const FETCH_SIZES: [(&str, &str); 2] = [
    ("fetch.max.bytes", "67108864"),
    ("max.partition.fetch.bytes", "8388608"),
];

/// A set of consumer settings, applied equally to both loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// `fetch.wait.max.ms = 10`: tansu 0.6.0 holds a fetch for the whole
    /// `fetch.wait.max.ms` (docs/performance.md), so this is what lets the consumer,
    /// not the broker's wait, set the pace; and `fetch.queue.backoff.ms = 10`: by
    /// default librdkafka stops fetching for 1 s each time its local queue reaches
    /// `queued.max.messages.kbytes` (64 MB), and a consumer slower than the fetches but
    /// faster than 64 MB/s empties the queue before the second is over and waits.
    FastFetch,
    /// The pipeline's own consumer settings (`fetch.wait.max.ms` at librdkafka's
    /// 500 ms default): on tansu both loops are paced by the broker.
    Pipeline,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::FastFetch => "fast-fetch",
            Profile::Pipeline => "pipeline",
        }
    }

    fn parse(s: &str) -> Vec<Profile> {
        match s {
            "fast-fetch" | "fast" => vec![Profile::FastFetch],
            "pipeline" => vec![Profile::Pipeline],
            "both" => vec![Profile::FastFetch, Profile::Pipeline],
            other => panic!("unknown profile {other:?} (fast-fetch | pipeline | both)"),
        }
    }

    fn settings(self) -> Vec<(&'static str, &'static str)> {
        let mut s = FETCH_SIZES.to_vec();
        if self == Profile::FastFetch {
            s.push(("fetch.wait.max.ms", "10"));
            s.push(("fetch.queue.backoff.ms", "10"));
        }
        s
    }
}

/// Which loop a child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Ingest,
    /// Breakdown: `ecg_pipeline::record_from` only (the copy into a `SourceRecord`).
    Copy,
    /// Breakdown: `codec::decode` of the borrowed payload only (no `Input` copy).
    Decode,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Ingest => "ingest",
            Mode::Copy => "copy",
            Mode::Decode => "decode",
        }
    }

    fn parse(s: &str) -> Mode {
        match s {
            "bare" => Mode::Bare,
            "ingest" => Mode::Ingest,
            "copy" => Mode::Copy,
            "decode" => Mode::Decode,
            other => panic!("unknown loop {other:?} (bare | ingest | copy | decode)"),
        }
    }
}

/// What one child measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Run {
    mode: String,
    frames: u64,
    bytes: u64,
    errors: u64,
    /// First message received → last message handled.
    seconds: f64,
    /// Child start → first message (client creation, connection, first fetch).
    startup_seconds: f64,
    /// The consuming (main) thread's time on a CPU during `seconds`.
    main_cpu_seconds: f64,
    /// The consuming thread's time runnable but waiting for a CPU during `seconds`.
    main_runqueue_seconds: f64,
    vmhwm_kb: u64,
}

impl Run {
    fn frames_per_s(&self) -> f64 {
        self.frames as f64 / self.seconds
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

/// Command-line options (`cargo bench` appends `--bench`).
#[derive(Debug)]
struct Args {
    child: Option<Mode>,
    bootstrap: String,
    topic: String,
    frames: usize,
    rounds: usize,
    streams: usize,
    profiles: Vec<Profile>,
    breakdown: bool,
    bench: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        child: None,
        bootstrap: String::new(),
        topic: String::new(),
        frames: std::env::var("INGEST_BENCH_FRAMES")
            .ok()
            .map(|v| v.parse().expect("INGEST_BENCH_FRAMES: a frame count"))
            .unwrap_or(100_000),
        rounds: 5,
        streams: 50,
        profiles: Profile::parse("both"),
        breakdown: false,
        bench: false,
    };
    let mut frames_given = std::env::var_os("INGEST_BENCH_FRAMES").is_some();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => a.bench = true,
            "--breakdown" => a.breakdown = true,
            "--child" => a.child = Some(Mode::parse(&value("--child"))),
            "--bootstrap" => a.bootstrap = value("--bootstrap"),
            "--topic" => a.topic = value("--topic"),
            "--frames" => {
                a.frames = value("--frames").parse().expect("--frames: a count");
                frames_given = true;
            }
            "--rounds" => a.rounds = value("--rounds").parse().expect("--rounds: a count"),
            "--streams" => a.streams = value("--streams").parse().expect("--streams: a count"),
            "--profile" => a.profiles = Profile::parse(&value("--profile")),
            // Filters and flags cargo or libtest conventions may pass: ignored.
            _ => {}
        }
    }
    if !a.bench && a.child.is_none() && !frames_given {
        // `cargo test --all-targets` runs bench binaries without `--bench`: smoke size.
        a.frames = 2_000;
        a.rounds = 1;
        a.profiles = vec![Profile::FastFetch];
    }
    assert!(a.frames > 0 && a.rounds > 0 && a.streams > 0);
    a
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match args.child {
        Some(mode) => {
            let run = rt.block_on(child(mode, &args));
            println!("{}", serde_json::to_string(&run).expect("json"));
        }
        None => rt.block_on(parent(&args)),
    }
}

// ---------------------------------------------------------------------------------
// Child: one measured read of the whole topic.

async fn child(mode: Mode, args: &Args) -> Run {
    let started = Instant::now();
    let group = tansu::unique(&format!("ingest-bench-{}", mode.name()));
    let mut cfg = kafka::consumer_config(&kafka::connection(&args.bootstrap), &group);
    let profile = args.profiles[0];
    for (k, v) in profile.settings() {
        cfg.set(k, v);
    }
    for kv in std::env::var("INGEST_BENCH_CONSUMER_CONFIG")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv
            .split_once('=')
            .expect("INGEST_BENCH_CONSUMER_CONFIG: k=v,k=v");
        cfg.set(k, v);
    }
    let consumer: StreamConsumer = cfg.create().expect("consumer");
    // Explicit assignment from the beginning of every partition: the group is fresh
    // (nothing committed, offsets never stored), and no group join (slow on tansu at
    // times, docs/broker.md) falls into either measurement.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&args.topic, p as i32, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");

    let want = args.frames as u64;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut errors = 0u64;
    let mut first: Option<(Instant, [f64; 2])> = None;
    let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
    while frames + errors < want {
        let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("consume error: {e}"),
            Err(_) => panic!(
                "{}: {} of {want} messages after {CHILD_TIMEOUT:?}",
                mode.name(),
                frames + errors
            ),
        };
        first.get_or_insert_with(|| (Instant::now(), schedstat()));
        match mode {
            Mode::Bare => {
                let p = msg.payload().unwrap_or_default();
                let touch = p.len() as u64
                    + u64::from(p.first().copied().unwrap_or(0))
                    + u64::from(p.last().copied().unwrap_or(0));
                black_box(touch);
                bytes += p.len() as u64;
                frames += 1;
            }
            Mode::Ingest => {
                let input = ecg_pipeline::record_from(&msg);
                bytes += input.payload.len() as u64;
                match codec::decode(&input.payload, input.content_type.as_deref()) {
                    Ok(frame) => {
                        black_box(&frame);
                        frames += 1;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!(
                                "decode error at {}/{}: {e}",
                                input.position.partition, input.position.offset
                            );
                        }
                        errors += 1;
                    }
                }
                black_box(&input);
            }
            Mode::Copy => {
                let input = ecg_pipeline::record_from(&msg);
                bytes += input.payload.len() as u64;
                frames += 1;
                black_box(&input);
            }
            Mode::Decode => {
                let p = msg.payload().unwrap_or_default();
                bytes += p.len() as u64;
                match codec::decode(p, kafka::content_type(&msg).as_deref()) {
                    Ok(frame) => {
                        black_box(&frame);
                        frames += 1;
                    }
                    Err(_) => errors += 1,
                }
            }
        }
    }
    let (end, sched_end) = (Instant::now(), schedstat());
    let (first, sched_first) = first.unwrap_or((end, sched_end));
    Run {
        mode: mode.name().to_owned(),
        frames,
        bytes,
        errors,
        seconds: (end - first).as_secs_f64(),
        startup_seconds: (first - started).as_secs_f64(),
        main_cpu_seconds: sched_end[0] - sched_first[0],
        main_runqueue_seconds: sched_end[1] - sched_first[1],
        vmhwm_kb: support::vmhwm_kb_of(std::process::id()),
    }
}

/// The main thread's time on a CPU and waiting on a run queue so far, in seconds
/// (`/proc/thread-self/schedstat`; zeros where it is missing).
fn schedstat() -> [f64; 2] {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = s
        .split_whitespace()
        .map(|v| v.parse::<f64>().map_or(0.0, |ns| ns / 1e9));
    [f.next().unwrap_or(0.0), f.next().unwrap_or(0.0)]
}

// ---------------------------------------------------------------------------------
// Parent: broker, topic, frames, alternating children, report.

async fn parent(args: &Args) {
    let Some(broker) = tansu::Broker::start() else {
        println!("ingest bench: not run (tansu not installed; scripts/test.sh installs it)");
        return;
    };
    let version = tansu::binary()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "tansu (version unknown)".to_owned());
    let bootstrap = broker.bootstrap();
    let topic = tansu::unique("ingest-bench");
    broker.create_topic(&topic, PARTITIONS);

    let t = Instant::now();
    let base = base_frames(args.streams, args.frames);
    let gen_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let bytes = produce(&bootstrap, &topic, &base, args.frames).await;
    let produce_s = t.elapsed().as_secs_f64();
    let decode_alone = decode_alone(&base);
    drop(base);

    println!("ingest bench (issue #4 item 8): {version}, bootstrap {bootstrap}");
    println!(
        "topic: {PARTITIONS} partitions, {} frames from {} streams (12 leads, {SAMPLE_RATE} Hz, \
         {FRAME_SAMPLES} samples/lead/frame, protobuf), {:.1} MB payload ({:.0} B/frame); \
         generated in {gen_s:.1} s, produced in {produce_s:.1} s",
        args.frames,
        args.streams.min(args.frames),
        bytes as f64 / 1e6,
        bytes as f64 / args.frames as f64,
    );
    println!(
        "each run: fresh child process, fresh consumer group, whole topic from offset 0; \
         time = first message -> last message handled; {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!(
        "decode + validate alone (in memory, one thread, no Kafka): {decode_alone:.0} frames/s"
    );

    let mut summaries = Vec::new();
    for &profile in &args.profiles {
        summaries.push(measure(profile, args, &bootstrap, &topic, bytes));
    }
    println!("\nload average at the end: {}", loadavg());

    if args.bench {
        let line = serde_json::json!({
            "bench": "ingest",
            "broker": version,
            "partitions": PARTITIONS,
            "frames": args.frames,
            "payload_bytes": bytes,
            "rounds": args.rounds,
            "decode_alone_frames_per_s": decode_alone,
            "profiles": summaries,
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        support::append_json("ingest-bench.json", &line.to_string());
    }
    drop(broker);
}

/// Medians of one profile's rounds.
#[derive(Debug, serde::Serialize)]
struct Summary {
    profile: &'static str,
    settings: Vec<(&'static str, &'static str)>,
    bare_frames_per_s: f64,
    ingest_frames_per_s: f64,
    bare_mb_per_s: f64,
    ingest_mb_per_s: f64,
    ratio: f64,
    bare_peak_rss_mb: f64,
    ingest_peak_rss_mb: f64,
    runs: Vec<Run>,
}

/// A warm-up read (`--bench` only, not reported), then `rounds` rounds alternating
/// which loop goes first; prints every run and the medians.
fn measure(profile: Profile, args: &Args, bootstrap: &str, topic: &str, bytes: u64) -> Summary {
    let settings = profile.settings();
    let shown: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("\n== profile {}: {}", profile.name(), shown.join(", "));
    if args.bench {
        run_child(Mode::Bare, profile, args, bootstrap, topic);
    }
    println!(
        "{:<10} {:>10} {:>8} {:>8} {:>10} {:>11} {:>7} {:>7}",
        "run", "frames/s", "MB/s", "seconds", "startup s", "peak RSS", "cpu %", "wait %"
    );
    let mut modes = vec![Mode::Bare, Mode::Ingest];
    if args.breakdown {
        modes.extend([Mode::Copy, Mode::Decode]);
    }
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..args.rounds {
        let mut order = modes.clone();
        order.rotate_left(round % modes.len());
        for mode in order {
            let r = run_child(mode, profile, args, bootstrap, topic);
            assert_eq!(r.errors, 0, "{}: {} decode errors", r.mode, r.errors);
            assert_eq!(r.frames, args.frames as u64, "{}: frames read", r.mode);
            assert_eq!(r.bytes, bytes, "{}: payload bytes read", r.mode);
            println!(
                "{:<10} {:>10.0} {:>8.1} {:>8.3} {:>10.3} {:>8.1} MB {:>7.0} {:>7.0}",
                format!("{} #{}", r.mode, round + 1),
                r.frames_per_s(),
                r.mb_per_s(),
                r.seconds,
                r.startup_seconds,
                r.vmhwm_kb as f64 / 1024.0,
                100.0 * r.main_cpu_seconds / r.seconds,
                100.0 * r.main_runqueue_seconds / r.seconds
            );
            runs.push(r);
        }
    }
    let rss = |r: &Run| r.vmhwm_kb as f64 / 1024.0;
    let med = |runs: &[Run], mode: Mode, f: &dyn Fn(&Run) -> f64| {
        median(
            runs.iter()
                .filter(|r| r.mode == mode.name())
                .map(f)
                .collect(),
        )
    };
    let s = Summary {
        profile: profile.name(),
        settings,
        bare_frames_per_s: med(&runs, Mode::Bare, &Run::frames_per_s),
        ingest_frames_per_s: med(&runs, Mode::Ingest, &Run::frames_per_s),
        bare_mb_per_s: med(&runs, Mode::Bare, &Run::mb_per_s),
        ingest_mb_per_s: med(&runs, Mode::Ingest, &Run::mb_per_s),
        ratio: f64::NAN,
        bare_peak_rss_mb: med(&runs, Mode::Bare, &rss),
        ingest_peak_rss_mb: med(&runs, Mode::Ingest, &rss),
        runs,
    };
    let s = Summary {
        ratio: s.ingest_frames_per_s / s.bare_frames_per_s,
        ..s
    };
    println!(
        "median of {} round(s), profile {}:\n  bare   {:>10.0} frames/s {:>7.1} MB/s  \
         peak RSS {:.1} MB\n  ingest {:>10.0} frames/s {:>7.1} MB/s  peak RSS {:.1} MB\n  \
         ratio ingest/bare: {:.2} (target >= 0.80: {})",
        args.rounds,
        profile.name(),
        s.bare_frames_per_s,
        s.bare_mb_per_s,
        s.bare_peak_rss_mb,
        s.ingest_frames_per_s,
        s.ingest_mb_per_s,
        s.ingest_peak_rss_mb,
        s.ratio,
        if s.ratio >= 0.8 { "met" } else { "NOT met" }
    );
    for &mode in &modes[2..] {
        println!(
            "  breakdown: {:<6} {:>10.0} frames/s {:>7.1} MB/s  peak RSS {:.1} MB ({:.2} of bare)",
            mode.name(),
            med(&s.runs, mode, &Run::frames_per_s),
            med(&s.runs, mode, &Run::mb_per_s),
            med(&s.runs, mode, &rss),
            med(&s.runs, mode, &Run::frames_per_s) / s.bare_frames_per_s
        );
    }
    s
}

/// `/proc/loadavg`'s three averages (other work on the machine skews the figures).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs this binary as a `--child` and parses the JSON line it prints.
fn run_child(mode: Mode, profile: Profile, args: &Args, bootstrap: &str, topic: &str) -> Run {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--child", mode.name()])
        .args(["--profile", profile.name()])
        .args(["--bootstrap", bootstrap])
        .args(["--topic", topic])
        .args(["--frames", &args.frames.to_string()])
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} child: {}\nstdout:\n{stdout}\nstderr:\n{}",
        mode.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{} child printed no result:\n{stdout}", mode.name()));
    serde_json::from_str(line).expect("child result JSON")
}

/// `streams` simulated 12-lead devices (every preset but the paced one, in turn), at most
/// `BASE_FRAMES_PER_STREAM` frames each (fewer when `total` needs fewer).
fn base_frames(streams: usize, total: usize) -> Vec<Vec<Frame>> {
    let streams = streams.min(total);
    let per_stream = total.div_ceil(streams).min(BASE_FRAMES_PER_STREAM);
    // The presets its figures were measured with (docs/performance.md): not the paced
    // one, whose frames also carry pace flags.
    let mix: Vec<Preset> = Preset::all()
        .iter()
        .copied()
        .filter(|&p| p != Preset::VentricularPaced)
        .collect();
    (0..streams)
        .map(|i| {
            let preset = mix[i % mix.len()];
            let dev = Device::new(preset.config(i as u64, SAMPLE_RATE, Lead::STANDARD_12.to_vec()))
                .expect("valid sim config");
            let mut src = FrameSource::new(
                dev,
                StreamId::new(format!("bench-{i}")).expect("id"),
                DeviceId::new(format!("dev-{i}")).expect("id"),
                PatientId::new(format!("pat-{i}")).expect("id"),
                T0,
                FRAME_SAMPLES,
                1000,
            );
            (0..per_stream).map(|_| src.next_frame()).collect()
        })
        .collect()
}

/// Frame `k` of stream `i`: the base frames repeated, with continuing `seq` and `t0`.
fn frame_at(base: &[Vec<Frame>], i: usize, k: usize) -> Frame {
    let b = &base[i];
    let mut f = b[k % b.len()].clone();
    let rep = (k / b.len()) as i64;
    let frame_us = FRAME_SAMPLES as i64 * 1_000_000 / i64::from(SAMPLE_RATE);
    f.seq = k as u64;
    f.t0 = f.t0.plus_us(rep * b.len() as i64 * frame_us);
    f
}

/// Decode throughput of the base payloads in memory (context for the ratio).
fn decode_alone(base: &[Vec<Frame>]) -> f64 {
    let payloads: Vec<Vec<u8>> = base
        .iter()
        .flatten()
        .map(|f| codec::encode(f, Encoding::Protobuf))
        .collect();
    let mut n = 0u64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        for p in &payloads {
            black_box(codec::decode(black_box(p), Some(CONTENT_TYPE_PROTOBUF)).expect("valid"));
        }
        n += payloads.len() as u64;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Produces `total` frames (streams interleaved, key = stream id) and waits for every
/// acknowledgement; returns the payload bytes written.
async fn produce(bootstrap: &str, topic: &str, base: &[Vec<Frame>], total: usize) -> u64 {
    let mut cfg = kafka::producer_config(&kafka::connection(bootstrap), 20);
    cfg.set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.size", "1000000");
    let producer: FutureProducer = cfg.create().expect("producer");
    let headers = OwnedHeaders::new().insert(Header {
        key: kafka::CONTENT_TYPE,
        value: Some(CONTENT_TYPE_PROTOBUF),
    });
    let streams = base.len();
    let mut pending = Vec::with_capacity(total);
    let mut bytes = 0u64;
    for n in 0..total {
        let f = frame_at(base, n % streams, n / streams);
        let payload = codec::encode(&f, Encoding::Protobuf);
        bytes += payload.len() as u64;
        let key = f.stream.as_str();
        loop {
            let rec = FutureRecord::to(topic)
                .key(key)
                .payload(&payload)
                .headers(headers.clone());
            match producer.send_result(rec) {
                Ok(d) => {
                    pending.push(d);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(2)).await,
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    for d in pending {
        d.await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivery");
    }
    bytes
}

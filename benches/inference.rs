//! Inference-stage throughput against raw ONNX Runtime on the same model (issue #5,
//! item 5). Results and how to read them: docs/performance.md.
//!
//! `cargo bench --bench inference`; options after `--`: `--rounds R` (default 5 for
//! af-cnn and af-rr, 3 for ecg12-attia), `--threads 1,2` (intra-op threads; default
//! both), `--models af-cnn,af-rr,ecg12-attia`, `--seconds S` (minimum seconds per
//! measurement; default 0.5 for af-cnn and af-rr, 1.0 for ecg12-attia),
//! `--latency-calls N`, `--no-python`.
//! `INFERENCE_BENCH_PYTHON` names the Python interpreter (default
//! `.cardiostream/venv/bin/python`, where `scripts/setup-onnxruntime.sh` installs the
//! `onnxruntime` wheel whose `libonnxruntime.so` the Rust side loads too).
//!
//! For each bundled model it builds a pool of realistic windows from simulated devices
//! (`ecg_sim`): af-rr windows carry `af_features` of the RR intervals that the streaming
//! QRS detector finds in 30 s of one simulated lead (sinus, brady, tachy, AF, PVCs, VT,
//! noisy); ecg12-attia windows are 10 s of 12-lead 500 Hz simulated signal, lead-major.
//! The exact model inputs of the pool are written to `target/tmp/inference-bench/` so the
//! Python side feeds ONNX Runtime the same numbers. Batch `k` of size `B` is windows
//! `(k*B + j) % N`; calls cycle through the batches on both sides.
//!
//! Per model, intra-op thread count and batch size it measures windows per second of
//! - `rust`: `ecg_inference::Model::score` (the inference stage: locks the session,
//!   copies the windows into the input tensor it keeps for that batch size, runs with
//!   the output preallocated, splits the output into per-window `Probs`);
//! - `ort run`: onnxruntime's Python `InferenceSession.run` on a prepared numpy batch;
//! - `ort bound`: the same session through IOBinding with input and output bound once,
//!   i.e. ONNX Runtime's `Run` with the least work around it;
//!
//! both sessions with `intra_op_num_threads = T`, `inter_op_num_threads = 1`, sequential
//! execution (`scripts/bench-ort-python.py`, started once as a JSON-lines server).
//! Measurements are interleaved in ABBA order (round 0: rust, run, bound; round 1:
//! bound, run, rust; ...) and each figure is the median over rounds. The ratio
//! rust / ort (target >= 0.95) is given against both Python figures.
//!
//! Latency: per-call wall time of `Model::score` at the pipeline's default batching
//! (`pipeline.model_max_batch = 64`, `pipeline.model_threads = 1`): af-rr batch 64,
//! ecg12-attia batch 8 (one 12-lead window per stream every 5 minutes), with p50/p99,
//! beside the same for the Python session.
//!
//! It also times, without ONNX Runtime, the work `Model::score` does around the run
//! (copying the window values into the input buffer, splitting the output into
//! per-window `Probs`), to explain the gap when there is one.
//!
//! Prints tables and appends one JSON line to `target/inference-bench.json`. Without
//! `--bench` (i.e. under `cargo test --all-targets`) it runs a small smoke version (one
//! round, short measurements, nothing appended), and skips with a message when ONNX
//! Runtime is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[allow(dead_code)] // each bench uses part of it
mod support;

use std::hint::black_box;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ecg_dsp::stream::DspConfig;
use ecg_inference::{InputKind, Manifest, Model, OrtRuntime, Scored};
use ecg_sim::{Device, Preset};
use ecg_types::{Lead, ModelInput, PatientId, SampleRate, StreamId};
use serde_json::{json, Value};

/// Pause between a measurement on one side and the next on the other, so spinning
/// ONNX Runtime pool threads of the side that just finished have gone to sleep.
const SETTLE: Duration = Duration::from_millis(50);

struct Args {
    bench: bool,
    rounds: Option<usize>,
    threads: Vec<usize>,
    models: Vec<String>,
    seconds: Option<f64>,
    latency_calls: Option<usize>,
    python: bool,
}

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Vec<T> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{what}: bad value {p:?}"))
        })
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        bench: false,
        rounds: None,
        threads: vec![1, 2],
        models: vec!["af-cnn".into(), "af-rr".into(), "ecg12-attia".into()],
        seconds: None,
        latency_calls: None,
        python: true,
    };
    let mut threads_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => a.bench = true,
            "--rounds" => a.rounds = Some(value("--rounds").parse().expect("--rounds: a count")),
            "--threads" => {
                a.threads = parse_list(&value("--threads"), "--threads");
                threads_given = true;
            }
            "--models" => a.models = parse_list(&value("--models"), "--models"),
            "--seconds" => {
                a.seconds = Some(value("--seconds").parse().expect("--seconds: a number"));
            }
            "--latency-calls" => {
                a.latency_calls = Some(
                    value("--latency-calls")
                        .parse()
                        .expect("--latency-calls: a count"),
                );
            }
            "--no-python" => a.python = false,
            // Filters and flags cargo or libtest conventions may pass: ignored.
            _ => {}
        }
    }
    if !a.bench {
        // `cargo test --all-targets` runs bench binaries without `--bench`: smoke size.
        a.rounds = Some(a.rounds.unwrap_or(1));
        a.seconds = Some(a.seconds.unwrap_or(0.05));
        a.latency_calls = Some(a.latency_calls.unwrap_or(5));
        if !threads_given {
            a.threads = vec![1];
        }
    }
    assert!(a.rounds != Some(0) && !a.threads.contains(&0) && !a.threads.is_empty());
    a
}

/// What is measured for one bundled model.
struct Spec {
    id: &'static str,
    manifest: &'static str,
    batches: Vec<usize>,
    /// Batch size per call at the pipeline's default settings.
    default_batch: usize,
    pool: usize,
    rounds: usize,
    min_seconds: f64,
    min_calls: usize,
    warmup_calls: usize,
    latency_calls: usize,
}

fn specs(a: &Args) -> Vec<Spec> {
    let smoke = !a.bench;
    let all = vec![
        // The active AF model: 30 s of one lead at its rate, windows/s per core
        // against raw ONNX Runtime is issue 13's bar (>= 1,000).
        Spec {
            id: "af-cnn",
            manifest: "models/af-cnn/af_cnn.toml",
            batches: if smoke {
                vec![1, 64]
            } else {
                vec![1, 8, 32, 64]
            },
            default_batch: 64,
            pool: if smoke { 128 } else { 512 },
            rounds: a.rounds.unwrap_or(5),
            min_seconds: a.seconds.unwrap_or(0.5),
            min_calls: if smoke { 2 } else { 10 },
            warmup_calls: if smoke { 2 } else { 20 },
            latency_calls: a.latency_calls.unwrap_or(if smoke { 20 } else { 2_000 }),
        },
        Spec {
            id: "af-rr",
            manifest: "models/af-rr/af_rr.toml",
            batches: if smoke {
                vec![1, 64]
            } else {
                vec![1, 8, 32, 64, 256]
            },
            default_batch: 64,
            pool: 512,
            rounds: a.rounds.unwrap_or(5),
            min_seconds: a.seconds.unwrap_or(0.5),
            min_calls: 20,
            warmup_calls: 200,
            latency_calls: a.latency_calls.unwrap_or(20_000),
        },
        Spec {
            id: "ecg12-attia",
            manifest: "models/ecg12-attia/ecg12_attia.toml",
            batches: if smoke { vec![1] } else { vec![1, 8, 32] },
            default_batch: 8,
            pool: if smoke { 4 } else { 32 },
            rounds: a.rounds.unwrap_or(3),
            min_seconds: a.seconds.unwrap_or(1.0),
            min_calls: if smoke { 1 } else { 2 },
            warmup_calls: if smoke { 1 } else { 2 },
            latency_calls: a.latency_calls.unwrap_or(120),
        },
    ];
    all.into_iter()
        .filter(|s| a.models.iter().any(|m| m == s.id))
        .collect()
}

// ---------------------------------------------------------------------------------
// ModelInputs

const AF_PRESETS: [Preset; 7] = [
    Preset::NormalSinus,
    Preset::AtrialFibrillation,
    Preset::Bradycardia,
    Preset::Tachycardia,
    Preset::Pvcs,
    Preset::NoisyNormalSinus,
    Preset::VentricularTachycardia,
];

/// `count` windows for `manifest`, each built by the pipeline's one model-input
/// builder (`ecg_pipeline::inputs::record_inputs`) from one window's length of a
/// simulated recording: af-rr windows carry the `af_features` of the beats the
/// streaming detector finds in 30 s of one lead at 250 Hz; waveform windows carry
/// the model's leads at its rate.
fn build_windows(manifest: &Manifest, count: usize) -> Vec<ModelInput> {
    let per_device = 8;
    let mut out = Vec::with_capacity(count);
    let mut dev_no = 0u64;
    while out.len() < count {
        let preset = AF_PRESETS[dev_no as usize % AF_PRESETS.len()];
        let (fs, leads) = match manifest.input.kind {
            InputKind::AfRrV1 => (250u32, vec![Lead::II]),
            InputKind::Waveform => (manifest.input.sample_rate_hz, manifest.input.leads.clone()),
        };
        let n = (f64::from(manifest.window_s) * f64::from(fs)).round() as usize;
        let mut dev =
            Device::new(preset.config(1000 + dev_no, fs, leads.clone())).expect("valid sim config");
        dev_no += 1;
        for _ in 0..per_device {
            if out.len() == count {
                break;
            }
            let mut sig = Vec::with_capacity(n * leads.len());
            dev.generate(n, &mut sig);
            let id = out.len();
            let mut w = ecg_pipeline::inputs::record_inputs(
                manifest,
                manifest.window_s,
                SampleRate(fs),
                &leads,
                &sig,
                &DspConfig::default(),
            )
            .expect("the model takes the simulated leads")
            .into_iter()
            .next()
            .expect("one window");
            w.stream = StreamId::new(format!("bench-{:03}", id / 8)).expect("stream id");
            w.patient = PatientId::new(format!("p-{:03}", id / 8)).expect("patient id");
            w.quality_ok = true;
            out.push(w);
        }
    }
    out
}

/// The values `Model::score` feeds the model for a window.
fn model_input<'a>(manifest: &Manifest, w: &'a ModelInput) -> &'a [f32] {
    match manifest.input.kind {
        InputKind::AfRrV1 => &w.features,
        InputKind::Waveform => &w.samples_mv,
    }
}

/// Writes the pool's model inputs (row-major, f32 little-endian) for the Python side;
/// for a waveform model with an RR-feature input, its features to `path` with the
/// extension `rr.f32` as well.
fn write_pool(manifest: &Manifest, windows: &[ModelInput], path: &Path) {
    let mut bytes = Vec::new();
    let mut rr = Vec::new();
    for w in windows {
        let v = model_input(manifest, w);
        assert_eq!(v.len(), manifest.input.len, "window fits the contract");
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        if manifest.input.rr_len() > 0 {
            assert_eq!(
                w.features.len(),
                manifest.input.rr_len(),
                "RR input fits the contract"
            );
            for x in &w.features {
                rr.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create bench dir");
    std::fs::write(path, bytes).expect("write bench inputs");
    if manifest.input.rr_features.is_some() {
        std::fs::write(rr_pool(path), rr).expect("write bench RR inputs");
    }
}

/// Where `write_pool` writes the RR features of the pool written to `path`.
fn rr_pool(path: &Path) -> PathBuf {
    path.with_extension("rr.f32")
}

/// The batches of size `b` calls cycle through: batch `k` is windows `(k*b + j) % n`.
fn batches(windows: &[ModelInput], b: usize) -> Vec<Vec<&ModelInput>> {
    let n = windows.len();
    (0..(n / b).max(1))
        .map(|k| (0..b).map(|j| &windows[(k * b + j) % n]).collect())
        .collect()
}

// ---------------------------------------------------------------------------------
// Measurements

#[derive(Clone, Copy)]
struct Run {
    calls: usize,
    seconds: f64,
    windows_per_s: f64,
}

impl Run {
    fn from_json(v: &Value) -> Run {
        Run {
            calls: v["calls"].as_u64().expect("calls") as usize,
            seconds: v["seconds"].as_f64().expect("seconds"),
            windows_per_s: v["windows_per_s"].as_f64().expect("windows_per_s"),
        }
    }

    fn us_per_call(&self) -> f64 {
        self.seconds / self.calls as f64 * 1e6
    }

    fn json(&self) -> Value {
        json!({"calls": self.calls, "seconds": self.seconds, "windows_per_s": self.windows_per_s})
    }
}

fn check_scored(scored: &[Scored], b: usize) {
    assert_eq!(scored.len(), b);
    assert!(
        scored.iter().all(|s| matches!(s, Scored::Probabilities(_))),
        "every bench window is scored"
    );
}

fn rust_throughput(model: &Model, batches: &[Vec<&ModelInput>], spec: &Spec) -> Run {
    let b = batches[0].len();
    for i in 0..spec.warmup_calls {
        check_scored(&model.score(&batches[i % batches.len()]).expect("score"), b);
    }
    let mut calls = 0usize;
    let t0 = Instant::now();
    let seconds = loop {
        black_box(model.score(black_box(&batches[calls % batches.len()]))).expect("score");
        calls += 1;
        if calls >= spec.min_calls {
            let dt = t0.elapsed().as_secs_f64();
            if dt >= spec.min_seconds {
                break dt;
            }
        }
    };
    Run {
        calls,
        seconds,
        windows_per_s: (calls * b) as f64 / seconds,
    }
}

fn rust_latency(
    model: &Model,
    batches: &[Vec<&ModelInput>],
    calls: usize,
    warmup: usize,
) -> Vec<u64> {
    for i in 0..warmup {
        model.score(&batches[i % batches.len()]).expect("score");
    }
    (0..calls)
        .map(|i| {
            let batch = black_box(&batches[i % batches.len()]);
            let t = Instant::now();
            black_box(model.score(batch)).expect("score");
            t.elapsed().as_nanos() as u64
        })
        .collect()
}

/// The work `Model::score` does around the ONNX Runtime run, without it, in
/// nanoseconds per call (median of 5): `gather` copies the windows' values into a
/// buffer allocated once, as `score` does into the input tensor it keeps per batch
/// size; `gather_alloc` does the same into a fresh `Vec::with_capacity` per call (what
/// `score` did before it kept its tensors); `split` turns a `[b, k]` output into one
/// `Scored::Probabilities` per window in the result `Vec`, in one pass as `score` does.
struct Outside {
    gather_ns: f64,
    gather_alloc_ns: f64,
    split_ns: f64,
}

fn outside_ort(manifest: &Manifest, batches: &[Vec<&ModelInput>]) -> Outside {
    let k = manifest.output.labels.len();
    let b = batches[0].len();
    let len = manifest.input.len;
    let output = vec![0.25f32; b * k];
    let time = |f: &mut dyn FnMut(usize)| {
        let mut per = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut n = 0usize;
            while n < 20 || t.elapsed() < Duration::from_millis(20) {
                f(n);
                n += 1;
            }
            per.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        median(&mut per)
    };
    let mut buffer = vec![0f32; b * len];
    let rr_len = manifest.input.rr_len();
    let mut rr = vec![0f32; b * rr_len];
    let gather_ns = time(&mut |i| {
        let ws = black_box(&batches[i % batches.len()]);
        for (dst, w) in buffer.chunks_exact_mut(len).zip(ws) {
            dst.copy_from_slice(model_input(manifest, w));
        }
        if rr_len > 0 {
            for (dst, w) in rr.chunks_exact_mut(rr_len).zip(ws) {
                dst.copy_from_slice(&w.features);
            }
        }
        black_box(&mut buffer);
        black_box(&mut rr);
    });
    let gather_alloc_ns = time(&mut |i| {
        let ws = black_box(&batches[i % batches.len()]);
        let mut batch = Vec::with_capacity(ws.len() * len);
        let mut rr = Vec::with_capacity(ws.len() * rr_len);
        for w in ws {
            batch.extend_from_slice(model_input(manifest, w));
            if rr_len > 0 {
                rr.extend_from_slice(&w.features);
            }
        }
        black_box(batch);
        black_box(rr);
    });
    let split_ns = time(&mut |i| {
        let ws = black_box(&batches[i % batches.len()]);
        let mut probs = black_box(&output).chunks_exact(k);
        let scored: Vec<Scored> = ws
            .iter()
            .map(|w| {
                if w.quality_ok {
                    probs.next().map_or(Scored::Indeterminate, |p| {
                        Scored::Probabilities(ecg_inference::Probs::from(p))
                    })
                } else {
                    Scored::Indeterminate
                }
            })
            .collect();
        black_box(scored);
    });
    Outside {
        gather_ns,
        gather_alloc_ns,
        split_ns,
    }
}

fn median(v: &mut [f64]) -> f64 {
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

/// Nearest-rank percentile of nanosecond samples, in milliseconds.
fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e6
}

fn latency_summary(mut ns: Vec<u64>) -> Value {
    ns.sort_unstable();
    let mean = ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len().max(1) as f64 / 1e6;
    json!({
        "calls": ns.len(),
        "p50_ms": pct_ms(&ns, 50.0),
        "p90_ms": pct_ms(&ns, 90.0),
        "p99_ms": pct_ms(&ns, 99.0),
        "max_ms": ns.last().map_or(f64::NAN, |&v| v as f64 / 1e6),
        "mean_ms": mean,
    })
}

// ---------------------------------------------------------------------------------
// The Python side

struct Python {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    hello: Value,
}

impl Python {
    /// Starts `scripts/bench-ort-python.py --serve`, or says why it cannot.
    fn start(root: &Path) -> Result<Python, String> {
        let python = std::env::var_os("INFERENCE_BENCH_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".cardiostream/venv/bin/python"));
        if !python.is_file() {
            return Err(format!(
                "{} not found (run scripts/setup-onnxruntime.sh, or set INFERENCE_BENCH_PYTHON \
                 to a python with the onnxruntime and numpy packages)",
                python.display()
            ));
        }
        let script = root.join("scripts/bench-ort-python.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--serve")
            .current_dir(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut p = Python {
            child,
            stdin,
            stdout,
            hello: Value::Null,
        };
        match p.call(&json!({"op": "hello"})) {
            Ok(h) => {
                p.hello = h;
                Ok(p)
            }
            Err(e) => Err(format!(
                "{} {} did not start (is onnxruntime installed in that python?): {e}",
                python.display(),
                script.display()
            )),
        }
    }

    fn call(&mut self, req: &Value) -> Result<Value, String> {
        writeln!(self.stdin, "{req}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to python: {e}"))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => return Err("python exited".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading from python: {e}")),
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))?;
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("unknown error").to_string())
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// The run

const MODES: [&str; 2] = ["run", "bound"];

struct Row {
    model: &'static str,
    threads: usize,
    batch: usize,
    rust: Vec<Run>,
    /// Per mode in `MODES`.
    ort: [Vec<Run>; 2],
    outside: Outside,
}

impl Row {
    fn med(runs: &[Run], f: fn(&Run) -> f64) -> f64 {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        median(&mut v)
    }

    fn rust_wps(&self) -> f64 {
        Row::med(&self.rust, |r| r.windows_per_s)
    }

    fn ort_wps(&self, m: usize) -> f64 {
        Row::med(&self.ort[m], |r| r.windows_per_s)
    }

    fn rust_us(&self) -> f64 {
        Row::med(&self.rust, Run::us_per_call)
    }

    fn ort_us(&self, m: usize) -> f64 {
        Row::med(&self.ort[m], Run::us_per_call)
    }

    /// Median over rounds of the paired ratio rust / ort (same round).
    fn paired_ratio(&self, m: usize) -> f64 {
        let mut v: Vec<f64> = self
            .rust
            .iter()
            .zip(&self.ort[m])
            .map(|(r, o)| r.windows_per_s / o.windows_per_s)
            .collect();
        median(&mut v)
    }

    fn json(&self) -> Value {
        let mut o = json!({
            "model": self.model,
            "threads": self.threads,
            "batch": self.batch,
            "rust_windows_per_s": self.rust_wps(),
            "rust_us_per_call": self.rust_us(),
            "rust_runs": self.rust.iter().map(Run::json).collect::<Vec<_>>(),
            "gather_ns_per_call": self.outside.gather_ns,
            "gather_alloc_ns_per_call": self.outside.gather_alloc_ns,
            "split_ns_per_call": self.outside.split_ns,
        });
        if !self.ort[0].is_empty() {
            for (m, mode) in MODES.iter().enumerate() {
                o[format!("ort_{mode}_windows_per_s")] = json!(self.ort_wps(m));
                o[format!("ort_{mode}_us_per_call")] = json!(self.ort_us(m));
                o[format!("ratio_vs_{mode}")] = json!(self.rust_wps() / self.ort_wps(m));
                o[format!("paired_ratio_vs_{mode}")] = json!(self.paired_ratio(m));
                o[format!("ort_{mode}_runs")] =
                    json!(self.ort[m].iter().map(Run::json).collect::<Vec<_>>());
            }
        }
        o
    }
}

struct Latency {
    model: &'static str,
    threads: usize,
    batch: usize,
    rust: Value,
    ort: Vec<(&'static str, Value)>,
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu": cpu,
        "loadavg": load,
    })
}

fn main() {
    let args = parse_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = support::target_dir();
    let started = Instant::now();

    let rt = match OrtRuntime::get() {
        Ok(rt) => rt,
        Err(e) if !args.bench => {
            println!("inference bench (smoke): skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mach = machine();
    println!(
        "inference bench{}: onnx runtime {} | {} cpus ({}) | load {}",
        if args.bench { "" } else { " (smoke)" },
        rt.library_path().display(),
        mach["cpus"],
        mach["cpu"].as_str().unwrap_or(""),
        mach["loadavg"].as_str().unwrap_or(""),
    );

    let mut py = if args.python {
        match Python::start(root) {
            Ok(p) => {
                println!(
                    "python side: onnxruntime {} numpy {} python {}",
                    p.hello["onnxruntime"].as_str().unwrap_or("?"),
                    p.hello["numpy"].as_str().unwrap_or("?"),
                    p.hello["python"].as_str().unwrap_or("?"),
                );
                Some(p)
            }
            Err(e) => {
                println!("python side skipped, no comparison: {e}");
                None
            }
        }
    } else {
        println!("python side skipped (--no-python)");
        None
    };
    let python_info = py.as_ref().map_or(Value::Null, |p| p.hello.clone());

    let mut rows: Vec<Row> = Vec::new();
    let mut lats: Vec<Latency> = Vec::new();
    let mut agreement: Vec<Value> = Vec::new();
    for spec in specs(&args) {
        let manifest_path = root.join(spec.manifest);
        let manifest = Manifest::load(&manifest_path).expect("bundled manifest");
        let t = Instant::now();
        let windows = build_windows(&manifest, spec.pool);
        let data = target
            .join("tmp/inference-bench")
            .join(format!("{}.f32", spec.id));
        write_pool(&manifest, &windows, &data);
        println!(
            "\n{}: {} windows of {} values ({:?} to build); inputs in {}",
            spec.id,
            windows.len(),
            manifest.input.len,
            t.elapsed(),
            data.display()
        );
        let mut dims = vec![];
        dims.extend(manifest.input.dims(manifest.window_s));

        for &threads in &args.threads {
            let model = Model::load(&manifest_path, threads).expect("load model");
            let key = format!("{}-t{threads}", spec.id);
            if let Some(p) = py.as_mut() {
                let extra: Vec<Value> = manifest
                    .input
                    .rr_features
                    .iter()
                    .map(
                        |name| json!({"name": name, "data": rr_pool(&data), "dims": [manifest.input.rr_len()]}),
                    )
                    .collect();
                let r = p.call(&json!({
                    "op": "load", "key": key, "onnx": manifest.onnx_path(), "threads": threads,
                    "input": manifest.input.name, "data": data, "rows": windows.len(),
                    "dims": dims, "extra": extra,
                }));
                if let Err(e) = r {
                    println!("python side failed to load {}, no comparison: {e}", spec.id);
                    py = None;
                }
            }
            if let Some(p) = py.as_mut() {
                // Same model, same inputs: the scores must agree.
                let b = spec.batches[0];
                let bs = batches(&windows, b);
                let rust = model.score(&bs[0]).expect("score");
                let ort = p
                    .call(&json!({"op": "predict", "key": key, "batch": b}))
                    .expect("python predict");
                let ort: Vec<f64> = ort["output"]
                    .as_array()
                    .expect("output")
                    .iter()
                    .map(|v| v.as_f64().expect("number"))
                    .collect();
                let rust: Vec<f64> = rust
                    .iter()
                    .flat_map(|s| match s {
                        Scored::Probabilities(p) => p.iter().map(|&v| f64::from(v)).collect(),
                        Scored::Indeterminate | Scored::Rejected(_) => Vec::new(),
                    })
                    .collect();
                assert_eq!(rust.len(), ort.len(), "output sizes agree");
                let diff = rust
                    .iter()
                    .zip(&ort)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                println!("  threads {threads}: max |rust - python| score difference {diff:.2e}");
                agreement.push(json!({"model": spec.id, "threads": threads, "max_abs_diff": diff}));
            }

            for &b in &spec.batches {
                let bs = batches(&windows, b);
                let outside = outside_ort(&manifest, &bs);
                let mut row = Row {
                    model: spec.id,
                    threads,
                    batch: b,
                    rust: Vec::new(),
                    ort: [Vec::new(), Vec::new()],
                    outside,
                };
                for round in 0..spec.rounds {
                    // ABBA: rust first on even rounds, last on odd ones.
                    let order: &[&str] = if round % 2 == 0 {
                        &["rust", "run", "bound"]
                    } else {
                        &["bound", "run", "rust"]
                    };
                    for &side in order {
                        if side == "rust" {
                            row.rust.push(rust_throughput(&model, &bs, &spec));
                        } else if let Some(p) = py.as_mut() {
                            let m = MODES.iter().position(|&x| x == side).expect("mode");
                            let v = p
                                .call(&json!({
                                    "op": "throughput", "key": key, "batch": b, "mode": side,
                                    "min_seconds": spec.min_seconds,
                                    "min_calls": spec.min_calls,
                                    "warmup_calls": spec.warmup_calls,
                                }))
                                .expect("python throughput");
                            row.ort[m].push(Run::from_json(&v));
                        } else {
                            continue;
                        }
                        std::thread::sleep(SETTLE);
                    }
                }
                print_row_progress(&row);
                rows.push(row);
            }

            // Latency at the pipeline's default batching (model_threads = 1).
            if threads == 1 {
                let b = spec.default_batch;
                let bs = batches(&windows, b);
                let half = spec.latency_calls.div_ceil(2);
                let mut rust_ns = Vec::new();
                let mut ort_ns: Vec<Vec<u64>> = vec![Vec::new(); MODES.len()];
                for round in 0..2 {
                    let order: &[&str] = if round == 0 {
                        &["rust", "run", "bound"]
                    } else {
                        &["bound", "run", "rust"]
                    };
                    for &side in order {
                        if side == "rust" {
                            rust_ns.extend(rust_latency(&model, &bs, half, spec.warmup_calls));
                        } else if let Some(p) = py.as_mut() {
                            let m = MODES.iter().position(|&x| x == side).expect("mode");
                            let v = p
                                .call(&json!({
                                    "op": "latency", "key": key, "batch": b, "mode": side,
                                    "calls": half, "warmup_calls": spec.warmup_calls,
                                }))
                                .expect("python latency");
                            ort_ns[m].extend(
                                v["latencies_ns"]
                                    .as_array()
                                    .expect("latencies")
                                    .iter()
                                    .map(|x| x.as_u64().expect("ns")),
                            );
                        } else {
                            continue;
                        }
                        std::thread::sleep(SETTLE);
                    }
                }
                let lat = Latency {
                    model: spec.id,
                    threads,
                    batch: b,
                    rust: latency_summary(rust_ns),
                    ort: if py.is_some() {
                        MODES
                            .iter()
                            .zip(ort_ns)
                            .map(|(&m, ns)| (m, latency_summary(ns)))
                            .collect()
                    } else {
                        Vec::new()
                    },
                };
                println!(
                    "  latency batch {b}: rust p50 {} ms p99 {} ms",
                    fmt_ms(lat.rust["p50_ms"].as_f64().unwrap_or(f64::NAN)),
                    fmt_ms(lat.rust["p99_ms"].as_f64().unwrap_or(f64::NAN))
                );
                lats.push(lat);
            }
            if let Some(p) = py.as_mut() {
                let _ = p.call(&json!({"op": "unload", "key": key}));
            }
        }
    }
    drop(py);

    print_tables(&rows, &lats);
    let elapsed = started.elapsed().as_secs_f64();
    println!("\n(took {elapsed:.0} s)");

    if args.bench {
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = json!({
            "bench": "inference",
            "unix_time": unix_time,
            "machine": mach,
            "loadavg_end": machine()["loadavg"],
            "onnxruntime_lib": rt.library_path(),
            "python": python_info,
            "seconds": elapsed,
            "agreement": agreement,
            "throughput": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "latency": lats.iter().map(|l| {
                let mut o = json!({
                    "model": l.model, "threads": l.threads, "batch": l.batch, "rust": l.rust,
                });
                for (m, v) in &l.ort {
                    o[format!("ort_{m}")] = v.clone();
                }
                o
            }).collect::<Vec<_>>(),
        });
        support::append_json("inference-bench.json", &line.to_string());
    }
}

fn print_row_progress(r: &Row) {
    let mut s = format!(
        "  threads {} batch {:>3}: rust {:>12.0} win/s",
        r.threads,
        r.batch,
        r.rust_wps()
    );
    if !r.ort[0].is_empty() {
        s += &format!(
            " | ort run {:>12.0} | ort bound {:>12.0} | rust/run {:.3} rust/bound {:.3}",
            r.ort_wps(0),
            r.ort_wps(1),
            r.rust_wps() / r.ort_wps(0),
            r.rust_wps() / r.ort_wps(1)
        );
    }
    println!("{s}");
}

fn print_tables(rows: &[Row], lats: &[Latency]) {
    let cmp = rows.iter().any(|r| !r.ort[0].is_empty());
    println!("\nThroughput, windows/s (median of rounds); ratio target >= 0.95");
    if cmp {
        println!(
            "| model | threads | batch | rust win/s | ort run win/s | ort bound win/s | \
             rust/run | rust/bound | rust µs/call | bound µs/call | gap µs/call | \
             gather µs | split µs |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    } else {
        println!("| model | threads | batch | rust win/s | rust µs/call | gather µs | split µs |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
    }
    for r in rows {
        let gather = fmt_us(r.outside.gather_ns / 1e3);
        let split = fmt_us(r.outside.split_ns / 1e3);
        if cmp {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {gather} | {split} |",
                r.model,
                r.threads,
                r.batch,
                r.rust_wps(),
                r.ort_wps(0),
                r.ort_wps(1),
                r.rust_wps() / r.ort_wps(0),
                r.rust_wps() / r.ort_wps(1),
                fmt_us(r.rust_us()),
                fmt_us(r.ort_us(1)),
                fmt_us(r.rust_us() - r.ort_us(1)),
            );
        } else {
            println!(
                "| {} | {} | {} | {:.0} | {} | {gather} | {split} |",
                r.model,
                r.threads,
                r.batch,
                r.rust_wps(),
                fmt_us(r.rust_us()),
            );
        }
    }
    println!("\nLatency per call at the default batching (model_threads = 1), ms");
    println!("| model | batch | rust p50 | rust p99 | ort run p50 | ort run p99 | ort bound p50 | ort bound p99 | calls |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in lats {
        let g = |v: &Value, k: &str| v[k].as_f64().map_or("-".into(), fmt_ms);
        let (rp50, rp99, bp50, bp99) = match l.ort.as_slice() {
            [(_, run), (_, bound)] => (
                g(run, "p50_ms"),
                g(run, "p99_ms"),
                g(bound, "p50_ms"),
                g(bound, "p99_ms"),
            ),
            _ => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {rp50} | {rp99} | {bp50} | {bp99} | {} |",
            l.model,
            l.batch,
            g(&l.rust, "p50_ms"),
            g(&l.rust, "p99_ms"),
            l.rust["calls"]
        );
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.4}")
    }
}

fn fmt_us(us: f64) -> String {
    if us.abs() >= 1000.0 {
        format!("{us:.0}")
    } else if us.abs() >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

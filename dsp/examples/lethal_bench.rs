//! Throughput of [`LethalDetector`] (every lead, pulse channel where the stream has
//! one) against the lead-0 DSP chain [`StreamDsp`] measured in the same run, for a
//! 3-lead 250 Hz ICU-like stream with a plethysmogram and a 12-lead 500 Hz stream.
//!
//! ```text
//! cargo run --release -p ecg-dsp --example lethal_bench [-- SECONDS_PER_MEASUREMENT]
//! cargo run --release -p ecg-dsp --example lethal_bench -- interleaved [STREAMS [SECONDS [ROUNDS]]]
//! ```
//!
//! Samples are counted as in `cargo bench --bench dsp` (ECG samples × leads; the
//! pulse samples are not counted but are processed). Each measurement pushes 60 s of
//! simulated signal in 1 s lead-major blocks into state that persists (a long-running
//! stream), repeatedly, and takes the best of five rounds of thread CPU time (the
//! machine is shared: wall time would count other processes). The ratio of the two,
//! measured in the same run, is the figure to quote. The state memory per stream is
//! printed too.
//!
//! `interleaved` reproduces the pipeline's access pattern instead: `STREAMS` (default
//! 1000) 12-lead 500 Hz streams, each with its own detector and its own lead-0 chain,
//! fed 100-sample frames (200 ms) round-robin — frame k of every stream, then frame
//! k + 1 — so that each frame finds its stream's state cold, as the analyzer does with
//! thousands of streams. The frames come from six simulated rhythms (stream `i` plays
//! rhythm `i mod 6`), all streams at the same frame, so the input itself stays in cache
//! as a freshly decoded frame does. After 20 s of warm-up, each of `ROUNDS` (default 4)
//! rounds times `SECONDS` (default 10) of every stream through the detectors, then the
//! same seconds through the lead-0 chains (thread CPU time); the ratio of the two per
//! round, and its median, is the figure to quote.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ecg_dsp::lethal::{LethalConfig, LethalDetector};
use ecg_dsp::stream::{DspConfig, StreamDsp};
use ecg_sim::{Device, Preset};
use ecg_types::{Lead, PulseKind};

const SECONDS: usize = 60;

struct Stream {
    name: &'static str,
    rate: u32,
    leads: usize,
    pleth: bool,
    /// One-second lead-major blocks.
    blocks: Vec<Vec<f32>>,
    /// One-second blocks of a synthetic plethysmogram (NU).
    pleth_blocks: Vec<Vec<f32>>,
}

impl Stream {
    fn new(name: &'static str, rate: u32, leads: Vec<Lead>, pleth: bool) -> Self {
        let mut dev = Device::new(Preset::NoisyNormalSinus.config(5, rate, leads.clone()))
            .expect("valid sim config");
        let blocks = (0..SECONDS)
            .map(|_| {
                let mut v = Vec::new();
                dev.generate(rate as usize, &mut v);
                v
            })
            .collect();
        // A pulse wave at 75 per minute: a fast rise and an exponential fall.
        let pleth_blocks = (0..SECONDS)
            .map(|s| {
                (0..rate as usize)
                    .map(|i| {
                        let t = s as f32 + i as f32 / rate as f32;
                        let ph = (t * 1.25).fract() / 1.25;
                        let rise = (ph / 0.12).min(1.0);
                        0.5 + rise * (-(ph - 0.12).max(0.0) / 0.3).exp()
                    })
                    .collect()
            })
            .collect();
        Self {
            name,
            rate,
            leads: leads.len(),
            pleth,
            blocks,
            pleth_blocks,
        }
    }

    fn samples(&self) -> f64 {
        (SECONDS * self.rate as usize * self.leads) as f64
    }
}

/// CPU time of this thread (s), from `/proc/thread-self/schedstat` (Linux); wall
/// time elsewhere. CPU time is what other processes on a shared machine do not
/// inflate.
fn cpu_now(start: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or_else(|| start.elapsed().as_secs_f64(), |ns| ns * 1e-9)
}

/// Best of `rounds` timings (thread CPU time) of `f`, each at least `min` long
/// (repeating `f`).
fn best(rounds: usize, min: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let (w0, c0) = (Instant::now(), cpu_now(start));
        let mut reps = 0usize;
        while w0.elapsed() < min {
            black_box(f());
            reps += 1;
        }
        best = best.min((cpu_now(start) - c0) / reps as f64);
    }
    best
}

/// Rhythms of the interleaved streams: the benchmarks' mix.
const RHYTHMS: [Preset; 6] = Preset::BENCH_MIX;

/// Samples per lead of an interleaved frame (200 ms at 500 Hz, the load test's).
const FRAME: usize = 100;

/// The pipeline's access pattern: see the module docs.
fn interleaved(streams: usize, secs: usize, rounds: usize) {
    let (rate, leads) = (500u32, Lead::STANDARD_12.len());
    let per_s = rate as usize / FRAME;
    let n_frames = SECONDS * per_s;
    // Lead-major frames of each rhythm.
    let signals: Vec<Vec<Vec<f32>>> = RHYTHMS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut dev = Device::new(p.config(11 + i as u64, rate, Lead::STANDARD_12.to_vec()))
                .expect("valid sim config");
            (0..n_frames)
                .map(|_| {
                    let mut v = Vec::with_capacity(FRAME * leads);
                    dev.generate(FRAME, &mut v);
                    v
                })
                .collect()
        })
        .collect();
    let cfg: LethalConfig = match std::env::var("LETHAL_CFG") {
        Ok(j) => serde_json::from_str(&j).unwrap(),
        Err(_) => LethalConfig::default(),
    };
    let mut dets: Vec<LethalDetector> = (0..streams)
        .map(|_| LethalDetector::new(&cfg, rate, leads, &[]))
        .collect();
    let mut dsps: Vec<StreamDsp> = (0..streams)
        .map(|_| StreamDsp::new(&DspConfig::default(), rate, leads))
        .collect();
    let off = vec![false; leads];
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    let mut k = 0usize;
    // `frames` frames of every stream, round-robin, through the detectors or the
    // chains; returns the thread CPU time.
    let mut run = |k: usize, frames: usize, lethal: bool| -> f64 {
        let start = Instant::now();
        let c0 = cpu_now(start);
        for f in k..k + frames {
            let f = f % n_frames;
            if lethal {
                for (i, d) in dets.iter_mut().enumerate() {
                    out.clear();
                    d.push_ecg(black_box(&signals[i % RHYTHMS.len()][f]), &off, &mut out);
                    black_box(out.len());
                }
            } else {
                for (i, d) in dsps.iter_mut().enumerate() {
                    ev.clear();
                    d.push(black_box(&signals[i % RHYTHMS.len()][f]), &off, &mut ev);
                    black_box(ev.len());
                }
            }
        }
        cpu_now(start) - c0
    };
    let warm = 20 * per_s;
    run(k, warm, true);
    run(k, warm, false);
    k += warm;
    println!(
        "{streams} streams x 12 leads 500 Hz, {FRAME}-sample frames round-robin; \
         thread CPU per stream-second (us)"
    );
    println!(
        "{:>5} {:>12} {:>12} {:>10}",
        "round", "lethal us/s", "lead-0 us/s", "ratio"
    );
    let stream_s = (streams * secs) as f64;
    let mut ratios = Vec::new();
    let (mut ls, mut ds) = (Vec::new(), Vec::new());
    for r in 1..=rounds.max(1) {
        let tl = run(k, secs * per_s, true) * 1e6 / stream_s;
        let td = run(k, secs * per_s, false) * 1e6 / stream_s;
        k += secs * per_s;
        println!("{r:>5} {tl:>12.1} {td:>12.1} {:>10.3}", tl / td);
        ratios.push(tl / td);
        ls.push(tl);
        ds.push(td);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median {:>11.1} {:>12.1} {:>10.3}   (lethal state {} B per stream)",
        med(&mut ls),
        med(&mut ds),
        med(&mut ratios),
        dets[0].state_bytes()
    );
    println!("ratio = lethal detector time / lead-0 StreamDsp time, same frames, same pattern");
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("interleaved") {
        let arg = |i: usize, d: usize| {
            std::env::args()
                .nth(i)
                .and_then(|s| s.parse().ok())
                .unwrap_or(d)
        };
        interleaved(arg(2, 1000), arg(3, 10), arg(4, 4));
        return;
    }
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let min = Duration::from_secs_f64(secs);
    let streams = [
        Stream::new(
            "3lead_250hz+pleth",
            250,
            vec![Lead::I, Lead::II, Lead::V1],
            true,
        ),
        Stream::new("12lead_500hz", 500, Lead::STANDARD_12.to_vec(), false),
    ];
    println!(
        "{:20} {:>16} {:>16} {:>10} {:>12} {:>12}",
        "stream", "lethal (Ms/s)", "lead-0 (Ms/s)", "ratio", "lethal B", "lead-0 B"
    );
    let only = std::env::var("LETHAL_BENCH_ONLY").ok();
    for s in streams
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| s.name.starts_with(o)))
    {
        let pulses: Vec<(PulseKind, u32)> = if s.pleth {
            vec![(PulseKind::Pleth, s.rate)]
        } else {
            Vec::new()
        };
        let cfg: LethalConfig = match std::env::var("LETHAL_CFG") {
            Ok(j) => serde_json::from_str(&j).unwrap(),
            Err(_) => LethalConfig::default(),
        };
        let mut det = LethalDetector::new(&cfg, s.rate, s.leads, &pulses);
        let mut dsp = StreamDsp::new(&DspConfig::default(), s.rate, s.leads);
        let off = vec![false; s.leads];
        let mut out = Vec::new();
        let mut ev = Vec::new();
        let t_lethal = best(5, min, || {
            out.clear();
            for (b, p) in s.blocks.iter().zip(&s.pleth_blocks) {
                if s.pleth {
                    det.push_pulse(0, p);
                }
                det.push_ecg(black_box(b), &off, &mut out);
            }
            out.len()
        });
        let t_dsp = best(5, min, || {
            ev.clear();
            for b in &s.blocks {
                dsp.push(black_box(b), &off, &mut ev);
            }
            ev.len()
        });
        let n = s.samples();
        println!(
            "{:20} {:>16.1} {:>16.1} {:>10.3} {:>12} {:>12}",
            s.name,
            n / t_lethal / 1e6,
            n / t_dsp / 1e6,
            t_lethal / t_dsp,
            det.state_bytes(),
            dsp.state_bytes()
        );
    }
    println!("ratio = lethal detector time / lead-0 StreamDsp time on the same stream");
}

//! Throughput of [`LethalDetector`] (every lead, pulse channel where the stream has
//! one) against the lead-0 DSP chain [`StreamDsp`] measured in the same run, for a
//! 3-lead 250 Hz ICU-like stream with a plethysmogram and a 12-lead 500 Hz stream.
//!
//! ```text
//! cargo run --release -p ecg-dsp --example lethal_bench [-- SECONDS_PER_MEASUREMENT]
//! ```
//!
//! Samples are counted as in `cargo bench --bench dsp` (ECG samples × leads; the
//! pulse samples are not counted but are processed). Each measurement pushes 60 s of
//! simulated signal in 1 s lead-major blocks into state that persists (a long-running
//! stream), repeatedly, and takes the best of five rounds of thread CPU time (the
//! machine is shared: wall time would count other processes). The ratio of the two,
//! measured in the same run, is the figure to quote. The state memory per stream is
//! printed too.
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

fn main() {
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

//! Throughput of each DSP stage and of `StreamDsp` (lead-0 chain and full chain), for a 1-lead 250 Hz and
//! a 12-lead 500 Hz simulated stream, in samples (per lead × leads) per second.
//!
//! `cargo bench --bench dsp -- --warm-up-time 1 --measurement-time 3`
//!
//! Each iteration pushes 10 s of signal in 1 s lead-major blocks into state that
//! persists across iterations (steady state, as a long-running stream). The state
//! memory of each stage for a 12-lead 500 Hz stream is printed to stderr before the
//! benchmarks run. Figures are recorded in docs/dsp.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecg_dsp::curve_length::CurveLengthDetector;
use ecg_dsp::filter::MonitorFilter;
use ecg_dsp::fir::{presets, FirFilter, FirSpec};
use ecg_dsp::qrs::QrsDetector;
use ecg_dsp::quality::QualityFilters;
use ecg_dsp::resample::Resampler;
use ecg_dsp::stream::{DspConfig, StreamDsp};
use ecg_dsp::window::{WindowSpec, Windower};
use ecg_sim::{Device, Preset};
use ecg_types::Lead;

const SECONDS: usize = 10;

struct Stream {
    name: &'static str,
    rate: u32,
    leads: Vec<Lead>,
    /// One-second lead-major blocks.
    blocks: Vec<Vec<f32>>,
}

impl Stream {
    fn new(name: &'static str, rate: u32, leads: Vec<Lead>) -> Self {
        let mut dev = Device::new(Preset::NoisyNormalSinus.config(5, rate, leads.clone()))
            .expect("valid sim config");
        let blocks = (0..SECONDS)
            .map(|_| {
                let mut v = Vec::new();
                dev.generate(rate as usize, &mut v);
                v
            })
            .collect();
        Self {
            name,
            rate,
            leads,
            blocks,
        }
    }

    fn samples(&self) -> u64 {
        (SECONDS * self.rate as usize * self.leads.len()) as u64
    }

    fn lead0(&self) -> Vec<Vec<f32>> {
        let n = self.rate as usize;
        self.blocks.iter().map(|b| b[..n].to_vec()).collect()
    }
}

fn streams() -> Vec<Stream> {
    vec![
        Stream::new("1lead_250hz", 250, vec![Lead::II]),
        Stream::new("12lead_500hz", 500, Lead::STANDARD_12.to_vec()),
    ]
}

fn design(spec: FirSpec, fs: f64) -> Vec<f64> {
    spec.design(fs).expect("preset designs at this rate")
}

fn fir(c: &mut Criterion) {
    let mut g = c.benchmark_group("fir");
    for s in streams() {
        let fs = f64::from(s.rate);
        let notch = presets::mains_notch(50.0, fs).expect("notch below nyquist");
        for (stage, taps) in [
            ("monitoring_bandpass", design(presets::monitoring(fs), fs)),
            ("baseline_highpass", design(presets::baseline_removal(), fs)),
            ("notch_50hz", design(notch, fs)),
        ] {
            let mut f = FirFilter::new(&taps, s.leads.len());
            let mut out = Vec::with_capacity(s.blocks[0].len() * 2);
            g.throughput(Throughput::Elements(s.samples()));
            g.bench_function(BenchmarkId::new(stage, s.name), |b| {
                b.iter(|| {
                    for blk in &s.blocks {
                        out.clear();
                        f.process(black_box(blk), &mut out);
                    }
                    out.len()
                })
            });
        }
    }
    g.finish();
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    for s in streams() {
        for to in [500u32, 400] {
            if to == s.rate {
                continue;
            }
            let mut r = Resampler::new(s.rate, to, s.leads.len());
            let mut out = Vec::with_capacity(s.blocks[0].len() * 3);
            g.throughput(Throughput::Elements(s.samples()));
            g.bench_function(BenchmarkId::new(format!("to_{to}hz"), s.name), |b| {
                b.iter(|| {
                    for blk in &s.blocks {
                        out.clear();
                        r.process(black_box(blk), &mut out);
                    }
                    out.len()
                })
            });
        }
    }
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("windower");
    for s in streams() {
        // A model at 400 Hz (resampling) and one at the stream's own rate.
        for to in [400u32, s.rate] {
            let spec = WindowSpec {
                window_s: 10.0,
                hop_s: 5.0,
                target_rate_hz: to,
                leads: s.leads.clone(),
            };
            let mut w = Windower::new(&spec, s.rate, &s.leads).expect("valid spec");
            let mut out = Vec::new();
            g.throughput(Throughput::Elements(s.samples()));
            g.bench_function(
                BenchmarkId::new(format!("10s_hop5s_to_{to}hz"), s.name),
                |b| {
                    b.iter(|| {
                        out.clear();
                        for blk in &s.blocks {
                            w.push(black_box(blk), &mut out);
                        }
                        out.len()
                    })
                },
            );
        }
    }
    g.finish();
}

fn qrs(c: &mut Criterion) {
    let mut g = c.benchmark_group("qrs_lead0");
    for s in streams() {
        // One detector on lead 0; throughput counts that lead's samples only.
        let lead0 = s.lead0();
        let mut d = QrsDetector::new(f64::from(s.rate));
        let mut out = Vec::new();
        g.throughput(Throughput::Elements((SECONDS * s.rate as usize) as u64));
        g.bench_function(s.name, |b| {
            b.iter(|| {
                out.clear();
                for blk in &lead0 {
                    d.push(black_box(blk), &mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

/// The atrial-activity values of one AF model window (30 s of a raw lead at the
/// model's 125 Hz and its beats), computed once per window and model; beside it, the
/// QRS detector over the same 30 s, measured in the same run as its baseline.
fn atrial(c: &mut Criterion) {
    const FS: u32 = 125;
    let mut dev = Device::new(Preset::NoisyNormalSinus.config(5, FS, vec![Lead::II]))
        .expect("valid sim config");
    let mut x = Vec::new();
    dev.generate(30 * FS as usize, &mut x);
    let mut d = QrsDetector::new(f64::from(FS));
    let mut beats = Vec::new();
    d.push(&x, &mut beats);
    let beats_s: Vec<f32> = beats
        .iter()
        .map(|&b| (b as f64 / f64::from(FS)) as f32)
        .collect();
    let mut g = c.benchmark_group("atrial_30s_window_125hz");
    g.throughput(Throughput::Elements(1));
    g.bench_function("atrial_features", |b| {
        b.iter(|| ecg_dsp::atrial::atrial_features(black_box(&x), f64::from(FS), &beats_s))
    });
    let mut out = Vec::new();
    g.bench_function("qrs_detector_same_30s", |b| {
        b.iter(|| {
            let mut d = QrsDetector::new(f64::from(FS));
            out.clear();
            d.push(black_box(&x), &mut out);
            out.len()
        })
    });
    g.finish();
}

fn monitor_filter(c: &mut Criterion) {
    let mut g = c.benchmark_group("monitor_filter_all_leads");
    for s in streams() {
        let mut fs: Vec<MonitorFilter> = (0..s.leads.len())
            .map(|_| MonitorFilter::new(f64::from(s.rate)))
            .collect();
        let n = s.rate as usize;
        let mut buf = Vec::new();
        g.throughput(Throughput::Elements(s.samples()));
        g.bench_function(s.name, |b| {
            b.iter(|| {
                for blk in &s.blocks {
                    buf.clear();
                    buf.extend_from_slice(black_box(blk));
                    MonitorFilter::process_leads(&mut fs, &mut buf, n);
                }
                buf[0]
            })
        });
    }
    g.finish();
}

fn quality_lead0(c: &mut Criterion) {
    let mut g = c.benchmark_group("quality_bands_detector2_lead0");
    for s in streams() {
        // Quality band filters + second detector on lead 0; lead-0 samples counted.
        let lead0 = s.lead0();
        let mut q = QualityFilters::new(f64::from(s.rate), 50.0);
        let mut d = CurveLengthDetector::new(f64::from(s.rate));
        let mut out = Vec::new();
        g.throughput(Throughput::Elements((SECONDS * s.rate as usize) as u64));
        g.bench_function(s.name, |b| {
            b.iter(|| {
                out.clear();
                for blk in &lead0 {
                    for &x in black_box(blk) {
                        let bands = q.step(x);
                        d.step(bands.qrs, &mut out);
                    }
                }
                out.len()
            })
        });
    }
    g.finish();
}

fn stream_dsp(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_dsp");
    for s in streams() {
        let n_leads = s.leads.len();
        let mut d = StreamDsp::new(&DspConfig::default(), s.rate, n_leads);
        let lead_off = vec![false; n_leads];
        let mut out = Vec::new();
        g.throughput(Throughput::Elements(s.samples()));
        g.bench_function(s.name, |b| {
            b.iter(|| {
                out.clear();
                for blk in &s.blocks {
                    d.push(black_box(blk), &lead_off, &mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

/// Prints the state memory of each stage for a 12-lead 500 Hz stream.
fn memory(_: &mut Criterion) {
    let fs = 500.0;
    let block = vec![0.0f32; 12 * 500];
    let mut out = Vec::new();
    let notch = presets::mains_notch(50.0, fs).expect("notch below nyquist");
    eprintln!("state per 12-lead 500 Hz stream (bytes; scratch is per thread, shared per design):");
    for (stage, taps) in [
        (
            "fir monitoring_bandpass",
            design(presets::monitoring(fs), fs),
        ),
        (
            "fir baseline_highpass",
            design(presets::baseline_removal(), fs),
        ),
        ("fir notch_50hz", design(notch, fs)),
    ] {
        let mut f = FirFilter::new(&taps, 12);
        f.process(&block, &mut out);
        eprintln!(
            "  {stage:<26} state {:>7}  scratch {:>6}  shared {:>6}",
            f.state_bytes(),
            f.scratch_bytes(),
            f.shared_bytes()
        );
    }
    for to in [400u32, 250] {
        let r = Resampler::new(500, to, 12);
        eprintln!(
            "  resampler 500->{to} Hz         state {:>7}  scratch {:>6}  shared {:>6}",
            r.state_bytes(),
            0,
            r.shared_bytes()
        );
    }
    let spec = WindowSpec {
        window_s: 10.0,
        hop_s: 5.0,
        target_rate_hz: 400,
        leads: Lead::STANDARD_12.to_vec(),
    };
    let mut w = Windower::new(&spec, 500, &Lead::STANDARD_12).expect("valid spec");
    let mut wins = Vec::new();
    w.push(&block, &mut wins);
    eprintln!(
        "  windower 10 s @ 400 Hz         state {:>7}  (window ring {} of it)",
        w.state_bytes(),
        w.window_bytes()
    );
    let mut dev = Device::new(Preset::NoisyNormalSinus.config(5, 500, Lead::STANDARD_12.to_vec()))
        .expect("valid sim config");
    let mut d = StreamDsp::new(&DspConfig::default(), 500, 12);
    let (mut events, mut sig) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        sig.clear();
        dev.generate(500, &mut sig);
        d.push(&sig, &[false; 12], &mut events);
    }
    eprintln!(
        "  StreamDsp after 60 s           state {:>7}",
        d.state_bytes()
    );
}

criterion_group!(
    benches,
    memory,
    fir,
    resample,
    window,
    qrs,
    atrial,
    monitor_filter,
    quality_lead0,
    stream_dsp
);
criterion_main!(benches);

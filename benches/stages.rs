//! Throughput of each stage on simulated streams, in samples (per lead) per second.
//!
//! `cargo bench --bench stages` — criterion prints time and throughput per group.
//! Compare figures within one run: these machines are noisy.
//!
//! `dsp_stream` counts every sample delivered (all leads) and runs the per-stream
//! chain the pipeline's analyzer runs (`StreamDsp::push`: lead 0 filtered and
//! analysed; models get raw signal and strips are filtered when cut).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecg_dsp::stream::{DspConfig, StreamDsp};
use ecg_ingest::codec::{self, Encoding};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, Lead, PatientId, StreamId};

fn source(rate: u32, leads: Vec<Lead>, frame_samples: usize) -> FrameSource {
    let dev =
        Device::new(Preset::NoisyNormalSinus.config(3, rate, leads)).expect("valid sim config");
    FrameSource::new(
        dev,
        StreamId::new("bench").expect("id"),
        DeviceId::new("bench").expect("id"),
        PatientId::new("bench").expect("id"),
        1_800_000_000_000_000,
        frame_samples,
        1000,
    )
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_decode");
    for (name, rate, leads) in [
        ("1lead_250hz_1s", 250u32, vec![Lead::I]),
        ("12lead_500hz_1s", 500, Lead::STANDARD_12.to_vec()),
    ] {
        let frame = source(rate, leads.clone(), rate as usize).next_frame();
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let bytes = codec::encode(&frame, enc);
            g.throughput(Throughput::Elements(frame.samples.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{enc:?}"), name),
                &bytes,
                |b, bytes| b.iter(|| codec::decode(black_box(bytes), None).expect("valid frame")),
            );
        }
    }
    g.finish();
}

fn dsp(c: &mut Criterion) {
    let mut g = c.benchmark_group("dsp_stream");
    for (name, rate, leads) in [
        ("1lead_250hz", 250u32, vec![Lead::II]),
        ("12lead_500hz", 500, Lead::STANDARD_12.to_vec()),
    ] {
        let n_leads = leads.len();
        let seconds = 60usize;
        let mut dev =
            Device::new(Preset::NoisyNormalSinus.config(5, rate, leads)).expect("valid sim config");
        // One-second blocks, lead-major, as frames deliver them.
        let blocks: Vec<Vec<f32>> = (0..seconds)
            .map(|_| {
                let mut v = Vec::new();
                dev.generate(rate as usize, &mut v);
                v
            })
            .collect();
        let lead_off = vec![false; n_leads];
        g.throughput(Throughput::Elements(
            (seconds * rate as usize * n_leads) as u64,
        ));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = StreamDsp::new(&DspConfig::default(), rate, n_leads);
                let mut out = Vec::new();
                for blk in &blocks {
                    s.push(black_box(blk), &lead_off, &mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, dsp);
criterion_main!(benches);

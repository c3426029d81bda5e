//! One input path: a record streamed frame by frame through the pipeline's
//! sequencer and analyzer gives its waveform model the same input tensors (the
//! waveform and the RR features), value for value, as `eval` and the training export
//! build from the same samples (`ecg_pipeline::inputs::record_inputs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use ecg_dsp::stream::DspConfig;
use ecg_pipeline::commit::Checkpoint;
use ecg_pipeline::events::Discard;
use ecg_pipeline::offline::frame_record;
use ecg_pipeline::{Analyzer, Sequencer, StreamSettings};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, Frame, Lead, ModelInput, PatientId, SampleRate, StreamId};

const T0: i64 = 1_800_000_000_000_000;

#[test]
fn pipeline_and_eval_build_identical_waveform_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/af-cnn/af_cnn.toml");
    let model = ecg_inference::Model::load(&dir, 1).expect("bundled af-cnn loads");
    let manifest = model.manifest().clone();
    let models = Arc::new(vec![model]);
    // 100 s of an AF patient's lead II at 300 Hz (the model reads lead I, or the
    // stream's first lead), 200 ms frames.
    let (fs, seconds) = (300u32, 100usize);
    let dev = Device::new(Preset::AtrialFibrillation.config(11, fs, vec![Lead::II])).unwrap();
    let mut src = FrameSource::new(
        dev,
        StreamId::new("bed-af").unwrap(),
        DeviceId::new("d").unwrap(),
        PatientId::new("p").unwrap(),
        T0,
        60,
        1000,
    );
    let frames: Vec<_> = (0..seconds * 5).map(|_| src.next_frame()).collect();
    // The pipeline's path.
    let telemetry = Arc::new(Discard);
    let mut seq = Sequencer::new(StreamSettings::default(), telemetry.clone());
    let mut analyzer = Analyzer::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        StreamSettings::default(),
        telemetry,
    );
    let mut pipeline: Vec<ModelInput> = Vec::new();
    for (k, chunk) in frames.chunks(37).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, f)| frame_record(f, (k * 37 + i) as i64))
            .collect();
        let mut cp = Checkpoint::new(k as u64);
        let s = seq.process(records, || T0, &mut cp);
        let a = analyzer.process(s.frames, &mut cp);
        pipeline.extend(a.inputs.into_iter().map(|s| s.input));
    }
    assert!(pipeline.len() >= 5, "{} windows", pipeline.len());
    // The same samples, as the wire carried them (µV counts back to mV).
    let sig: Vec<f32> = frames.iter().flat_map(Frame::samples_mv).collect();
    // eval's path, fed from the sample the pipeline's first window starts at: its
    // windows then start where the pipeline's do.
    let first = &pipeline[0];
    let from = SampleRate(fs).us_to_samples(first.start.0 - T0) as usize;
    let hop_s = manifest.hop_s.expect("af-cnn has a hop");
    let eval = ecg_pipeline::inputs::record_inputs(
        &manifest,
        hop_s,
        SampleRate(fs),
        &[Lead::II],
        &sig[from..],
        &DspConfig::default(),
    )
    .unwrap();
    let mut compared = 0;
    for (p, e) in pipeline.iter().zip(&eval) {
        assert_eq!(p.start.0 - first.start.0, e.start.0, "windows start alike");
        assert_eq!(p.samples_mv.len(), 3750);
        assert_eq!(p.leads, vec![Lead::II], "any_lead: the stream's first lead");
        assert_eq!(p.samples_mv, e.samples_mv, "window at {} µs", e.start.0);
        // The RR input: the pipeline emits the window once the rhythm windows have
        // covered it, so it has every beat of the window, as eval does.
        assert_eq!(p.features.len(), ecg_inference::RR_FEATURES);
        assert!(p.rr_s.len() >= 20, "{} RR intervals", p.rr_s.len());
        assert_eq!(p.rr_s, e.rr_s, "RR of the window at {} µs", e.start.0);
        assert_eq!(p.features, e.features, "features at {} µs", e.start.0);
        compared += 1;
    }
    assert!(compared >= 5, "{compared} windows compared");
}

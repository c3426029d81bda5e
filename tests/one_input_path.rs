//! One input path: a record streamed frame by frame through the pipeline's
//! sequencer and analyzer gives its waveform model the same input tensors (the
//! waveform and the RR features), value for value, as `eval` and the training export
//! build from the same samples (`ecg_pipeline::inputs::record_inputs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use ecg_inference::Model;

use ecg_dsp::stream::DspConfig;
use ecg_pipeline::commit::{Checkpoint, Holder};
use ecg_pipeline::events::Discard;
use ecg_pipeline::offline::frame_record;
use ecg_pipeline::{Analyzer, Sequencer, StreamSettings};
use ecg_sim::{Device, FrameSource, Preset};
use ecg_types::{DeviceId, DeviceTimeUs, Frame, Lead, ModelInput, PatientId, SampleRate, StreamId};

const T0: i64 = 1_800_000_000_000_000;

/// The bundled AF model.
fn af_cnn() -> Arc<Vec<Model>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/af-cnn/af_cnn.toml");
    Arc::new(vec![Model::load(&dir, 1).expect("bundled af-cnn loads")])
}

/// `n` 200 ms frames of an AF patient's lead II at 300 Hz (the model reads lead I, or
/// the stream's first lead).
fn af_frames(stream: &str, n: usize) -> Vec<Frame> {
    frames_of(Preset::AtrialFibrillation, 300, vec![Lead::II], stream, n)
}

/// `n` 200 ms frames of a simulated device.
fn frames_of(preset: Preset, fs: u32, leads: Vec<Lead>, stream: &str, n: usize) -> Vec<Frame> {
    let dev = Device::new(preset.config(11, fs, leads)).unwrap();
    let mut src = FrameSource::new(
        dev,
        StreamId::new(stream).unwrap(),
        DeviceId::new("d").unwrap(),
        PatientId::new("p").unwrap(),
        T0,
        fs as usize / 5,
        1000,
    );
    (0..n).map(|_| src.next_frame()).collect()
}

/// The pipeline's sequencer and analyzer for `models`.
struct Stages {
    seq: Sequencer,
    analyzer: Analyzer,
}

impl Stages {
    fn new(dsp: DspConfig, models: Arc<Vec<Model>>) -> Self {
        Self::with_settings(dsp, models, StreamSettings::default())
    }

    fn with_settings(dsp: DspConfig, models: Arc<Vec<Model>>, settings: StreamSettings) -> Self {
        let telemetry = Arc::new(Discard);
        Self {
            seq: Sequencer::new(settings.clone(), telemetry.clone()),
            analyzer: Analyzer::new(dsp, 10.0, models, settings, telemetry),
        }
    }

    /// One epoch: `frames`, the first at offset `offset`; the model inputs it emits.
    fn epoch(&mut self, epoch: u64, frames: &[Frame], offset: usize) -> Vec<ModelInput> {
        self.epoch_checkpoint(epoch, frames, offset).0
    }

    /// [`Stages::epoch`], with the epoch's checkpoint.
    fn epoch_checkpoint(
        &mut self,
        epoch: u64,
        frames: &[Frame],
        offset: usize,
    ) -> (Vec<ModelInput>, Checkpoint) {
        let records = frames
            .iter()
            .enumerate()
            .map(|(i, f)| frame_record(f, (offset + i) as i64))
            .collect();
        let mut cp = Checkpoint::new(epoch);
        let s = self.seq.process(records, || T0, &mut cp);
        let mut a = self.analyzer.drop_streams(&s.evicted);
        a.append(self.analyzer.process(s.frames, &mut cp));
        (a.inputs.into_iter().map(|s| s.input).collect(), cp)
    }
}

#[test]
fn pipeline_and_eval_build_identical_waveform_inputs() {
    compare(DspConfig::default());
}

/// Rhythm windows every 4 s: the model's windows (every 10 s) end between them, so
/// the analyzer holds each one for up to 4 s past its end, and must keep its first
/// beats meanwhile.
#[test]
fn identical_inputs_when_model_windows_end_between_rhythm_windows() {
    compare(DspConfig {
        hop_s: 4.0,
        ..DspConfig::default()
    });
}

fn compare(dsp: DspConfig) {
    let models = af_cnn();
    let manifest = models[0].manifest().clone();
    // 100 s, in epochs of 37 frames.
    let fs = 300u32;
    let frames = af_frames("bed-af", 500);
    // The pipeline's path.
    let mut stages = Stages::new(dsp.clone(), models);
    let mut pipeline: Vec<ModelInput> = Vec::new();
    for (k, chunk) in frames.chunks(37).enumerate() {
        pipeline.extend(stages.epoch(k as u64, chunk, k * 37));
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
        &dsp,
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
        assert_eq!(p.features.len(), manifest.input.rr_len());
        assert!(p.rr_s.len() >= 20, "{} RR intervals", p.rr_s.len());
        assert_eq!(p.rr_s, e.rr_s, "RR of the window at {} µs", e.start.0);
        // The beats' times, which the AF episode tracker dates offsets by: the same,
        // from the window's start, and the RR intervals are between them.
        assert_eq!(
            p.beats_s, e.beats_s,
            "beats of the window at {} µs",
            e.start.0
        );
        assert_eq!(p.beats_s.len(), p.rr_s.len() + 1);
        assert!(p.beats_s[0] >= 0.0 && p.beats_s[p.beats_s.len() - 1] < 30.0);
        for (b, r) in p.beats_s.windows(2).zip(&p.rr_s) {
            assert!((b[1] - b[0] - r).abs() < 1e-4, "{b:?} {r}");
        }
        assert_eq!(p.features, e.features, "features at {} µs", e.start.0);
        assert_eq!(p.quality_ok, e.quality_ok, "quality at {} µs", e.start.0);
        // One PVC flag per beat on both paths (which beats are flagged may differ:
        // the classifier learns from the stream's history, and eval's starts later).
        for (x, what) in [(p, "pipeline"), (e, "eval")] {
            assert_eq!(
                x.wide_pvc.len(),
                x.beats_s.len(),
                "{what}: a PVC flag per beat at {} µs",
                e.start.0
            );
        }
        compared += 1;
    }
    assert!(compared >= 5, "{compared} windows compared");
}

/// The 12-lead model (a waveform model that reads no beats) on a noisy 12-lead
/// stream: the same tensors and the same quality verdicts as eval, the verdict judged
/// on the whole window once the rhythm windows cover it. Its manifest's hop is cut
/// from 300 s to 10 s so that 100 s give several windows.
#[test]
fn twelve_lead_windows_and_their_quality_are_eval_s() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ecg12-attia");
    let text = std::fs::read_to_string(dir.join("ecg12_attia.toml")).unwrap();
    let onnx = dir.join("ecg12_attia.onnx");
    let edited = text.replace("hop_s = 300.0", "hop_s = 10.0").replace(
        "onnx = \"ecg12_attia.onnx\"",
        &format!("onnx = {:?}", onnx.display().to_string()),
    );
    assert_ne!(edited, text, "the manifest was edited");
    let tmp = std::env::temp_dir().join(format!("ecg12-hop10-{}.toml", std::process::id()));
    std::fs::write(&tmp, edited).unwrap();
    let model = Model::load(&tmp, 1).expect("edited ecg12 manifest loads");
    std::fs::remove_file(&tmp).unwrap();
    let manifest = model.manifest().clone();
    let leads = manifest.input.leads.clone();
    let fs = 500u32;
    // Sinus rhythm with a 1 s burst of ±3 mV square wave on every lead every 23 s, so
    // bursts fall at every phase of the 10 s windows, near their ends too.
    let mut frames = frames_of(Preset::NormalSinus, fs, leads.clone(), "bed-12", 500);
    for f in frames
        .iter_mut()
        .filter(|f| f.seq % 115 >= 100 && f.seq % 115 < 105)
    {
        for (i, c) in f.samples.iter_mut().enumerate() {
            *c += if (i / 10) % 2 == 0 { 3000 } else { -3000 };
        }
    }
    let mut stages = Stages::new(DspConfig::default(), Arc::new(vec![model]));
    let mut pipeline: Vec<ModelInput> = Vec::new();
    for (k, chunk) in frames.chunks(37).enumerate() {
        pipeline.extend(stages.epoch(k as u64, chunk, k * 37));
    }
    assert!(pipeline.len() >= 5, "{} windows", pipeline.len());
    // Lead-major samples of the whole stream.
    let per_frame = fs as usize / 5;
    let mut sig = vec![0.0f32; leads.len() * per_frame * frames.len()];
    let n = per_frame * frames.len();
    for (k, f) in frames.iter().enumerate() {
        for (i, v) in f.samples_mv().into_iter().enumerate() {
            let (l, j) = (i / per_frame, i % per_frame);
            sig[l * n + k * per_frame + j] = v;
        }
    }
    let first = &pipeline[0];
    let from = SampleRate(fs).us_to_samples(first.start.0 - T0) as usize;
    let from_leads: Vec<f32> = (0..leads.len())
        .flat_map(|l| sig[l * n + from..(l + 1) * n].iter().copied())
        .collect();
    let eval = ecg_pipeline::inputs::record_inputs(
        &manifest,
        10.0,
        SampleRate(fs),
        &leads,
        &from_leads,
        &DspConfig::default(),
    )
    .unwrap();
    let mut poor = 0;
    for (i, (p, e)) in pipeline.iter().zip(&eval).enumerate() {
        assert_eq!(p.start.0 - first.start.0, e.start.0, "windows start alike");
        assert_eq!(p.samples_mv, e.samples_mv, "window at {} µs", e.start.0);
        // eval's chain starts at the first window's first sample, without the
        // pipeline's warm-up: its first verdict sees its filters settle.
        if i > 0 {
            assert_eq!(p.quality_ok, e.quality_ok, "quality at {} µs", e.start.0);
        }
        assert!(
            p.rr_s.is_empty() && p.features.is_empty(),
            "no beats for a model that reads none"
        );
        poor += usize::from(!p.quality_ok);
    }
    assert!(pipeline.len().min(eval.len()) >= 5);
    assert!(
        poor >= 2 && poor < pipeline.len(),
        "{poor} poor windows: both verdicts occur"
    );
    println!(
        "{} windows compared, {poor} of poor quality",
        pipeline.len().min(eval.len())
    );
}

/// A window the analyzer holds (waiting for the rhythm windows to cover it) is not
/// lost when the stream restarts after a gap: it is emitted with the beats found so
/// far. Streams that stop at several points around a window's end, then come back
/// two minutes later.
#[test]
fn a_held_window_is_emitted_when_the_stream_restarts() {
    let models = af_cnn();
    let all = af_frames("bed-gap", 440);
    let mut flushed = 0;
    for stop in (400..=436).step_by(2) {
        // 200 ms frames up to `stop`, then the next one two minutes late.
        let mut frames = all[..stop].to_vec();
        let mut back = all[stop].clone();
        back.t0 = DeviceTimeUs(back.t0.0 + 120_000_000);
        frames.push(back);
        let last_end = all[stop].t0.0;
        let mut stages = Stages::new(DspConfig::default(), models.clone());
        let mut newest = Vec::new();
        let mut emitted: Vec<ModelInput> = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            emitted.extend(stages.epoch(k as u64, std::slice::from_ref(f), k));
            newest.push(emitted.iter().map(|w| w.end.0).max().unwrap_or(0));
        }
        let (before, after) = (newest[stop - 1], newest[stop]);
        // Windows end every 10 s; after the restart, the newest window whose samples
        // all arrived more than a second before the gap has been emitted.
        assert!(
            after > last_end - 11_000_000 && after <= last_end,
            "stop {stop}: newest window ends at {after}, the signal at {last_end}"
        );
        if after > before {
            flushed += 1;
            let w = emitted.iter().find(|w| w.end.0 == after).unwrap();
            assert_eq!(w.samples_mv.len(), 3750);
            assert!(w.rr_s.len() >= 20, "{} RR intervals", w.rr_s.len());
            assert_eq!(w.features.len(), models[0].manifest().input.rr_len());
        }
    }
    assert!(flushed >= 1, "no stop fell while a window was held");
}

/// A window the analyzer holds is not lost when its stream stops for good:
/// when the stream is evicted (`idle_evict_s` of silence), the window goes out first,
/// judged and with the beats found so far, and only once. Before that, silence
/// alone releases nothing (a stalled broker must not cut windows of live streams
/// short), not even after `commit_hold_s`.
#[test]
fn a_held_window_is_emitted_when_the_stream_is_evicted() {
    let models = af_cnn();
    let all = af_frames("bed-quiet", 440);
    let settings = |evict_s: f32| StreamSettings {
        commit_hold_s: 1.0,
        idle_evict_s: evict_s,
        ..StreamSettings::default()
    };
    // Per stop and setting: the stages after the frames up to `stop`, and the newest
    // window end emitted so far.
    let mut runs = Vec::new();
    for stop in (400..=436).step_by(2) {
        for evict_s in [1.0, 300.0] {
            let mut stages =
                Stages::with_settings(DspConfig::default(), models.clone(), settings(evict_s));
            let mut newest = 0;
            for (k, f) in all[..stop].iter().enumerate() {
                let inputs = stages.epoch(k as u64, std::slice::from_ref(f), k);
                newest = inputs.iter().map(|w| w.end.0).fold(newest, i64::max);
            }
            // At once, an epoch without the stream's frames releases nothing.
            assert!(
                stages.epoch(stop as u64, &[], stop).is_empty(),
                "stop {stop}"
            );
            runs.push((stop, evict_s, stages, newest));
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut released = 0;
    for (stop, evict_s, mut stages, before) in runs {
        let last_end = all[stop].t0.0;
        let late = stages.epoch(stop as u64 + 1, &[], stop);
        let again = stages.epoch(stop as u64 + 2, &[], stop);
        assert!(again.is_empty(), "stop {stop}: a window emitted twice");
        if evict_s > 1.0 {
            assert!(
                late.is_empty(),
                "stop {stop}: released while the stream is held"
            );
            continue;
        }
        let after = late.iter().map(|w| w.end.0).fold(before, i64::max);
        // As at a restart: the newest window whose samples all arrived more than a
        // second before the stream fell silent has been emitted.
        assert!(
            after > last_end - 11_000_000 && after <= last_end,
            "stop {stop}: newest window ends at {after}, the signal at {last_end}"
        );
        if let Some(w) = late.first() {
            released += 1;
            assert_eq!(late.len(), 1);
            assert_eq!(w.samples_mv.len(), 3750);
            assert!(w.rr_s.len() >= 20, "{} RR intervals", w.rr_s.len());
            assert_eq!(w.features.len(), models[0].manifest().input.rr_len());
        }
    }
    assert!(released >= 1, "no stop fell while a window was held");
}

/// A stream that stops while it holds a model window keeps its partition's committed
/// offset behind that window however long it is silent, until the window is
/// published: a crash before then replays it. Through a stall of the whole partition
/// (no frames at all) it is not published; once the partition goes on with another
/// stream for `commit_hold_s` of live time, it is, once, and the hold goes with it.
#[test]
fn a_stopped_stream_s_held_window_is_kept_until_its_partition_goes_on() {
    let models = af_cnn();
    let stopping = af_frames("bed-stops", 440);
    let going_on = frames_of(Preset::NormalSinus, 300, vec![Lead::II], "bed-goes-on", 20);
    let settings = StreamSettings {
        commit_hold_s: 1.0,
        idle_evict_s: 300.0,
        ..StreamSettings::default()
    };
    let analyzer_hold = |cp: &Checkpoint| {
        cp.holds
            .get(&Holder::Analyzer)
            .and_then(|h| h.get(&0))
            .copied()
    };
    // Per stop: the stages after the stopping stream's frames up to `stop` (at
    // offsets 0..stop), and whether its last epoch left a window held (the hold sits
    // at or before that window's first frame, 30 s = 150 frames back).
    let mut runs = Vec::new();
    for stop in (400..=436).step_by(2) {
        let mut stages =
            Stages::with_settings(DspConfig::default(), models.clone(), settings.clone());
        for (k, f) in stopping[..stop].iter().enumerate() {
            stages.epoch(k as u64, std::slice::from_ref(f), k);
        }
        runs.push((stop, stages));
    }
    // A stall: nothing at all for longer than `commit_hold_s` and the live gap.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut holding = Vec::new();
    for (stop, stages) in &mut runs {
        let (inputs, cp) = stages.epoch_checkpoint(*stop as u64, &[], *stop);
        assert!(inputs.is_empty(), "stop {stop}: released in a stall");
        let hold = analyzer_hold(&cp);
        if let Some(h) = hold {
            assert!(h < (*stop - 150) as i64, "stop {stop}: hold at {h}");
        }
        holding.push(hold.is_some());
    }
    // The partition goes on: another stream's frames, 100 ms of wall time apart.
    let mut released = vec![Vec::new(); runs.len()];
    for (k, f) in going_on.iter().enumerate() {
        for (i, (stop, stages)) in runs.iter_mut().enumerate() {
            let epoch = (*stop + 1 + k) as u64;
            let (inputs, cp) = stages.epoch_checkpoint(epoch, std::slice::from_ref(f), *stop + k);
            if !inputs.is_empty() {
                assert!(
                    k >= 5,
                    "stop {stop}: released after {k} frames of the other stream"
                );
                assert!(released[i].is_empty(), "stop {stop}: released twice");
                released[i] = inputs;
            }
            let hold = analyzer_hold(&cp);
            if released[i].is_empty() && holding[i] {
                assert!(
                    hold.is_some_and(|h| h < *stop as i64),
                    "stop {stop}: the held window's frames let go at frame {k}"
                );
            } else {
                // Only the other stream's frames (from offset `stop`) are held.
                assert!(
                    hold.is_none_or(|h| h >= *stop as i64),
                    "stop {stop}: still held at {hold:?} after frame {k}"
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (i, (stop, _)) in runs.iter().enumerate() {
        assert_eq!(
            holding[i],
            !released[i].is_empty(),
            "stop {stop}: held {} released {}",
            holding[i],
            released[i].len()
        );
        if let Some(w) = released[i].first() {
            assert_eq!(released[i].len(), 1);
            assert_eq!(w.stream.as_str(), "bed-stops");
            assert_eq!(w.samples_mv.len(), 3750);
            assert!(w.rr_s.len() >= 20, "{} RR intervals", w.rr_s.len());
        }
    }
    assert!(
        holding.iter().any(|&h| h),
        "no stop fell while a window was held"
    );
    assert!(
        holding.iter().any(|&h| !h),
        "every stop fell while a window was held"
    );
}

//! cardiostream's offline evaluation tools (`cardiostream eval …` and `cardiostream
//! model compare`): the DSP chain, the pipeline's per-stream code and the models run
//! on annotated records, offline, and scored against their reference annotations.
//! The binary only parses the command line (the subcommands' arguments are here:
//! [`EvalCommand`], [`compare::CompareArgs`]) and calls [`run`] or [`compare::run`].
//!
//! - [`qrs`]: streaming QRS detection scored beat by beat (ANSI/AAMI EC57);
//! - [`af`]: rhythm class of CinC 2017-style records, by the active AF model, another
//!   model or the RR rule;
//! - [`episodes`]: AF episodes of continuous recordings, scored with the EC57 episode
//!   statistics, optionally with the noise stress test's noise added ([`nst`]);
//! - [`alarms`]: lethal-arrhythmia alarms of CinC 2015-style records and their
//!   challenge score;
//! - [`export`]: a model's inputs for every record of a folder, for training;
//! - [`compare`]: agreement of a shadow model with the active one.

pub mod af;
pub mod alarms;
pub mod compare;
pub mod episodes;
pub mod export;
pub mod nst;
pub mod qrs;

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use ecg_dsp::rhythm::rr_intervals;
use ecg_dsp::stream::{DspConfig, DspEvent, StreamDsp};
use ecg_inference::Manifest;
use ecg_ingest::replay::RecordSource;
use ecg_pipeline::offline::frame_record;
use ecg_pipeline::Processor;
use ecg_types::{Finding, Lead, ModelInput, PatientId, SampleRate, StreamId};

/// The active AF model of a set of models: the one the pipeline raises AF findings
/// from and tracks AF episodes with (`eval af` classifies with it by default, `eval
/// af-episodes` scores its episodes).
///
/// Returns its index in `models` (the scorer's model index) with it.
///
/// # Errors
/// When no active model raises atrial fibrillation findings.
pub(crate) fn active_af_model(
    models: &[ecg_inference::Model],
) -> anyhow::Result<(usize, &ecg_inference::Model)> {
    models
        .iter()
        .enumerate()
        .find(|(_, m)| {
            m.manifest().mode == ecg_inference::ModelMode::Active
                && m.manifest()
                    .raises(ecg_types::Condition::AtrialFibrillation)
        })
        .context("no active model raises atrial_fibrillation findings")
}

/// Device time of a replayed record's first sample (µs since the epoch).
pub const T0_US: i64 = 1_800_000_000_000_000;

/// Streams a WFDB record through the pipeline's stages as a gateway would send it
/// (200-sample frames from [`T0_US`], protobuf wire format), `batch` frames per call
/// of `p`, handing each call's findings to `each`; at its end, the findings of the
/// windows its stream still held ([`Processor::release_held`]).
///
/// # Errors
/// When the record cannot be replayed or a frame is dead-lettered.
pub(crate) fn replay_record(
    rec: &ecg_ingest::wfdb::Record,
    p: &mut Processor,
    batch: usize,
    each: impl FnMut(Vec<Finding>),
) -> anyhow::Result<()> {
    replay(
        RecordSource::new(rec, T0_US, 200, None)?,
        &rec.name,
        p,
        batch,
        each,
    )
}

/// [`replay_record`] of a record's frames as `src` makes them (a record held whole,
/// or read from its files as it goes); `name` names the record in errors.
///
/// # Errors
/// When the record cannot be read or a frame is dead-lettered.
pub(crate) fn replay(
    mut src: RecordSource,
    name: &str,
    p: &mut Processor,
    batch: usize,
    mut each: impl FnMut(Vec<Finding>),
) -> anyhow::Result<()> {
    let mut offset = 0i64;
    loop {
        let mut records = Vec::with_capacity(batch);
        while records.len() < batch {
            let Some(f) = src
                .next_frame()
                .with_context(|| format!("reading record {name}"))?
            else {
                break;
            };
            records.push(frame_record(&f, offset));
            offset += 1;
        }
        if records.is_empty() {
            // The stream stops with the record: the windows it still holds go out,
            // as the pipeline releases them when it evicts a stream.
            each(p.release_held()?.findings);
            return Ok(());
        }
        let out = p.process(records);
        anyhow::ensure!(
            out.dead_letters.is_empty(),
            "record {name}: frames dead-lettered: {}",
            out.dead_letters[0].reason
        );
        each(out.findings);
    }
}

/// Evaluation subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Streaming QRS detection on every WFDB record in a folder as the pipeline finds
    /// a stream's beats (its first two ECG leads where it has two, else its one), fed
    /// frame by frame, scored beat by beat against the `.atr` reference annotations.
    Qrs(qrs::QrsArgs),
    /// Rhythm class (N, A, O, ~) of every record of a CinC 2017-style folder, from the
    /// active AF model (or `--model`, or the RR rule with `--rule`); scored against
    /// REFERENCE.csv.
    Af(af::AfArgs),
    /// Writes a model's inputs for every record of a folder (the training input of
    /// the bundled models), built by the pipeline's one model-input builder.
    ExportInputs(export::ExportArgs),
    /// AF episodes of every WFDB record with rhythm annotations, found by the
    /// pipeline's per-stream code and its AF episode tracker; `record,start_s,end_s`,
    /// scored with the ANSI/AAMI EC57 episode and duration statistics.
    AfEpisodes(episodes::EpisodesArgs),
    /// Lethal-arrhythmia alarms of every CinC 2015-style alarm record, raised by the
    /// pipeline's per-stream code from the data up to the alarm: `record,alarm`.
    /// Never reads the verdicts.
    Alarms(alarms::AlarmsArgs),
    /// The challenge score of `eval alarms` answers against the experts' verdicts,
    /// overall and per alarm type, with bootstrap CIs.
    AlarmsScore(alarms::ScoreArgs),
}

/// Runs an evaluation subcommand.
///
/// # Errors
/// When records cannot be read or the output cannot be written.
pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Qrs(args) => qrs::run(&args),
        EvalCommand::Af(args) => af::run(&args),
        EvalCommand::ExportInputs(args) => export::run(&args),
        EvalCommand::AfEpisodes(args) => episodes::run(&args),
        EvalCommand::Alarms(args) => alarms::run(&args),
        EvalCommand::AlarmsScore(args) => alarms::score(&args),
    }
}

/// Beats of a single-lead signal (mV) found by the streaming DSP chain, fed in
/// one-second blocks, as the pipeline finds them (beats of closed rhythm windows).
pub fn stream_beats(signal_mv: &[f32], fs: u32, cfg: &DspConfig) -> Vec<u64> {
    let mut dsp = StreamDsp::new(cfg, fs, 1);
    let mut events = Vec::new();
    let mut beats: Vec<u64> = Vec::new();
    let block = fs.max(1) as usize;
    for chunk in signal_mv.chunks(block) {
        events.clear();
        dsp.push(chunk, &[false], &mut events);
        for ev in &events {
            if let DspEvent::Window(w) = ev {
                let last = beats.last().copied();
                beats.extend(w.beats_after(last));
            }
        }
    }
    beats
}

/// RR intervals (s) between consecutive beats below `end_sample`.
pub fn rr_before(beats: &[u64], end_sample: u64, fs: u32) -> Vec<f32> {
    let b: Vec<u64> = beats.iter().copied().filter(|&b| b < end_sample).collect();
    rr_intervals(&b, f64::from(fs))
}

/// `record -> label` from a folder's `REFERENCE.csv`, empty when it has none.
pub fn read_reference(db: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(db.join("REFERENCE.csv"))
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let (r, c) = l.split_once(',')?;
                    Some((r.trim().to_owned(), c.trim().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A record's result, or `None` with the reason on standard error: a record that
/// cannot be read or replayed (a database's header without its signal file, a record
/// with no ECG signal) is left out and the others are still scored.
pub(crate) fn unless_unreadable<T>(name: &str, result: anyhow::Result<T>) -> Option<T> {
    result.map_err(|e| eprintln!("{name}: skipped, {e:#}")).ok()
}

/// Record names (`*.hea` stems) of a folder, sorted.
pub fn record_names(db: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(db)
        .with_context(|| format!("reading {}", db.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "hea").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// A window of simulated normal sinus rhythm shaped for `manifest`'s input, for
/// `model check`.
///
/// # Errors
/// When the simulator rejects the configuration.
pub fn synthetic_window(manifest: &Manifest) -> anyhow::Result<ModelInput> {
    let input = &manifest.input;
    let (fs, leads) = match input.kind {
        ecg_inference::InputKind::AfRrV1 => (250u32, vec![Lead::II]),
        ecg_inference::InputKind::Waveform => (input.sample_rate_hz, input.leads.clone()),
    };
    let n = SampleRate(fs).us_to_samples(ecg_types::seconds_to_us(f64::from(manifest.window_s)));
    let mut dev = ecg_sim::Device::new(ecg_sim::Preset::NormalSinus.config(1, fs, leads.clone()))
        .context("simulating a window")?;
    let mut sig = Vec::with_capacity(n as usize * leads.len());
    dev.generate(n as usize, &mut sig);
    let inputs = ecg_pipeline::inputs::record_inputs(
        manifest,
        manifest.window_s,
        SampleRate(fs),
        &leads,
        &sig,
        &DspConfig::default(),
    )?;
    let mut w = inputs.into_iter().next().context("no window")?;
    w.stream = StreamId::new("model-check").context("stream id")?;
    w.patient = PatientId::new("synthetic").context("patient id")?;
    Ok(w)
}

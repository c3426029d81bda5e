//! `cardiostream eval …`: the DSP chain and the models on annotated records, offline.

pub mod af;
pub mod compare;
pub mod qrs;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use ecg_dsp::rhythm::{af_features, rr_intervals, AF_FEATURES};
use ecg_dsp::stream::{DspConfig, DspEvent, StreamDsp};
use ecg_inference::Manifest;
use ecg_types::{DeviceTimeUs, Lead, PatientId, SampleRate, StreamId, Window};

/// Evaluation subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Streaming QRS detection on lead 0 of every WFDB record in a folder, fed frame
    /// by frame, scored beat by beat against the `.atr` reference annotations.
    Qrs(qrs::QrsArgs),
    /// Rhythm class (N, A, O, ~) of every record of a CinC 2017-style folder, from RR
    /// irregularity or, with `--model`, from an AF model; scored against REFERENCE.csv.
    Af(af::AfArgs),
    /// Writes the `af_rr_v1` feature vector of every record of a CinC 2017-style
    /// folder (the training input of the bundled AF model), computed from the beats
    /// of the streaming DSP chain exactly as the pipeline computes them.
    AfFeatures {
        /// Folder with `*.hea` records and optionally `REFERENCE.csv`.
        #[arg(long)]
        db: PathBuf,
        /// Output CSV: `record,label,f0,…`.
        #[arg(long)]
        out: PathBuf,
        /// Seconds of each record used (the model window).
        #[arg(long, default_value_t = 30.0)]
        window_s: f32,
    },
}

/// Runs an evaluation subcommand.
///
/// # Errors
/// When records cannot be read or the output cannot be written.
pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Qrs(args) => qrs::run(&args),
        EvalCommand::Af(args) => af::run(&args),
        EvalCommand::AfFeatures { db, out, window_s } => af_features_cmd(&db, &out, window_s),
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

fn af_features_cmd(db: &Path, out: &Path, window_s: f32) -> anyhow::Result<()> {
    let reference = read_reference(db);
    let cfg = DspConfig::default();
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let header: Vec<String> = (0..AF_FEATURES).map(|i| format!("f{i}")).collect();
    writeln!(w, "record,label,n_rr,{}", header.join(","))?;
    let names = record_names(db)?;
    let mut n = 0usize;
    for name in &names {
        let rec = match ecg_ingest::wfdb::read_record(&db.join(name)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        let fs = rec.fs.round() as u32;
        let sig = rec.physical(0);
        let beats = stream_beats(&sig, fs, &cfg);
        let end = ((f64::from(window_s) * f64::from(fs)) as u64).min(sig.len() as u64);
        let rr = rr_before(&beats, end, fs);
        let f = af_features(&rr);
        let label = reference.get(name).map(String::as_str).unwrap_or("");
        let vals: Vec<String> = f.iter().map(|v| format!("{v:.6}")).collect();
        writeln!(w, "{name},{label},{},{}", rr.len(), vals.join(","))?;
        n += 1;
    }
    w.flush()?;
    eprintln!(
        "wrote features of {n} of {} records to {}",
        names.len(),
        out.display()
    );
    Ok(())
}

/// A window of simulated normal sinus rhythm shaped for `manifest`'s input, for
/// `model check`.
///
/// # Errors
/// When the simulator rejects the configuration.
pub fn synthetic_window(manifest: &Manifest) -> anyhow::Result<Window> {
    let input = &manifest.input;
    let (fs, leads) = match input.kind {
        ecg_inference::InputKind::AfRrV1 => (250u32, vec![Lead::II]),
        ecg_inference::InputKind::Waveform => (input.sample_rate_hz, input.leads.clone()),
    };
    let n = (f64::from(manifest.window_s) * f64::from(fs)).round() as usize;
    let mut dev = ecg_sim::Device::new(ecg_sim::Preset::NormalSinus.config(1, fs, leads.clone()))
        .context("simulating a window")?;
    let mut sig = Vec::with_capacity(n * leads.len());
    dev.generate(n, &mut sig);
    let lead0 = &sig[..n];
    let beats = stream_beats(lead0, fs, &DspConfig::default());
    let rr = rr_before(&beats, n as u64, fs);
    let features = match input.kind {
        ecg_inference::InputKind::AfRrV1 => af_features(&rr).to_vec(),
        ecg_inference::InputKind::Waveform => Vec::new(),
    };
    Ok(Window {
        stream: StreamId::new("model-check").context("stream id")?,
        patient: PatientId::new("synthetic").context("patient id")?,
        start: DeviceTimeUs(0),
        end: DeviceTimeUs(SampleRate(fs).samples_to_us(n as u64)),
        sample_rate: SampleRate(fs),
        leads,
        samples_mv: sig,
        rr_s: rr,
        features,
        quality_ok: true,
    })
}

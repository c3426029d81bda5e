//! `cardiostream eval af`: rhythm class (N, A, O, ~) of every record of a CinC
//! 2017-style folder, from the active AF model (the default), another AF model, or
//! the streaming DSP chain's RR rule.
//!
//! **Model** (the default: the active AF model of the models directory, the one the
//! pipeline raises AF findings from; or `--model MANIFEST`, feature or waveform): the
//! record's windows built by the pipeline's one model-input builder
//! (`ecg_pipeline::inputs::record_inputs`: windows from the first sample every model
//! hop, a record shorter than a window zero-padded), scored whatever the
//! signal-quality gate says, the class probabilities averaged over the windows; the
//! label is their argmax. The model's own `~` class handles noise by default;
//! `--quality-gate` also sends records whose first window mostly fails the DSP quality
//! gate to `~`.
//!
//! **Rule** (`--rule`, no model; the DSP stage's classifier, kept as a baseline): each
//! record is fed to [`StreamDsp`] in one-second blocks (10 s windows, 5 s hop; records
//! shorter than 10 s get one window as long as the record allows). Then:
//! 1. `~` when fewer than [`AfRule::min_good_frac`] of the windows pass the signal
//!    quality gate (or there is no window at all);
//! 2. `A` when at least [`AfRule::min_af_frac`] of the good windows are called AF by
//!    the RR-irregularity rule (`DspConfig::af`), or when the RR series of the good
//!    windows, taken together, is irregular with `nmad_drr ≥ AfRule::record_nmad`;
//! 3. `O` when the good windows show another abnormality: mean heart rate below
//!    `o_brady_bpm` or above `o_tachy_bpm`, at least `o_pvc_per_min` PVCs per
//!    minute, or an irregularity (`nmad_drr`) or ectopic share (`frac_dev20`) above
//!    `o_nmad` / `o_dev20` that falls short of AF;
//! 4. otherwise `N`.
//!
//! Until stop 37 the rule was the default and a model needed `--model`: a user who
//! ran `eval af --db DIR --out FILE` measured the RR rule, not the model the pipeline
//! runs.
//!
//! `--split heldout` keeps only the records the AF model held out from training
//! (SHA-256 of the record name, as a big integer, mod 5 == 0; `models/af-rr/train.py`),
//! `--split train` the others. The rule's thresholds were tuned on `train` only.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ecg_dsp::rhythm::{af_features, rr_irregular_with};
use ecg_dsp::stream::{DspConfig, DspEvent, RhythmWindow, StreamDsp};
use ecg_types::{Condition, FindingStatus, Lead, SampleRate};

use super::{read_reference, record_names};

/// Which records to classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Every record.
    All,
    /// The AF model's held-out records (SHA-256 of the name mod 5 == 0).
    Heldout,
    /// The others (the model's training records; the rule was tuned on these).
    Train,
}

/// Arguments of `eval af`.
#[derive(Debug, clap::Args)]
pub struct AfArgs {
    /// CinC 2017-style folder: `*.hea` records, optionally `REFERENCE.csv`.
    #[arg(long)]
    pub db: PathBuf,
    /// Output file of `record,label` lines.
    #[arg(long)]
    pub out: PathBuf,
    /// Classify with this model manifest instead of the active AF model.
    #[arg(long, conflicts_with_all = ["models", "rule"])]
    pub model: Option<PathBuf>,
    /// Models directory (`DIR/*/*.toml`) whose active AF model classifies. Default:
    /// `models` in the working directory if there is one, else the bundled models of
    /// the source tree the binary was built from.
    #[arg(long, conflicts_with = "rule")]
    pub models: Option<PathBuf>,
    /// Classify by the DSP stage's RR-irregularity rule instead of a model (a
    /// baseline; no ONNX Runtime needed).
    #[arg(long)]
    pub rule: bool,
    /// Records to classify: all, the AF model's held-out split, or the rest.
    #[arg(long, value_enum, default_value_t = Split::All)]
    pub split: Split,
    /// Records whose first 30 s mostly fail the signal-quality gate are `~` without
    /// asking the model.
    #[arg(long, conflicts_with = "rule")]
    pub quality_gate: bool,
    /// With `--rule`: also write per-record rule inputs (CSV) to this file, for tuning.
    #[arg(long, requires = "rule")]
    pub dump: Option<PathBuf>,
}

/// Thresholds of the record-level rule (see the module documentation). Tuned on the
/// `train` split of the shared CinC 2017 records.
#[derive(Debug, Clone, PartialEq)]
pub struct AfRule {
    /// Smallest fraction of windows passing the quality gate; fewer: `~`.
    pub min_good_frac: f32,
    /// Smallest fraction of good windows called AF for `A`.
    pub min_af_frac: f32,
    /// Record-level irregularity (`nmad_drr` of the good windows' RR) for `A`, when
    /// the RR-irregularity rule also holds on them. ∞ (off) by default: on the
    /// train split it added more false AF than AF.
    pub record_nmad: f32,
    /// `O` below this mean heart rate (bpm).
    pub o_brady_bpm: f32,
    /// `O` above this mean heart rate (bpm).
    pub o_tachy_bpm: f32,
    /// `O` at or above this many PVCs per minute. ∞ (off) by default: on the train
    /// split every finite value tried (2–8) lowered the mean F1.
    pub o_pvc_per_min: f32,
    /// `O` at or above this record-level `nmad_drr` (short of AF).
    pub o_nmad: f32,
    /// `O` at or above this fraction of RR intervals 20 % off the median.
    pub o_dev20: f32,
}

impl Default for AfRule {
    fn default() -> Self {
        Self {
            min_good_frac: 0.5,
            min_af_frac: 0.8,
            record_nmad: f32::INFINITY,
            o_brady_bpm: 50.0,
            o_tachy_bpm: 100.0,
            o_pvc_per_min: f32::INFINITY,
            o_nmad: 0.1,
            o_dev20: 0.1,
        }
    }
}

/// What the rule looks at in one record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordSummary {
    /// Windows.
    pub windows: usize,
    /// Windows passing the quality gate.
    pub good: usize,
    /// Good windows called AF.
    pub af: usize,
    /// Mean heart rate of the good windows (bpm).
    pub hr_bpm: f32,
    /// PVCs per minute in the good windows.
    pub pvc_per_min: f32,
    /// `af_features` of the RR intervals within good windows.
    pub features: [f32; ecg_dsp::AF_FEATURES],
    /// The RR-irregularity rule on the same intervals.
    pub irregular: bool,
}

/// Rhythm windows of a record fed in one-second blocks and ended with
/// [`StreamDsp::finish`] so late beats come out; only windows inside the record are
/// kept.
pub fn record_windows(sig: &[f32], fs: u32, cfg: &DspConfig) -> Vec<RhythmWindow> {
    let n = sig.len() as u64;
    let mut cfg = cfg.clone();
    let len_s = sig.len() as f32 / fs.max(1) as f32;
    if len_s < cfg.window_s {
        cfg.window_s = len_s.floor().max(1.0);
    }
    let mut dsp = StreamDsp::new(&cfg, fs, 1);
    let mut ev = Vec::new();
    for c in sig.chunks(fs.max(1) as usize) {
        dsp.push(c, &[false], &mut ev);
    }
    dsp.finish(&mut ev);
    ev.into_iter()
        .filter_map(|e| match e {
            DspEvent::Window(w) if w.end_sample <= n => Some(w),
            _ => None,
        })
        .collect()
}

/// The rule's inputs for a record's windows.
pub fn summarise(w: &[RhythmWindow], fs: u32, cfg: &DspConfig) -> RecordSummary {
    let good: Vec<&RhythmWindow> = w.iter().filter(|w| w.quality_ok).collect();
    let mut s = RecordSummary {
        windows: w.len(),
        good: good.len(),
        ..RecordSummary::default()
    };
    s.af = good
        .iter()
        .filter(|w| {
            w.calls
                .iter()
                .any(|c| c.0 == Condition::AtrialFibrillation && c.1 == FindingStatus::Present)
        })
        .count();
    // Beats and PVCs of the union of good windows; RR only between beats of the
    // same good stretch.
    let mut beats: Vec<(u64, usize)> = Vec::new();
    let mut pvcs: Vec<u64> = Vec::new();
    let mut stretch = 0usize;
    let mut last_end = None;
    for g in &good {
        if last_end.is_none_or(|e| g.start_sample > e) {
            stretch += 1;
        }
        last_end = Some(g.end_sample);
        for &b in &g.beats {
            if beats.last().is_none_or(|l| b > l.0) {
                beats.push((b, stretch));
            }
        }
        pvcs.extend(g.pvc_beats.iter().copied());
    }
    pvcs.sort_unstable();
    pvcs.dedup();
    let rr: Vec<f32> = beats
        .windows(2)
        .filter(|p| p[0].1 == p[1].1)
        .map(|p| ((p[1].0 - p[0].0) as f64 / f64::from(fs)) as f32)
        .collect();
    s.features = af_features(&rr);
    s.irregular = rr_irregular_with(&rr, &cfg.af);
    s.hr_bpm = if s.features[0] > 0.0 {
        60.0 / s.features[0]
    } else {
        0.0
    };
    let mut covered: Vec<(u64, u64)> = Vec::new();
    for g in &good {
        match covered.last_mut() {
            Some(c) if g.start_sample <= c.1 => c.1 = c.1.max(g.end_sample),
            _ => covered.push((g.start_sample, g.end_sample)),
        }
    }
    let minutes = covered.iter().map(|c| c.1 - c.0).sum::<u64>() as f64 / f64::from(fs) / 60.0;
    s.pvc_per_min = if minutes > 0.0 {
        (pvcs.len() as f64 / minutes) as f32
    } else {
        0.0
    };
    s
}

impl AfRule {
    /// The label of a record.
    pub fn classify(&self, s: &RecordSummary) -> &'static str {
        if s.windows == 0 || (s.good as f32) < self.min_good_frac * s.windows as f32 {
            return "~";
        }
        let f = &s.features;
        if s.af as f32 >= self.min_af_frac * s.good as f32 && s.af > 0
            || (s.irregular && f[3] >= self.record_nmad)
        {
            return "A";
        }
        if (s.hr_bpm > 0.0 && s.hr_bpm < self.o_brady_bpm)
            || s.hr_bpm > self.o_tachy_bpm
            || s.pvc_per_min >= self.o_pvc_per_min
            || f[3] >= self.o_nmad
            || f[4] >= self.o_dev20
        {
            return "O";
        }
        "N"
    }
}

/// Whether the AF model held `record` out of training: SHA-256 of the name, read
/// as a big-endian integer, mod 5 == 0.
pub fn heldout(record: &str) -> bool {
    use sha2::Digest as _;
    sha2::Sha256::digest(record.as_bytes())
        .iter()
        .fold(0u32, |r, &b| (r * 256 + u32::from(b)) % 5)
        == 0
}

/// Per-class F1 (N, A, O, ~) and the mean over N, A, O of `pred` against `truth`.
pub fn f1_scores(pairs: &[(&str, &str)]) -> (BTreeMap<&'static str, f64>, f64) {
    let mut out = BTreeMap::new();
    for c in ["N", "A", "O", "~"] {
        let tp = pairs.iter().filter(|(t, p)| *t == c && *p == c).count() as f64;
        let fp = pairs.iter().filter(|(t, p)| *t != c && *p == c).count() as f64;
        let fn_ = pairs.iter().filter(|(t, p)| *t == c && *p != c).count() as f64;
        let d = 2.0 * tp + fp + fn_;
        out.insert(c, if d > 0.0 { 2.0 * tp / d } else { 0.0 });
    }
    let mean = (out["N"] + out["A"] + out["O"]) / 3.0;
    (out, mean)
}

/// A record's label from a model: the record's windows built by the pipeline's one
/// model-input builder ([`ecg_pipeline::inputs::record_inputs`]: windows from the
/// first sample every model hop, a short record zero-padded), each scored whatever
/// the signal-quality gate says (the model has its own noise class), the class
/// probabilities averaged over the windows; the label is their argmax.
fn model_label(
    model: &ecg_inference::Model,
    sig: &[f32],
    fs: u32,
    cfg: &DspConfig,
) -> anyhow::Result<&'static str> {
    let manifest = model.manifest();
    let hop_s = manifest.hop_s.unwrap_or(manifest.window_s);
    let mut inputs = ecg_pipeline::inputs::record_inputs(
        manifest,
        hop_s,
        SampleRate(fs),
        &[record_lead(manifest)],
        sig,
        cfg,
    )?;
    for w in &mut inputs {
        w.quality_ok = true;
    }
    let refs: Vec<&ecg_types::ModelInput> = inputs.iter().collect();
    let scored = model.score(&refs)?;
    let k = manifest.output.labels.len();
    let mut mean = vec![0.0f64; k];
    let mut scored_windows = 0usize;
    for s in &scored {
        if let ecg_inference::Scored::Probabilities(p) = s {
            for (m, &v) in mean.iter_mut().zip(p.iter()) {
                *m += f64::from(v);
            }
            scored_windows += 1;
        }
    }
    if scored_windows == 0 {
        return Ok("~");
    }
    let best = mean
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    Ok(match manifest.output.labels.get(best).map(String::as_str) {
        Some("N") => "N",
        Some("A") => "A",
        Some("O") => "O",
        _ => "~",
    })
}

/// The lead a single-lead record is fed as: the model's first lead (a handheld
/// recording is lead I).
pub fn record_lead(manifest: &ecg_inference::Manifest) -> Lead {
    manifest.input.leads.first().copied().unwrap_or(Lead::I)
}

/// Runs `eval af`.
///
/// # Errors
/// When records cannot be read or results cannot be written.
pub fn run(args: &AfArgs) -> anyhow::Result<()> {
    let reference = read_reference(&args.db);
    let cfg = DspConfig::default();
    let rule = AfRule::default();
    // The classifying model, if any: the models loaded, and its index among them.
    let loaded: Option<(Vec<ecg_inference::Model>, usize)> = match (&args.model, args.rule) {
        (_, true) => None,
        (Some(m), false) => Some((
            vec![ecg_inference::Model::load(m, 1)
                .with_context(|| format!("loading model {}", m.display()))?],
            0,
        )),
        (None, false) => {
            let dir = args
                .models
                .clone()
                .unwrap_or_else(ecg_inference::bundled_models_dir);
            let models = ecg_inference::load_models(&dir, 1).with_context(|| {
                format!(
                    "loading the models of {} (the active AF model classifies; `--rule` \
                     classifies by the RR rule without a model)",
                    dir.display()
                )
            })?;
            let (i, _) = super::active_af_model(&models)?;
            Some((models, i))
        }
    };
    let model = loaded.as_ref().map(|(models, i)| &models[*i]);
    let names: Vec<String> = record_names(&args.db)?
        .into_iter()
        .filter(|n| match args.split {
            Split::All => true,
            Split::Heldout => heldout(n),
            Split::Train => !heldout(n),
        })
        .collect();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    let mut dump = match &args.dump {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            );
            writeln!(
                f,
                "record,truth,windows,good,af,hr,pvc_per_min,irregular,{}",
                ecg_dsp::rhythm::AF_FEATURE_NAMES.join(",")
            )?;
            Some(f)
        }
        None => None,
    };
    let mut pairs: Vec<(String, &'static str)> = Vec::new();
    for name in &names {
        let label = match ecg_ingest::wfdb::read_record(&args.db.join(name)) {
            Err(e) => {
                eprintln!("{name}: {e}; labelled ~");
                "~"
            }
            Ok(rec) => {
                let fs = rec.fs.round() as u32;
                let sig = rec.physical(0);
                match model {
                    Some(m) => {
                        let gated = args.quality_gate && {
                            let end = (f64::from(m.manifest().window_s) * f64::from(fs)) as usize;
                            let w = record_windows(&sig[..end.min(sig.len())], fs, &cfg);
                            w.is_empty() || w.iter().filter(|w| w.quality_ok).count() * 2 < w.len()
                        };
                        if gated {
                            "~"
                        } else {
                            model_label(m, &sig, fs, &cfg)?
                        }
                    }
                    None => {
                        let w = record_windows(&sig, fs, &cfg);
                        let s = summarise(&w, fs, &cfg);
                        if let Some(d) = &mut dump {
                            let f: Vec<String> =
                                s.features.iter().map(|v| format!("{v:.4}")).collect();
                            writeln!(
                                d,
                                "{name},{},{},{},{},{:.1},{:.2},{},{}",
                                reference.get(name).map_or("", String::as_str),
                                s.windows,
                                s.good,
                                s.af,
                                s.hr_bpm,
                                s.pvc_per_min,
                                u8::from(s.irregular),
                                f.join(",")
                            )?;
                        }
                        rule.classify(&s)
                    }
                }
            }
        };
        writeln!(out, "{name},{label}")?;
        pairs.push((name.clone(), label));
    }
    out.flush()?;
    if let Some(d) = &mut dump {
        d.flush()?;
    }
    eprintln!(
        "wrote {} labels ({}, split {:?}) to {}",
        pairs.len(),
        match (model, &args.model) {
            (None, _) => "RR rule".to_owned(),
            (Some(_), Some(path)) => format!("model {}", path.display()),
            (Some(m), None) => format!(
                "active AF model {}@{}",
                m.manifest().id,
                m.manifest().version
            ),
        },
        args.split,
        args.out.display()
    );
    report(&reference, &pairs, &args.db);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn report(
    reference: &std::collections::HashMap<String, String>,
    pairs: &[(String, &str)],
    db: &Path,
) {
    let scored: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(n, p)| reference.get(n).map(|t| (t.as_str(), *p)))
        .collect();
    if scored.is_empty() {
        println!(
            "no REFERENCE.csv labels in {}: nothing to score",
            db.display()
        );
        return;
    }
    let (f1, mean) = f1_scores(&scored);
    println!("records scored: {}", scored.len());
    println!("truth\\pred      N      A      O      ~");
    for t in ["N", "A", "O", "~"] {
        let row: Vec<String> = ["N", "A", "O", "~"]
            .iter()
            .map(|p| {
                format!(
                    "{:>6}",
                    scored.iter().filter(|(a, b)| a == &t && b == p).count()
                )
            })
            .collect();
        println!("{t:>10} {}", row.join(" "));
    }
    for (c, v) in &f1 {
        println!("F1 {c}: {v:.3}");
    }
    println!("mean F1 (N, A, O): {mean:.3}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_the_training_script() {
        // int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0, as in
        // models/af-rr/train.py.
        let held: Vec<bool> = (1..=10).map(|i| heldout(&format!("A{i:05}"))).collect();
        assert_eq!(
            held,
            [true, false, false, false, true, false, false, true, false, false]
        );
    }

    #[test]
    fn f1_of_perfect_and_empty() {
        let (f, m) = f1_scores(&[("N", "N"), ("A", "A"), ("O", "O")]);
        assert!((m - 1.0).abs() < 1e-12 && f["~"] == 0.0);
        let (_, m) = f1_scores(&[("N", "A"), ("A", "N")]);
        assert_eq!(m, 0.0);
    }
}

//! The model manifest: the contract between the DSP stage and a model.
//!
//! ```toml
//! id = "af-rr"
//! version = "1.0.0"
//! onnx = "af_rr.onnx"
//! model_card = "MODEL_CARD.md"
//! license = "Apache-2.0"
//! intended_use = "decision support: flags possible atrial fibrillation for clinician review"
//! window_s = 30.0
//!
//! [input]
//! name = "features"
//! kind = "af_rr_v1"        # a feature set the DSP stage computes per window
//! len = 12
//!
//! [output]
//! name = "probabilities"
//! labels = ["N", "A", "O", "~"]
//!
//! [[findings]]
//! label = "A"
//! condition = "atrial_fibrillation"
//! threshold = 0.5
//! ```
//!
//! A waveform model takes the raw signal itself, `[batch, leads, samples]` mV:
//!
//! ```toml
//! window_s = 10.0
//! hop_s = 300.0              # one window per stream every 5 minutes
//! mode = "shadow"            # scored and counted, never alerted
//!
//! [input]
//! name = "ecg"
//! kind = "waveform"
//! sample_rate_hz = 500
//! leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
//! ```
//!
//! A waveform model may read the window's RR intervals beside it, as a second input
//! tensor `[batch, 8]` of their `af_rr_v1` features (`af-cnn` does):
//!
//! ```toml
//! [input]
//! name = "ecg"
//! kind = "waveform"
//! sample_rate_hz = 125
//! leads = ["I"]
//! rr_features = "rr"
//! ```
//!
//! `atrial_features = true` beside it makes that input `[batch, 14]`: the 8 RR
//! features, then the 6 atrial-activity values of `ecg_dsp::atrial` (P waves against
//! fibrillatory waves, aligned to the same beats).

use std::path::{Path, PathBuf};

use ecg_types::{Condition, Lead};
use serde::Deserialize;

/// A model contract, read from `NAME.toml` beside the `.onnx` file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable model id (used in finding sources and metric labels).
    pub id: String,
    /// Model version.
    pub version: String,
    /// The ONNX file, relative to the manifest.
    pub onnx: PathBuf,
    /// The model card, relative to the manifest.
    pub model_card: PathBuf,
    /// License of the weights.
    pub license: String,
    /// What the model is for, and what it is not for.
    pub intended_use: String,
    /// Seconds of signal per window.
    pub window_s: f32,
    /// Seconds between windows of one stream (the cadence); the pipeline's
    /// `model_hop_s` when absent. A multiple of the pipeline's rhythm hop.
    #[serde(default)]
    pub hop_s: Option<f32>,
    /// Active models raise findings; shadow models are scored and counted only.
    #[serde(default)]
    pub mode: ModelMode,
    /// The model input.
    pub input: InputSpec,
    /// The model output.
    pub output: OutputSpec,
    /// Which output labels become findings.
    #[serde(default)]
    pub findings: Vec<FindingRule>,
    /// Where the manifest was read from (set by [`Manifest::load`]).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Whether a model's findings are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelMode {
    /// Findings are published and may become alerts.
    #[default]
    Active,
    /// Scored and counted beside the active models, never published as findings:
    /// for a new version under evaluation or a reference model.
    Shadow,
}

/// The model input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name in the ONNX graph.
    pub name: String,
    /// What the DSP stage feeds it.
    pub kind: InputKind,
    /// Values per window: the second dimension of a `[batch, len]` feature tensor;
    /// for waveforms `leads × samples` (derived when absent).
    #[serde(default)]
    pub len: usize,
    /// Waveform leads, in model order.
    #[serde(default)]
    pub leads: Vec<Lead>,
    /// Waveform sampling rate (Hz).
    #[serde(default)]
    pub sample_rate_hz: u32,
    /// Single-lead waveform models only: a stream that neither has nor can derive the
    /// named lead feeds the model its first lead instead (the lead the DSP analyses),
    /// e.g. a rhythm model trained on handheld lead I recordings reading an ICU
    /// monitor's lead II. The model card must say which leads it was validated on.
    #[serde(default)]
    pub any_lead: bool,
    /// Waveform models only: the name of a second input tensor, `[batch,
    /// RR_FEATURES]` float32, fed the `af_rr_v1` features of the beats the DSP found
    /// in the window (`ModelInput::features`), for a model that weighs RR
    /// irregularity beside the waveform. The pipeline hands such a model its window
    /// once the rhythm windows have covered it, so every beat of the window counts.
    #[serde(default)]
    pub rr_features: Option<String>,
    /// With `rr_features`: that input also carries the window's
    /// [`ATRIAL_FEATURES`] atrial-activity values (`ecg_dsp::atrial`: P waves against
    /// fibrillatory waves, aligned to the same beats) after its RR features, `[batch,
    /// RR_FEATURES + ATRIAL_FEATURES]`.
    #[serde(default)]
    pub atrial_features: bool,
}

/// Values of the `af_rr_v1` feature vector (`ecg_dsp::rhythm::af_features`): the
/// second dimension of a waveform model's `rr_features` input.
pub const RR_FEATURES: usize = 8;

/// Values of the atrial-activity features (`ecg_dsp::atrial::atrial_features`) an
/// RR-feature input carries after the RR features when `input.atrial_features` is set.
pub const ATRIAL_FEATURES: usize = 6;

impl InputSpec {
    /// Samples per lead of a waveform window of `window_s` (0 for feature inputs).
    pub fn samples(&self, window_s: f32) -> usize {
        match self.kind {
            InputKind::Waveform => {
                (f64::from(window_s) * f64::from(self.sample_rate_hz)).round() as usize
            }
            InputKind::AfRrV1 => 0,
        }
    }

    /// Values per window of the RR-feature input ([`RR_FEATURES`], plus
    /// [`ATRIAL_FEATURES`] with `atrial_features`; 0 without one).
    pub fn rr_len(&self) -> usize {
        match (&self.rr_features, self.atrial_features) {
            (None, _) => 0,
            (Some(_), false) => RR_FEATURES,
            (Some(_), true) => RR_FEATURES + ATRIAL_FEATURES,
        }
    }

    /// The input tensor's shape without the batch dimension.
    pub fn dims(&self, window_s: f32) -> Vec<usize> {
        match self.kind {
            InputKind::Waveform => vec![self.leads.len(), self.samples(window_s)],
            InputKind::AfRrV1 => vec![self.len],
        }
    }
}

/// What a model eats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// The RR-irregularity feature vector of `ecg_dsp::rhythm::af_features`, computed
    /// over the beats of each window (`ModelInput::features`).
    AfRrV1,
    /// Raw (unfiltered) millivolts, `[batch, leads, samples]`, leads in `input.leads`
    /// order at `input.sample_rate_hz` (`ModelInput::samples_mv`, lead-major); the
    /// model filters and scales inside its graph.
    Waveform,
}

/// The model output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output tensor name in the ONNX graph (`[batch, labels]` float32 probabilities).
    pub name: String,
    /// Class labels, in output order.
    pub labels: Vec<String>,
}

/// Turns one output label into a finding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingRule {
    /// The label whose probability is read.
    pub label: String,
    /// The condition reported.
    pub condition: Condition,
    /// Present at or above this probability, absent below.
    pub threshold: f32,
}

/// Why a manifest is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {error}")]
    Io {
        /// The manifest.
        path: PathBuf,
        /// The error (in the message, so not also a `source` that a report of the
        /// error's chain would print again).
        error: std::io::Error,
    },
    /// The TOML does not parse into a manifest.
    #[error("manifest {path} is invalid: {message}")]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value breaks a rule.
    #[error("manifest {path}: {problem}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl Manifest {
    /// Reads and checks a manifest.
    ///
    /// # Errors
    /// A [`ManifestError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Io {
            path: path.to_owned(),
            error,
        })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let invalid = |problem: String| ManifestError::Invalid {
            path: path.to_owned(),
            problem,
        };
        if !(m.window_s > 0.0 && m.window_s <= 300.0) {
            return Err(invalid(format!(
                "window_s {} is outside (0, 300]",
                m.window_s
            )));
        }
        if let Some(h) = m.hop_s {
            if !(h > 0.0 && h <= 86_400.0) {
                return Err(invalid(format!("hop_s {h} is outside (0, 86400]")));
            }
        }
        match m.input.kind {
            InputKind::AfRrV1 => {
                if m.input.len == 0 {
                    return Err(invalid("input.len must be at least 1".into()));
                }
                if m.input.rr_features.is_some() {
                    return Err(invalid(
                        "input.rr_features is for waveform inputs (a feature model's \
                         input is the features)"
                            .into(),
                    ));
                }
                if m.input.atrial_features {
                    return Err(invalid(
                        "input.atrial_features is for waveform inputs with an RR-feature \
                         input"
                            .into(),
                    ));
                }
                if !m.input.leads.is_empty() || m.input.sample_rate_hz != 0 {
                    return Err(invalid(
                        "input.leads and input.sample_rate_hz are for waveform inputs".into(),
                    ));
                }
            }
            InputKind::Waveform => {
                if m.input.leads.is_empty() {
                    return Err(invalid("input.leads is empty".into()));
                }
                if m.input.any_lead && m.input.leads.len() != 1 {
                    return Err(invalid(format!(
                        "input.any_lead is for single-lead models, this one reads {} leads",
                        m.input.leads.len()
                    )));
                }
                if !(50..=2000).contains(&m.input.sample_rate_hz) {
                    return Err(invalid(format!(
                        "input.sample_rate_hz {} is outside 50..=2000",
                        m.input.sample_rate_hz
                    )));
                }
                let len = m.input.leads.len() * m.input.samples(m.window_s);
                if m.input.len != 0 && m.input.len != len {
                    return Err(invalid(format!(
                        "input.len {} disagrees with {} leads × {} samples",
                        m.input.len,
                        m.input.leads.len(),
                        m.input.samples(m.window_s)
                    )));
                }
                m.input.len = len;
                if m.input.atrial_features && m.input.rr_features.is_none() {
                    return Err(invalid(
                        "input.atrial_features rides on the RR-feature input: set \
                         input.rr_features too"
                            .into(),
                    ));
                }
                if let Some(rr) = &m.input.rr_features {
                    if *rr == m.input.name || *rr == m.output.name {
                        return Err(invalid(format!(
                            "input.rr_features {rr:?} names the waveform input or the output"
                        )));
                    }
                }
            }
        }
        if m.output.labels.is_empty() {
            return Err(invalid("output.labels is empty".into()));
        }
        for f in &m.findings {
            if !m.output.labels.contains(&f.label) {
                return Err(invalid(format!(
                    "finding label {:?} is not among output.labels {:?}",
                    f.label, m.output.labels
                )));
            }
            if !(0.0..=1.0).contains(&f.threshold) {
                return Err(invalid(format!(
                    "threshold {} of {:?} is outside 0..=1",
                    f.threshold, f.label
                )));
            }
        }
        Ok(m)
    }

    /// Absolute path of the ONNX file.
    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.onnx)
    }

    /// Absolute path of the model card.
    pub fn model_card_path(&self) -> PathBuf {
        self.dir.join(&self.model_card)
    }

    /// Index of a label in the output.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.output.labels.iter().position(|l| l == label)
    }

    /// Whether one of the model's finding rules raises `condition`.
    pub fn raises(&self, condition: Condition) -> bool {
        self.findings.iter().any(|r| r.condition == condition)
    }
}

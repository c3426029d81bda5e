//! One ONNX Runtime session per model, batched scoring and the quality gate.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ecg_types::{Finding, FindingSource, FindingStatus, Window};
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::manifest::{InputKind, Manifest, ManifestError, ModelMode};
use crate::runtime::{OrtRuntime, RuntimeError};

/// Why a model cannot be loaded or scored.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// ONNX Runtime is missing.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The ONNX file does not match its manifest.
    #[error("model {path} breaks its contract: {problems}")]
    Contract {
        /// The ONNX file.
        path: PathBuf,
        /// Every mismatch, separated by `; `.
        problems: String,
    },
    /// ONNX Runtime failed.
    #[error("onnx runtime error in model {model}: {message}")]
    Ort {
        /// Model id.
        model: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A window does not fit the model input.
    #[error("window of stream {stream} has {got} input values, model {model} takes {want}")]
    BadInput {
        /// Model id.
        model: String,
        /// The stream (not patient-identifying).
        stream: String,
        /// Values in the window.
        got: usize,
        /// Values the model takes.
        want: usize,
    },
}

/// Class probabilities of one window in manifest label order; up to
/// [`Probs::INLINE`] labels are stored inline, so scoring a batch does not allocate
/// per window. Dereferences to `[f32]`.
#[derive(Clone, PartialEq)]
pub struct Probs(ProbsRepr);

#[derive(Clone, PartialEq)]
enum ProbsRepr {
    Inline { len: u8, v: [f32; Probs::INLINE] },
    Heap(Vec<f32>),
}

impl Probs {
    /// Labels stored without a heap allocation.
    pub const INLINE: usize = 8;
}

impl From<&[f32]> for Probs {
    fn from(p: &[f32]) -> Self {
        if p.len() <= Self::INLINE {
            let mut v = [0.0; Self::INLINE];
            v[..p.len()].copy_from_slice(p);
            Probs(ProbsRepr::Inline {
                len: p.len() as u8,
                v,
            })
        } else {
            Probs(ProbsRepr::Heap(p.to_vec()))
        }
    }
}

impl std::ops::Deref for Probs {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &self.0 {
            ProbsRepr::Inline { len, v } => &v[..usize::from(*len)],
            ProbsRepr::Heap(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a Probs {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Probs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The result of scoring one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Scored {
    /// Class probabilities in manifest label order.
    Probabilities(Probs),
    /// The window failed the quality gate and was not scored.
    Indeterminate,
}

/// A loaded model: its contract and its ONNX Runtime session.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    session: Mutex<Session>,
}

impl Model {
    /// Loads a model from its manifest, checking the ONNX file against the contract.
    ///
    /// # Errors
    /// [`ModelError::Contract`] lists every mismatch between manifest and ONNX file.
    pub fn load(manifest_path: &Path, intra_threads: usize) -> Result<Model, ModelError> {
        let manifest = Manifest::load(manifest_path)?;
        let rt = OrtRuntime::get()?;
        let ort_err = |e: ort::Error| ModelError::Ort {
            model: manifest.id.clone(),
            message: e.to_string(),
        };
        let session = Session::builder(rt.environment())
            .map_err(ort_err)?
            .with_intra_threads(intra_threads.max(1))
            .map_err(|e| ort_err(e.into()))?
            .commit_from_file(manifest.onnx_path())
            .map_err(ort_err)?;
        check_contract(&manifest, &session)?;
        Ok(Model {
            manifest,
            session: Mutex::new(session),
        })
    }

    /// The model's contract.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where findings from this model say they came from.
    pub fn source(&self) -> FindingSource {
        FindingSource::Model {
            id: self.manifest.id.clone(),
            version: self.manifest.version.clone(),
        }
    }

    /// Scores a batch of windows in one ONNX Runtime run. Windows that fail the
    /// quality gate are not sent to the model and come back [`Scored::Indeterminate`].
    ///
    /// # Errors
    /// [`ModelError::BadInput`] if a window's input does not fit; [`ModelError::Ort`]
    /// if ONNX Runtime fails.
    pub fn score(&self, windows: &[&Window]) -> Result<Vec<Scored>, ModelError> {
        let len = self.manifest.input.len;
        let mut batch = Vec::with_capacity(windows.len() * len);
        let mut rows = 0usize;
        let waveform = self.manifest.input.kind == InputKind::Waveform;
        for w in windows.iter().filter(|w| w.quality_ok) {
            let values = if waveform { &w.samples_mv } else { &w.features };
            if values.len() != len {
                return Err(ModelError::BadInput {
                    model: self.manifest.id.clone(),
                    stream: w.stream.to_string(),
                    got: values.len(),
                    want: len,
                });
            }
            batch.extend_from_slice(values);
            rows += 1;
        }
        let mut probs = if rows == 0 {
            Vec::new()
        } else {
            self.run(batch, rows)?
        }
        .into_iter();
        Ok(windows
            .iter()
            .map(|w| {
                if w.quality_ok {
                    probs
                        .next()
                        .map_or(Scored::Indeterminate, Scored::Probabilities)
                } else {
                    Scored::Indeterminate
                }
            })
            .collect())
    }

    fn run(&self, batch: Vec<f32>, rows: usize) -> Result<Vec<Probs>, ModelError> {
        let ort_err = |e: ort::Error| ModelError::Ort {
            model: self.manifest.id.clone(),
            message: e.to_string(),
        };
        let mut shape = vec![rows];
        shape.extend(self.manifest.input.dims(self.manifest.window_s));
        let input = Tensor::from_array((shape, batch)).map_err(ort_err)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs![self.manifest.input.name.as_str() => input])
            .map_err(ort_err)?;
        let (_, data) = outputs[self.manifest.output.name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(ort_err)?;
        let k = self.manifest.output.labels.len();
        if data.len() != rows * k {
            return Err(ModelError::Ort {
                model: self.manifest.id.clone(),
                message: format!("output has {} values, expected {rows} x {k}", data.len()),
            });
        }
        Ok(data.chunks(k).map(Probs::from).collect())
    }

    /// The findings a scored window yields: one per finding rule, present when the
    /// label's probability reaches its threshold, indeterminate when not scored;
    /// marked `shadow` (recorded, never alerted) for a model in shadow mode.
    pub fn findings(&self, window: &Window, scored: &Scored) -> Vec<Finding> {
        let shadow = self.manifest.mode == ModelMode::Shadow;
        let source = self.source();
        self.manifest
            .findings
            .iter()
            .map(|rule| {
                let (status, score) = match scored {
                    Scored::Indeterminate => (FindingStatus::Indeterminate, None),
                    Scored::Probabilities(p) => {
                        let s = self
                            .manifest
                            .label_index(&rule.label)
                            .and_then(|i| p.get(i).copied())
                            .unwrap_or(0.0);
                        let status = if s >= rule.threshold {
                            FindingStatus::Present
                        } else {
                            FindingStatus::Absent
                        };
                        (status, Some(s))
                    }
                };
                Finding {
                    key: Finding::make_key(&window.stream, &source, rule.condition, window.start),
                    stream: window.stream.clone(),
                    patient: window.patient.clone(),
                    source: source.clone(),
                    condition: rule.condition,
                    status,
                    window_start: window.start,
                    window_end: window.end,
                    score,
                    value: None,
                    decision_support: true,
                    shadow,
                }
            })
            .collect()
    }
}

/// Checks names, element types and shapes of the session against the manifest.
fn check_contract(m: &Manifest, session: &Session) -> Result<(), ModelError> {
    let mut problems = Vec::new();
    match session.inputs().iter().find(|i| i.name() == m.input.name) {
        None => problems.push(format!(
            "no input named {:?} (the model has {:?})",
            m.input.name,
            session
                .inputs()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
        )),
        Some(i) => check_tensor(
            "input",
            &m.input.name,
            i.dtype(),
            &m.input.dims(m.window_s),
            &mut problems,
        ),
    }
    match session.outputs().iter().find(|o| o.name() == m.output.name) {
        None => problems.push(format!(
            "no output named {:?} (the model has {:?})",
            m.output.name,
            session
                .outputs()
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
        )),
        Some(o) => check_tensor(
            "output",
            &m.output.name,
            o.dtype(),
            &[m.output.labels.len()],
            &mut problems,
        ),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Contract {
            path: m.onnx_path(),
            problems: problems.join("; "),
        })
    }
}

fn check_tensor(
    what: &str,
    name: &str,
    t: &ValueType,
    dims_want: &[usize],
    problems: &mut Vec<String>,
) {
    match t {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                problems.push(format!(
                    "{what} {name:?} is {ty:?}, the contract says float32"
                ));
            }
            let dims: Vec<i64> = shape.iter().copied().collect();
            let fits = dims.len() == dims_want.len() + 1
                && dims[1..]
                    .iter()
                    .zip(dims_want)
                    .all(|(&d, &w)| d == i64::try_from(w).unwrap_or(-1));
            if !fits {
                problems.push(format!(
                    "{what} {name:?} has shape {dims:?}, the contract says [batch, {}]",
                    dims_want
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        other => problems.push(format!("{what} {name:?} is {other:?}, not a tensor")),
    }
}

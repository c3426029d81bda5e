//! One ONNX Runtime session per model, batched scoring and the quality gate.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ecg_types::{Finding, FindingSource, FindingStatus, ModelInput};
use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
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
        /// Whether running again may succeed ([`ModelError::retry`]).
        retry: Retry,
    },
}

/// Whether an operation that failed may succeed when tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A passing fault (resources, the runtime's own state): try again after a
    /// back-off.
    Transient,
    /// The same call fails the same way every time (a contract, a graph, an argument
    /// the model refuses): trying again changes nothing.
    Permanent,
}

impl Retry {
    /// How ONNX Runtime's error code classifies: arguments, graphs, files and models
    /// that are wrong stay wrong; failures of the engine, the execution provider or
    /// the device may pass.
    pub fn of_ort(code: ort::error::ErrorCode) -> Retry {
        use ort::error::ErrorCode as C;
        match code {
            C::GenericFailure
            | C::EngineError
            | C::RuntimeException
            | C::ExecutionProviderFailure
            | C::DeviceReset => Retry::Transient,
            _ => Retry::Permanent,
        }
    }
}

impl ModelError {
    /// Whether scoring again may succeed: only some ONNX Runtime failures are
    /// transient; a bad manifest, a missing runtime or a broken contract is not.
    pub fn retry(&self) -> Retry {
        match self {
            ModelError::Ort { retry, .. } => *retry,
            ModelError::Manifest(_) | ModelError::Runtime(_) | ModelError::Contract { .. } => {
                Retry::Permanent
            }
        }
    }

    fn ort(model: &str, e: &ort::Error) -> ModelError {
        ModelError::Ort {
            model: model.to_owned(),
            message: e.to_string(),
            retry: Retry::of_ort(e.code()),
        }
    }
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
    #[inline]
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
    /// The window does not fit the model's input (a permanent fault of this window
    /// alone): not sent to the model, the rest of its batch scored without it.
    Rejected(String),
}

impl Scored {
    /// Why the window has no score, if it has none.
    pub fn reason(&self) -> Option<String> {
        match self {
            Scored::Probabilities(_) => None,
            Scored::Indeterminate => Some("signal quality too poor to score".into()),
            Scored::Rejected(why) => Some(why.clone()),
        }
    }
}

/// A loaded model: its contract and its ONNX Runtime session.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    runner: Mutex<Runner>,
}

/// Batch sizes whose tensors are kept (most recently used first)...
const SLOTS_MAX: usize = 8;
/// ...as long as their input and output tensors take no more than this together (the
/// most recent one is always kept): 64 af-rr windows take 3 KiB, 8 12-lead windows
/// 1.9 MiB, 64 of them 15 MiB.
const SLOTS_MAX_BYTES: usize = 32 << 20;

/// The session and, per recently used batch size, an input tensor and a preallocated
/// output tensor: a call overwrites the input in place and ONNX Runtime writes the
/// output into the same buffer every time, so scoring allocates no tensors (for a
/// small model like af-rr that is most of the work around the run).
#[derive(Debug)]
struct Runner {
    session: Session,
    /// The manifest's input is the session's first: it can be passed by position,
    /// which spares building a name list per call.
    input_first: bool,
    /// Most recently used first.
    slots: Vec<Slot>,
}

/// The tensors for one batch size.
struct Slot {
    rows: usize,
    bytes: usize,
    /// `[rows, dims...]`, overwritten by each call.
    input: Tensor<f32>,
    /// `[rows, rr_len]` for a waveform model with an RR-feature input.
    rr: Option<Tensor<f32>>,
    /// Selects the manifest's output, preallocated as `[rows, labels]`.
    options: RunOptions<HasSelectedOutputs>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Slot {
    fn new(m: &Manifest, rows: usize) -> ort::Result<Slot> {
        let alloc = Allocator::default();
        let mut shape = vec![rows];
        shape.extend(m.input.dims(m.window_s));
        let input = Tensor::<f32>::new(&alloc, shape.as_slice())?;
        let rr_len = m.input.rr_len();
        let rr = if rr_len > 0 {
            Some(Tensor::<f32>::new(&alloc, [rows, rr_len])?)
        } else {
            None
        };
        let k = m.output.labels.len();
        let output = Tensor::<f32>::new(&alloc, [rows, k])?;
        let options = RunOptions::new()?.with_outputs(
            OutputSelector::no_default()
                .with(m.output.name.as_str())
                .preallocate(m.output.name.as_str(), output),
        );
        Ok(Slot {
            rows,
            bytes: rows * (m.input.len + rr_len + k) * std::mem::size_of::<f32>(),
            input,
            rr,
            options,
        })
    }
}

impl Runner {
    /// Moves the slot for `rows` to the front, creating it if needed and dropping the
    /// least recently used ones beyond [`SLOTS_MAX`] / [`SLOTS_MAX_BYTES`].
    fn select(&mut self, m: &Manifest, rows: usize) -> ort::Result<()> {
        if let Some(i) = self.slots.iter().position(|s| s.rows == rows) {
            self.slots[..=i].rotate_right(1);
            return Ok(());
        }
        self.slots.insert(0, Slot::new(m, rows)?);
        let mut bytes = 0;
        let keep = self
            .slots
            .iter()
            .take_while(|s| {
                bytes += s.bytes;
                bytes == s.bytes || bytes <= SLOTS_MAX_BYTES
            })
            .take(SLOTS_MAX)
            .count();
        self.slots.truncate(keep);
        Ok(())
    }
}

impl Model {
    /// Loads a model from its manifest, checking the ONNX file against the contract.
    ///
    /// # Errors
    /// [`ModelError::Contract`] lists every mismatch between manifest and ONNX file.
    pub fn load(manifest_path: &Path, intra_threads: usize) -> Result<Model, ModelError> {
        let manifest = Manifest::load(manifest_path)?;
        let rt = OrtRuntime::get()?;
        let ort_err = |e: ort::Error| ModelError::ort(&manifest.id, &e);
        let session = Session::builder(rt.environment())
            .map_err(ort_err)?
            .with_intra_threads(intra_threads.max(1))
            .map_err(|e| ort_err(e.into()))?
            .commit_from_file(manifest.onnx_path())
            .map_err(ort_err)?;
        check_contract(&manifest, &session)?;
        let input_first =
            session.inputs().first().map(|i| i.name()) == Some(manifest.input.name.as_str());
        Ok(Model {
            manifest,
            runner: Mutex::new(Runner {
                session,
                input_first,
                slots: Vec::new(),
            }),
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

    /// Scores a batch of windows in one ONNX Runtime run. ModelInputs that fail the
    /// quality gate are not sent to the model and come back [`Scored::Indeterminate`];
    /// a window whose input does not fit the model comes back [`Scored::Rejected`]
    /// and the others are scored without it.
    ///
    /// # Errors
    /// [`ModelError::Ort`] if ONNX Runtime fails the run (its [`ModelError::retry`]
    /// says whether running again may help).
    pub fn score(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.score_gated(inputs, true)
    }

    /// [`Self::score`], but with `gate` false the windows that failed the quality gate
    /// are scored too, as if they had passed (what the AF episode tracker reads behind
    /// the gate; the scorer still publishes them as indeterminate).
    ///
    /// # Errors
    /// As [`Self::score`].
    pub fn score_gated(
        &self,
        inputs: &[&ModelInput],
        gate: bool,
    ) -> Result<Vec<Scored>, ModelError> {
        let passes = |w: &ModelInput| w.quality_ok || !gate;
        let m = &self.manifest;
        let len = m.input.len;
        let waveform = m.input.kind == InputKind::Waveform;
        fn values(w: &ModelInput, waveform: bool) -> &[f32] {
            if waveform {
                &w.samples_mv
            } else {
                &w.features
            }
        }
        let rr_len = m.input.rr_len();
        let fits = |w: &ModelInput| {
            values(w, waveform).len() == len && (rr_len == 0 || w.features.len() == rr_len)
        };
        let rows = inputs.iter().filter(|w| passes(w) && fits(w)).count();
        let verdict = |w: &ModelInput| {
            if !passes(w) {
                Scored::Indeterminate
            } else if values(w, waveform).len() != len {
                Scored::Rejected(format!(
                    "input has {} values, model {} takes {len}",
                    values(w, waveform).len(),
                    m.id
                ))
            } else {
                Scored::Rejected(format!(
                    "RR input has {} values, model {} takes {rr_len}",
                    w.features.len(),
                    m.id
                ))
            }
        };
        if rows == 0 {
            return Ok(inputs.iter().map(|w| verdict(w)).collect());
        }
        let ort_err = |e: ort::Error| ModelError::ort(&m.id, &e);
        let mut runner = self
            .runner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runner.select(m, rows).map_err(ort_err)?;
        let Runner {
            session,
            input_first,
            slots,
        } = &mut *runner;
        let slot = &mut slots[0];
        let (_, input) = slot.input.extract_tensor_mut();
        let mut rr = slot.rr.as_mut().map(|t| t.extract_tensor_mut().1);
        for (i, w) in inputs.iter().filter(|w| passes(w) && fits(w)).enumerate() {
            input[i * len..(i + 1) * len].copy_from_slice(values(w, waveform));
            if let Some(rr) = rr.as_deref_mut() {
                rr[i * rr_len..(i + 1) * rr_len].copy_from_slice(&w.features);
            }
        }
        let outputs = match (&slot.rr, m.input.rr_features.as_deref()) {
            (Some(rr), Some(rr_name)) => session.run_with_options(
                ort::inputs![m.input.name.as_str() => &slot.input, rr_name => rr],
                &slot.options,
            ),
            _ if *input_first => session.run_with_options(ort::inputs![&slot.input], &slot.options),
            _ => session.run_with_options(
                ort::inputs![m.input.name.as_str() => &slot.input],
                &slot.options,
            ),
        }
        .map_err(ort_err)?;
        let (_, data) = outputs
            .get(m.output.name.as_str())
            .ok_or_else(|| ModelError::Ort {
                model: m.id.clone(),
                message: format!("no output {:?}", m.output.name),
                retry: Retry::Permanent,
            })?
            .try_extract_tensor::<f32>()
            .map_err(ort_err)?;
        let k = m.output.labels.len();
        if data.len() != rows * k {
            return Err(ModelError::Ort {
                model: m.id.clone(),
                message: format!("output has {} values, expected {rows} x {k}", data.len()),
                retry: Retry::Permanent,
            });
        }
        let mut probs = data.chunks_exact(k);
        Ok(inputs
            .iter()
            .map(|w| {
                if passes(w) && fits(w) {
                    probs.next().map_or(Scored::Indeterminate, |p| {
                        Scored::Probabilities(Probs::from(p))
                    })
                } else {
                    verdict(w)
                }
            })
            .collect())
    }

    /// The findings a scored window yields: one per finding rule, present when the
    /// label's probability reaches its threshold, indeterminate (with the reason)
    /// when not scored; marked `shadow` (recorded, never alerted) for a model in
    /// shadow mode.
    pub fn findings(&self, input: &ModelInput, scored: &Scored) -> Vec<Finding> {
        let shadow = self.manifest.mode == ModelMode::Shadow;
        let source = self.source();
        self.manifest
            .findings
            .iter()
            .map(|rule| {
                let (status, score) = match scored {
                    Scored::Indeterminate | Scored::Rejected(_) => {
                        (FindingStatus::Indeterminate, None)
                    }
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
                let f = Finding::new(
                    input.stream.clone(),
                    input.patient.clone(),
                    source.clone(),
                    rule.condition,
                    status,
                    input.start,
                    input.end,
                )
                .with_score(score)
                .with_shadow(shadow);
                match scored.reason() {
                    Some(why) => f.with_reason(why),
                    None if status == FindingStatus::Present => {
                        match beat_evidence(&self.manifest, input) {
                            Some(why) => f.with_reason(why),
                            None => f,
                        }
                    }
                    None => f,
                }
            })
            .collect()
    }
}

/// The beat evidence a present finding of a model that reads the window's beats was
/// scored with, in words for the console and the alert summary: the rate and the
/// RR irregularity (`af_rr_v1`'s mean RR and median |ΔRR| / median RR) and, for a
/// model with atrial features, the share of RR intervals whose beat has a
/// template-like P wave (`ecg_dsp::atrial`). Derived values only, never samples.
fn beat_evidence(m: &Manifest, input: &ModelInput) -> Option<String> {
    let f = &input.features;
    // A waveform model's RR input, or a feature model's af_rr_v1 features.
    let len = match m.input.kind {
        InputKind::Waveform => m.input.rr_len(),
        InputKind::AfRrV1 => m.input.len,
    };
    if len < crate::manifest::RR_FEATURES || f.len() != len || !f[0].is_finite() || f[0] <= 0.0 {
        return None;
    }
    let mut why = format!(
        "{:.0} bpm, RR intervals change by a median {:.0} % from beat to beat",
        60.0 / f[0],
        100.0 * f[3]
    );
    if m.input.atrial_features {
        // RR_FEATURES, then ln_p_amp, p_sync, p_corr, p_share, ...
        let p_share = f[crate::manifest::RR_FEATURES + 3];
        why.push_str(&format!(
            ", a consistent P wave before {:.0} % of beats",
            100.0 * p_share
        ));
    }
    Some(why)
}

/// The bundled models directory: `models` in the working directory when there is
/// one (a checkout's root, or a deployment that ships its own), else the models of the
/// source tree this binary was built from, so that a command run from any directory
/// finds them.
pub fn bundled_models_dir() -> PathBuf {
    let local = PathBuf::from("models");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }
}

/// Loads every model of a models directory: each `DIR/*/*.toml` manifest, in path
/// order, with `intra_threads` ONNX Runtime threads each.
///
/// # Errors
/// When the directory cannot be read or a model does not load (the error names it).
pub fn load_models(dir: &Path, intra_threads: usize) -> Result<Vec<Model>, LoadError> {
    let read = |p: &Path| {
        std::fs::read_dir(p).map_err(|e| LoadError::Dir {
            path: p.to_owned(),
            message: e.to_string(),
        })
    };
    let mut manifests = Vec::new();
    for entry in read(dir)? {
        let sub = entry
            .map_err(|e| LoadError::Dir {
                path: dir.to_owned(),
                message: e.to_string(),
            })?
            .path();
        if !sub.is_dir() {
            continue;
        }
        for f in read(&sub)? {
            let p = f
                .map_err(|e| LoadError::Dir {
                    path: sub.clone(),
                    message: e.to_string(),
                })?
                .path();
            if p.extension().is_some_and(|e| e == "toml") {
                manifests.push(p);
            }
        }
    }
    manifests.sort();
    manifests
        .iter()
        .map(|p| {
            Model::load(p, intra_threads).map_err(|error| LoadError::Model {
                path: p.clone(),
                error: Box::new(error),
            })
        })
        .collect()
}

/// Why a models directory does not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory (or a model's folder) cannot be read.
    #[error("reading models dir {path}: {message}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A model does not load.
    #[error("loading model {path}: {error}")]
    Model {
        /// Its manifest.
        path: PathBuf,
        /// Why (in the message, so not also a `source` that a report of the error's
        /// chain would print again).
        error: Box<ModelError>,
    },
}

/// Checks names, element types and shapes of the session against the manifest.
fn check_contract(m: &Manifest, session: &Session) -> Result<(), ModelError> {
    let mut problems = Vec::new();
    // An input the contract names: present, float32, of its shape.
    let mut check_input = |what: &str, name: &str, dims: &[usize]| match session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
    {
        None => problems.push(format!(
            "no {what} named {name:?} (the model has {:?})",
            session
                .inputs()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
        )),
        Some(i) => check_tensor("input", name, i.dtype(), dims, &mut problems),
    };
    check_input("input", &m.input.name, &m.input.dims(m.window_s));
    if let Some(rr) = &m.input.rr_features {
        check_input("RR-feature input", rr, &[m.input.rr_len()]);
    }
    for extra in session
        .inputs()
        .iter()
        .map(|i| i.name())
        .filter(|&n| n != m.input.name && Some(n) != m.input.rr_features.as_deref())
    {
        problems.push(format!(
            "input {extra:?} is not in the contract (input.name, input.rr_features)"
        ));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ecg_types::{DeviceTimeUs, PatientId, SampleRate, StreamId};

    fn manifest(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(rel)
    }

    #[test]
    fn bundled_models_are_found_from_a_directory_without_them() {
        // Tests run in the crate's folder, which has no `models` of its own: the
        // fallback to the source tree's models is what is found.
        assert!(!Path::new("models").exists());
        let dir = bundled_models_dir();
        assert!(
            dir.join("af-cnn/af_cnn.toml").is_file(),
            "{}",
            dir.display()
        );
        assert!(dir.join("af-rr/af_rr.toml").is_file(), "{}", dir.display());
    }

    fn window(i: usize, quality_ok: bool) -> ModelInput {
        // Deterministic, af_rr_v1-like features (mean RR, spreads, ratios).
        let f = |j: usize| {
            let x = ((i * 31 + j * 17) % 97) as f32 / 97.0;
            [
                0.4 + x,
                0.5 * x,
                0.4 * x,
                0.3 * x,
                x,
                0.2 + 0.6 * x,
                2.0 * x,
                3.0 * x - 1.5,
            ][j]
        };
        ModelInput {
            stream: StreamId::new(format!("s{i}")).unwrap(),
            patient: PatientId::new("p1").unwrap(),
            start: DeviceTimeUs(0),
            end: DeviceTimeUs(30_000_000),
            sample_rate: SampleRate(250),
            leads: vec![],
            samples_mv: vec![],
            rr_s: vec![],
            beats_s: vec![],
            wide_pvc: Vec::new(),
            features: (0..8).map(f).collect(),
            quality_ok,
        }
    }

    /// What the model gives for `rows` run the plain way: a fresh input tensor, an
    /// output ONNX Runtime allocates.
    fn reference(model: &Model, rows: &[&ModelInput]) -> Vec<u32> {
        let m = model.manifest();
        let data: Vec<f32> = rows.iter().flat_map(|w| w.features.clone()).collect();
        let input = Tensor::from_array((vec![rows.len(), m.input.len], data)).unwrap();
        let mut runner = model.runner.lock().unwrap();
        let out = runner
            .session
            .run(ort::inputs![m.input.name.as_str() => input])
            .unwrap();
        let (_, v) = out[m.output.name.as_str()]
            .try_extract_tensor::<f32>()
            .unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn reused_tensors_give_the_plain_run_bit_for_bit_at_any_batch_size() {
        let model = Model::load(&manifest("af-rr/af_rr.toml"), 1).unwrap();
        let pool: Vec<ModelInput> = (0..200).map(|i| window(i, i % 7 != 3)).collect();
        let mut at = 0;
        for b in [1, 2, 3, 64, 5, 9, 10, 11, 12, 13, 14, 1, 64, 64, 7, 64] {
            let batch: Vec<&ModelInput> = (0..b).map(|j| &pool[(at + j) % pool.len()]).collect();
            at += b;
            let scored = model.score(&batch).unwrap();
            assert_eq!(scored.len(), b);
            let good: Vec<&ModelInput> = batch.iter().copied().filter(|w| w.quality_ok).collect();
            let got: Vec<u32> = scored
                .iter()
                .zip(&batch)
                .flat_map(|(s, w)| match s {
                    Scored::Probabilities(p) => {
                        assert!(w.quality_ok);
                        p.iter().map(|x| x.to_bits()).collect()
                    }
                    Scored::Indeterminate => {
                        assert!(!w.quality_ok);
                        Vec::new()
                    }
                    Scored::Rejected(why) => panic!("well-formed window rejected: {why}"),
                })
                .collect();
            if good.is_empty() {
                assert!(got.is_empty());
            } else {
                assert_eq!(got, reference(&model, &good), "batch {b}");
            }
            let runner = model.runner.lock().unwrap();
            assert!(runner.slots.len() <= SLOTS_MAX);
            if !good.is_empty() {
                assert_eq!(runner.slots[0].rows, good.len());
            }
        }
        // The input passed by name (for models whose input is not the first) gives the
        // same.
        assert!(model.runner.lock().unwrap().input_first);
        model.runner.lock().unwrap().input_first = false;
        let batch: Vec<&ModelInput> = pool[..64].iter().filter(|w| w.quality_ok).collect();
        let by_name: Vec<u32> = model
            .score(&batch)
            .unwrap()
            .iter()
            .flat_map(|s| match s {
                Scored::Probabilities(p) => p.iter().map(|x| x.to_bits()).collect(),
                Scored::Indeterminate | Scored::Rejected(_) => Vec::new(),
            })
            .collect();
        assert_eq!(by_name, reference(&model, &batch));
        // All gated: nothing runs.
        let bad = [window(0, false), window(1, false)];
        let scored = model.score(&[&bad[0], &bad[1]]).unwrap();
        assert_eq!(scored, vec![Scored::Indeterminate; 2]);
    }

    #[test]
    fn one_malformed_window_is_rejected_and_the_rest_of_its_batch_scored() {
        let model = Model::load(&manifest("af-rr/af_rr.toml"), 1).unwrap();
        let mut pool: Vec<ModelInput> = (0..64).map(|i| window(i, true)).collect();
        pool[17].features.truncate(5);
        let batch: Vec<&ModelInput> = pool.iter().collect();
        let scored = model.score(&batch).unwrap();
        let Scored::Rejected(why) = &scored[17] else {
            panic!("malformed window scored: {:?}", scored[17]);
        };
        assert!(why.contains("5 values"), "{why}");
        let good: Vec<&ModelInput> = pool
            .iter()
            .enumerate()
            .filter_map(|(i, w)| (i != 17).then_some(w))
            .collect();
        let got: Vec<u32> = scored
            .iter()
            .flat_map(|s| match s {
                Scored::Probabilities(p) => p.iter().map(|x| x.to_bits()).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(got, reference(&model, &good), "the other 63 as if alone");
        let findings = model.findings(&pool[17], &scored[17]);
        assert!(findings
            .iter()
            .all(|f| f.status == FindingStatus::Indeterminate
                && f.reason.as_deref() == Some(why.as_str())));
    }

    #[test]
    fn ort_error_codes_classify_as_transient_or_permanent() {
        use ort::error::ErrorCode as C;
        assert_eq!(Retry::of_ort(C::RuntimeException), Retry::Transient);
        assert_eq!(Retry::of_ort(C::EngineError), Retry::Transient);
        assert_eq!(Retry::of_ort(C::InvalidArgument), Retry::Permanent);
        assert_eq!(Retry::of_ort(C::InvalidGraph), Retry::Permanent);
        let e = ModelError::Contract {
            path: PathBuf::from("m.onnx"),
            problems: "x".into(),
        };
        assert_eq!(e.retry(), Retry::Permanent);
    }

    #[test]
    fn tensor_cache_is_bounded_in_count_and_bytes() {
        let model = Model::load(&manifest("ecg12-attia/ecg12_attia.toml"), 1).unwrap();
        let m = model.manifest();
        let mut runner = model.runner.lock().unwrap();
        let rows_of = |r: &Runner| r.slots.iter().map(|s| s.rows).collect::<Vec<_>>();
        // 64 12-lead windows: 15.4 MB, 32: 7.7 MB, 16: 3.8 MB, 30: 7.2 MB.
        for rows in [64, 32, 16] {
            runner.select(m, rows).unwrap();
        }
        assert_eq!(rows_of(&runner), vec![16, 32, 64]);
        runner.select(m, 32).unwrap();
        assert_eq!(rows_of(&runner), vec![32, 16, 64]);
        runner.select(m, 30).unwrap();
        assert_eq!(
            rows_of(&runner),
            vec![30, 32, 16],
            "64 is over the byte budget"
        );
        // A slot bigger than the budget on its own is still kept while in use.
        runner.select(m, 200).unwrap();
        assert_eq!(rows_of(&runner), vec![200]);
        for rows in 1..=20 {
            runner.select(m, rows).unwrap();
        }
        assert_eq!(rows_of(&runner), (13..=20).rev().collect::<Vec<_>>());
    }

    /// A present finding says, in words, what beat evidence it was scored with: the
    /// rate and RR irregularity, and for a model with atrial features the share of
    /// beats with a consistent P wave; nothing for a window without beats.
    #[test]
    fn beat_evidence_in_words() {
        let rr = Manifest::load(&manifest("af-rr/af_rr.toml")).unwrap();
        let mut w = window(3, true);
        w.features = vec![0.6, 0.3, 0.25, 0.18, 0.7, 0.66, 0.9, 1.1];
        assert_eq!(
            beat_evidence(&rr, &w).as_deref(),
            Some("100 bpm, RR intervals change by a median 18 % from beat to beat")
        );
        let mut cnn = Manifest::load(&manifest("af-cnn/af_cnn.toml")).unwrap();
        cnn.input.atrial_features = true;
        w.features.extend([-4.2, 0.05, 0.12, 0.125, 0.33, -2.7]);
        assert_eq!(
            beat_evidence(&cnn, &w).as_deref(),
            Some(
                "100 bpm, RR intervals change by a median 18 % from beat to beat, \
                 a consistent P wave before 12 % of beats"
            )
        );
        // The RR features alone do not fit a model that takes atrial values too.
        w.features.truncate(8);
        assert_eq!(beat_evidence(&cnn, &w), None);
        // No beats: all-zero features.
        w.features = vec![0.0; 8];
        assert_eq!(beat_evidence(&rr, &w), None);
    }
}

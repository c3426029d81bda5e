//! Inference: AI-ECG models scored through ONNX Runtime.
//!
//! - [`runtime`]: finds and loads the ONNX Runtime shared library (`load-dynamic`);
//! - [`manifest`]: the model contract (TOML beside each `.onnx`);
//! - [`model`]: one session per model, batched scoring, and the signal-quality gate
//!   that turns bad windows into "indeterminate" findings instead of scores.
//!
//! This is a plain synchronous library: callers drive it from a blocking pool.

pub mod manifest;
pub mod model;
pub mod runtime;

pub use manifest::{InputKind, Manifest, ManifestError, ModelMode, ATRIAL_FEATURES, RR_FEATURES};
pub use model::{
    bundled_models_dir, load_models, LoadError, Model, ModelError, Probs, Retry, Scored,
};
pub use runtime::{OrtRuntime, RuntimeError};

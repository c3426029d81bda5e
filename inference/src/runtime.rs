//! Locating and loading ONNX Runtime.
//!
//! cardiostream links ONNX Runtime at run time (`ort`'s `load-dynamic`), from the
//! `libonnxruntime.so` that the `onnxruntime` wheel on PyPI ships. The library is
//! looked for, in order:
//! 1. `CARDIOSTREAM_ORT_LIB` (a file path);
//! 2. `ORT_DYLIB_PATH` (ort's own variable);
//! 3. `.cardiostream/lib/libonnxruntime.so` in the current directory or any parent
//!    of it or of the executable — where `scripts/setup-onnxruntime.sh` puts it;
//! 4. the same under the source tree this binary was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Relative path the set-up script installs the library at.
pub const INSTALL_REL_PATH: &str = ".cardiostream/lib/libonnxruntime.so";

/// Why ONNX Runtime could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The library file was not found anywhere.
    #[error(
        "onnx runtime library not found (looked in {looked}); install it with \
         `scripts/setup-onnxruntime.sh` (pip-installs the onnxruntime wheel into \
         .cardiostream/ and links {INSTALL_REL_PATH}) or point CARDIOSTREAM_ORT_LIB at a \
         libonnxruntime.so.* from the onnxruntime PyPI wheel (onnxruntime/capi/)"
    )]
    NotFound {
        /// Where it looked.
        looked: String,
    },
    /// The library was found but failed to load or initialise.
    #[error("onnx runtime library {path} failed to load: {reason}")]
    LoadFailed {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
}

/// A loaded ONNX Runtime, shared by every model of the process.
#[derive(Debug, Clone)]
pub struct OrtRuntime {
    env: ort::environment::Environment,
    path: PathBuf,
}

impl OrtRuntime {
    /// Loads ONNX Runtime once per process and returns it.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`] says how to install it; [`RuntimeError::LoadFailed`]
    /// carries the loader's reason.
    pub fn get() -> Result<&'static OrtRuntime, RuntimeError> {
        static RUNTIME: OnceLock<Result<OrtRuntime, RuntimeError>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                let path = find_library()?;
                let fail = |reason: String| RuntimeError::LoadFailed {
                    path: path.clone(),
                    reason,
                };
                let env = ort::init_from(&path)
                    .map_err(|e| fail(e.to_string()))?
                    .with_name("cardiostream")
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                tracing::debug!(path = %path.display(), "onnx runtime loaded");
                Ok(OrtRuntime { env, path })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The ONNX Runtime environment, for building sessions.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    /// The library file that was loaded.
    pub fn library_path(&self) -> &Path {
        &self.path
    }
}

/// Candidate locations, in the order they are tried.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for var in ["CARDIOSTREAM_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.push(PathBuf::from(v));
        }
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.extend(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(Path::to_path_buf),
    );
    for r in roots {
        let p = r.join(INSTALL_REL_PATH);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn find_library() -> Result<PathBuf, RuntimeError> {
    let c = candidates();
    // An explicit variable that names a missing file is an error, not a fallthrough.
    for var in ["CARDIOSTREAM_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(&v);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(RuntimeError::NotFound {
                    looked: format!("{var}={}", p.display()),
                })
            };
        }
    }
    c.iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            looked: c
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

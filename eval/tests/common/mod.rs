//! What the eval tests share.

use std::path::{Path, PathBuf};

/// The shared records (`CARDIOSTREAM_DATA` or `../shared/data/unpack`).
pub(crate) fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CARDIOSTREAM_DATA") {
        return Some(PathBuf::from(d));
    }
    let unpack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/unpack");
    let out = std::process::Command::new(unpack).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

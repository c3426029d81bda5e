//! Helpers shared by the bench binaries that print their own figures.

use std::io::Write as _;
use std::path::PathBuf;

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` of the workspace).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Appends one JSON line to `target/NAME` (best effort: a failure is printed).
pub(crate) fn append_json(name: &str, line: &str) {
    let path = target_dir().join(name);
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"))
    {
        Ok(()) => println!("  appended to {}", path.display()),
        Err(e) => println!("  could not append to {}: {e}", path.display()),
    }
}

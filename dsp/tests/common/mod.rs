//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The unpacked shared data directory, or `None` (with the reason) when absent.
pub(crate) fn data_dir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("CARDIOSTREAM_DATA") {
        let p = PathBuf::from(&d);
        if p.is_dir() {
            return Ok(p);
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/unpack");
    if !script.exists() {
        return Err(format!(
            "CARDIOSTREAM_DATA unset and {} absent",
            script.display()
        ));
    }
    let out = std::process::Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed", script.display()));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let p = PathBuf::from(s.lines().last().unwrap_or("").trim());
    if p.is_dir() {
        Ok(p)
    } else {
        Err(format!("{} printed no directory", script.display()))
    }
}

/// The 13 records of the shared MIT-BIH set used to tune the QRS detector: every
/// other record of the 26 in sorted name order, starting with the first (101, 104,
/// 107, …). The other 13 (102, 106, 108, …) are held out. Fixed before tuning.
pub(crate) const QRS_TUNING: [&str; 13] = [
    "101", "104", "107", "109", "114", "116", "119", "124", "203", "207", "209", "217", "223",
];

pub(crate) mod cinc2015;
pub(crate) mod nst;

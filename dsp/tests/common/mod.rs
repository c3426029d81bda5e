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

/// Beat-by-beat matching (bxb style): each reference beat matches at most one
/// detection within `win` samples, greedily by time. Returns (TP, FN, FP).
pub(crate) fn score(reference: &[u64], detected: &[u64], win: u64) -> (usize, usize, usize) {
    let (mut i, mut j) = (0, 0);
    let (mut tp, mut fn_, mut fp) = (0, 0, 0);
    while i < reference.len() && j < detected.len() {
        let (r, d) = (reference[i], detected[j]);
        if d + win < r {
            fp += 1;
            j += 1;
        } else if r + win < d {
            fn_ += 1;
            i += 1;
        } else {
            // Within the window: pair them unless the next detection is closer.
            if j + 1 < detected.len() && detected[j + 1].abs_diff(r) < d.abs_diff(r) {
                fp += 1;
                j += 1;
                continue;
            }
            tp += 1;
            i += 1;
            j += 1;
        }
    }
    fn_ += reference.len() - i;
    fp += detected.len() - j;
    (tp, fn_, fp)
}

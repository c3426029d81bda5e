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

/// The 13 records of the shared MIT-BIH set used to tune the QRS detector: every
/// other record of the 26 in sorted name order, starting with the first (101, 104,
/// 107, …). The other 13 (102, 106, 108, …) are held out. Fixed before tuning.
pub(crate) const QRS_TUNING: [&str; 13] = [
    "101", "104", "107", "109", "114", "116", "119", "124", "203", "207", "209", "217", "223",
];

/// Ventricular flutter/fibrillation episodes (`[` … `]`, inclusive sample ranges)
/// of an annotation list; an episode still open at the end runs to `u64::MAX`.
pub(crate) fn vf_episodes(ann: &[ecg_ingest::wfdb::Annotation]) -> Vec<(u64, u64)> {
    let mut vf = Vec::new();
    let mut on = None;
    for a in ann {
        match a.symbol {
            '[' => on = Some(a.sample),
            ']' => {
                if let Some(s) = on.take() {
                    vf.push((s, a.sample));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = on {
        vf.push((s, u64::MAX));
    }
    vf
}

/// `v` without the samples inside any of `episodes`.
pub(crate) fn outside(v: &[u64], episodes: &[(u64, u64)]) -> Vec<u64> {
    v.iter()
        .copied()
        .filter(|b| !episodes.iter().any(|&(s, e)| (s..=e).contains(b)))
        .collect()
}

/// Beat annotations (`is_beat`) of a record, as sample indices.
pub(crate) fn reference_beats(ann: &[ecg_ingest::wfdb::Annotation]) -> Vec<u64> {
    ann.iter()
        .filter(|a| ecg_ingest::wfdb::is_beat(a.code))
        .map(|a| a.sample)
        .collect()
}

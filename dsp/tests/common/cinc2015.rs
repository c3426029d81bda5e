//! CinC 2015 alarm records streamed through [`LethalDetector`], shared by the
//! `cinc2015` test and the `alarms` example (which includes this file by path).
//!
//! The alarm type is read from the header's first comment line; the verdict (second
//! comment line) is never read here: scoring takes the verdicts from the `ALARMS`
//! file, apart from the detector.
#![allow(dead_code, clippy::print_stdout)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ecg_dsp::lethal::{LethalAssessment, LethalCall, LethalConfig, LethalDetector};
use ecg_ingest::wfdb;
use ecg_types::{Condition, FindingStatus, PulseKind};

/// One alarm record: its channels in physical units and the alarm type.
pub(crate) struct AlarmRecord {
    pub(crate) name: String,
    /// The header's first comment line, e.g. `Ventricular_Tachycardia`.
    pub(crate) alarm_type: String,
    pub(crate) condition: Condition,
    pub(crate) fs: u32,
    pub(crate) n_samples: usize,
    pub(crate) ecg_names: Vec<String>,
    /// ECG leads (mV).
    pub(crate) ecg: Vec<Vec<f32>>,
    /// Pulse channels: kind, rate, samples (NU or mmHg).
    pub(crate) pulses: Vec<(PulseKind, u32, Vec<f32>)>,
}

/// The condition a CinC 2015 alarm type names.
pub(crate) fn condition_of(alarm_type: &str) -> Option<Condition> {
    Some(match alarm_type {
        "Asystole" => Condition::Asystole,
        "Bradycardia" => Condition::ExtremeBradycardia,
        "Tachycardia" => Condition::ExtremeTachycardia,
        "Ventricular_Tachycardia" => Condition::VentricularTachycardia,
        "Ventricular_Flutter_Fib" => Condition::VentricularFibrillation,
        _ => return None,
    })
}

/// Short label of an alarm type for tables.
pub(crate) fn label(c: Condition) -> &'static str {
    match c {
        Condition::Asystole => "asystole",
        Condition::ExtremeBradycardia => "brady",
        Condition::ExtremeTachycardia => "tachy",
        Condition::VentricularTachycardia => "vtach",
        Condition::VentricularFibrillation => "vfib",
        _ => "other",
    }
}

pub(crate) fn load(dir: &Path, name: &str) -> Result<AlarmRecord, String> {
    let rec = wfdb::read_record(&dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    let alarm_type = rec
        .comments
        .first()
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("{name}: no alarm type comment"))?;
    let condition = condition_of(&alarm_type)
        .ok_or_else(|| format!("{name}: unknown alarm type {alarm_type}"))?;
    let fs = rec.fs.round() as u32;
    let mut ecg = Vec::new();
    let mut ecg_names = Vec::new();
    let mut pulses = Vec::new();
    for (i, s) in rec.signals.iter().enumerate() {
        let desc = s.description.to_ascii_uppercase();
        let kind = if s.units.eq_ignore_ascii_case("mV") {
            None
        } else if desc.contains("PLETH") {
            Some(Some(PulseKind::Pleth))
        } else if desc.contains("ABP")
            || desc.contains("ART")
            || s.units.eq_ignore_ascii_case("mmHg")
        {
            Some(Some(PulseKind::ArterialPressure))
        } else {
            Some(None) // RESP and others: not used
        };
        match kind {
            None => {
                ecg.push(rec.physical(i));
                ecg_names.push(s.description.clone());
            }
            Some(Some(k)) => pulses.push((k, fs, rec.physical(i))),
            Some(None) => {}
        }
    }
    Ok(AlarmRecord {
        name: name.to_string(),
        alarm_type,
        condition,
        fs,
        n_samples: rec.n_samples,
        ecg_names,
        ecg,
        pulses,
    })
}

/// Record names of the folder (from `RECORDS`, else the `.hea` files), sorted.
pub(crate) fn record_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_to_string(dir.join("RECORDS")) {
        Ok(s) => s
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        Err(_) => std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let p = e.path();
                        (p.extension().is_some_and(|x| x == "hea"))
                            .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                            .flatten()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    names.sort();
    names
}

/// The experts' verdicts from `ALARMS` (`record,type,1|0`), for scoring only.
pub(crate) fn verdicts(dir: &Path) -> Result<HashMap<String, bool>, String> {
    let s = std::fs::read_to_string(dir.join("ALARMS")).map_err(|e| format!("ALARMS: {e}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[2] == "1"))
        })
        .collect())
}

/// The held-out records (`docs/cinc2015-heldout.txt`).
pub(crate) fn heldout() -> HashSet<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cinc2015-heldout.txt");
    std::fs::read_to_string(&p)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The CinC 2015 folder of the shared data, if present.
pub(crate) fn data_dir() -> Result<PathBuf, String> {
    let d = super::data_dir()?.join("cinc2015");
    if d.join("ALARMS").exists() {
        Ok(d)
    } else {
        Err(format!("{} has no ALARMS file", d.display()))
    }
}

/// Streams a record through a detector in blocks of `block` samples (pulse data of a
/// block first, as the pipeline pushes a frame), returning every assessment.
pub(crate) fn stream(rec: &AlarmRecord, cfg: &LethalConfig, block: usize) -> Vec<LethalAssessment> {
    stream_keep(rec, cfg, block).0
}

/// [`stream`], also returning the detector.
pub(crate) fn stream_keep(
    rec: &AlarmRecord,
    cfg: &LethalConfig,
    block: usize,
) -> (Vec<LethalAssessment>, LethalDetector) {
    let kinds: Vec<(PulseKind, u32)> = rec.pulses.iter().map(|(k, r, _)| (*k, *r)).collect();
    let mut det = LethalDetector::new(cfg, rec.fs, rec.ecg.len(), &kinds);
    let nl = rec.ecg.len();
    let lead_off = vec![false; nl];
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(nl * block);
    let mut i = 0;
    while i < rec.n_samples {
        let m = block.min(rec.n_samples - i);
        for (c, (_, _, x)) in rec.pulses.iter().enumerate() {
            det.push_pulse(c, &x[i..i + m]);
        }
        buf.clear();
        for lead in &rec.ecg {
            buf.extend_from_slice(&lead[i..i + m]);
        }
        det.push_ecg(&buf, &lead_off, &mut out);
        i += m;
    }
    (out, det)
}

/// The decision the challenge scores: the first Present call of the record's alarm
/// condition from an assessment that ends within the 10 s before the alarm (the
/// record's last sample).
pub(crate) fn decision<'a>(
    rec: &AlarmRecord,
    assessments: &'a [LethalAssessment],
) -> (Option<&'a LethalCall>, Option<&'a LethalCall>) {
    let n = rec.n_samples as u64;
    let lo = n.saturating_sub(10 * u64::from(rec.fs));
    let mut last = None;
    for a in assessments
        .iter()
        .filter(|a| a.end_sample >= lo && a.end_sample <= n)
    {
        if let Some(c) = a.call(rec.condition) {
            if c.status == FindingStatus::Present {
                return (Some(c), Some(c));
            }
            if c.evidence.suppressed_by.is_some() || last.is_none() {
                last = Some(c);
            }
        }
    }
    (None, last)
}

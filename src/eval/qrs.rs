//! `cardiostream eval qrs`.
//!
//! Runs the streaming QRS detector on lead 0 of every WFDB record of a folder that
//! has an `.atr` file, fed in 200 ms frames, writes the detected beats and scores
//! them beat by beat against the reference beat annotations (ANSI/AAMI EC57,
//! PhysioNet `bxb` style: a detection within the match window of a reference beat is
//! a true positive, each reference beat matches at most one detection).
//!
//! It drives [`ecg_dsp::QrsDetector`] directly rather than through `StreamDsp`:
//! `StreamDsp` feeds this very detector the raw lead-0 samples one by one (so the
//! beats are the same), but it only hands beats out inside closed rhythm windows, so
//! the beats of the record's last partial window would be lost. At the end of a
//! record the detector is flushed with its fixed latency of copies of the last
//! sample, and only beats inside the record are kept.
//!
//! Two figures are printed: **EC57** (ventricular flutter/fibrillation episodes,
//! between `[` and `]` annotations, excluded from scoring — reference beats and
//! detections alike — as EC57 prescribes) and **whole** (nothing excluded).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ecg_dsp::QrsDetector;
use ecg_ingest::wfdb;

/// Arguments of `eval qrs`.
#[derive(Debug, clap::Args)]
pub struct QrsArgs {
    /// Folder of WFDB records with `.atr` annotations.
    #[arg(long)]
    pub db: PathBuf,
    /// Comma-separated record names (default: every record in the folder).
    #[arg(long, value_delimiter = ',')]
    pub records: Vec<String>,
    /// Folder for `REC.csv` files of detected beats (sample indices).
    #[arg(long)]
    pub out: PathBuf,
    /// Match window half-width in milliseconds.
    #[arg(long, default_value_t = 150.0)]
    pub tolerance_ms: f64,
}

/// Frame length fed to the detector (s).
const FRAME_S: f64 = 0.2;

/// True positives, false negatives, false positives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Reference beats matched by a detection.
    pub tp: usize,
    /// Reference beats without a detection.
    pub fn_: usize,
    /// Detections without a reference beat.
    pub fp: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
    }

    /// Sensitivity (%).
    pub fn se(&self) -> f64 {
        100.0 * self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }

    /// Positive predictivity (%).
    pub fn pp(&self) -> f64 {
        100.0 * self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
}

/// Beat-by-beat matching of sorted sample indices: each reference beat matches at
/// most one detection within `win` samples, greedily in time order (a detection
/// gives way to the next one when that is closer to the reference beat).
pub fn score(reference: &[u64], detected: &[u64], win: u64) -> Counts {
    let (mut i, mut j) = (0, 0);
    let mut c = Counts::default();
    while i < reference.len() && j < detected.len() {
        let (r, d) = (reference[i], detected[j]);
        if d + win < r {
            c.fp += 1;
            j += 1;
        } else if r + win < d {
            c.fn_ += 1;
            i += 1;
        } else if j + 1 < detected.len() && detected[j + 1].abs_diff(r) < d.abs_diff(r) {
            c.fp += 1;
            j += 1;
        } else {
            c.tp += 1;
            i += 1;
            j += 1;
        }
    }
    c.fn_ += reference.len() - i;
    c.fp += detected.len() - j;
    c
}

/// Ventricular flutter/fibrillation episodes (`[` … `]`, inclusive); an episode
/// still open at the end of the annotations runs to the end of the record.
pub fn vf_episodes(ann: &[wfdb::Annotation]) -> Vec<(u64, u64)> {
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

fn outside(v: &[u64], episodes: &[(u64, u64)]) -> Vec<u64> {
    v.iter()
        .copied()
        .filter(|b| !episodes.iter().any(|&(s, e)| (s..=e).contains(b)))
        .collect()
}

/// Beats of a single-lead signal (mV) found by the streaming detector fed in frames
/// of `frame` samples, flushed at the end; beats beyond the signal are dropped.
pub fn detect(signal_mv: &[f32], fs: f64, frame: usize) -> Vec<u64> {
    let mut det = QrsDetector::new(fs);
    let mut beats = Vec::new();
    for chunk in signal_mv.chunks(frame.max(1)) {
        det.push(chunk, &mut beats);
    }
    let last = signal_mv.last().copied().unwrap_or(0.0);
    det.push(&vec![last; det.latency_samples() + 1], &mut beats);
    beats.retain(|&b| b < signal_mv.len() as u64);
    beats
}

/// Runs `eval qrs`.
///
/// # Errors
/// When records cannot be read or results cannot be written.
pub fn run(args: &QrsArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.records.is_empty() {
        super::record_names(&args.db)?
            .into_iter()
            .filter(|n| args.db.join(format!("{n}.atr")).exists())
            .collect()
    } else {
        args.records.clone()
    };
    anyhow::ensure!(
        !names.is_empty(),
        "no records with .atr annotations in {}",
        args.db.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "QRS detection, lead 0, {} ms frames, match window ±{} ms; EC57 = VF/VFL episodes ([ … ]) excluded, whole = nothing excluded",
        FRAME_S * 1000.0,
        args.tolerance_ms
    )?;
    writeln!(
        stdout,
        "{:<10} {:>6} {:>6} {:>5} {:>5} {:>7} {:>7} | {:>6} {:>6} {:>5} {:>5} {:>7} {:>7}",
        "record", "beats", "TP", "FN", "FP", "Se%", "+P%", "whole:", "TP", "FN", "FP", "Se%", "+P%"
    )?;
    let (mut g_ec57, mut g_whole) = (Counts::default(), Counts::default());
    let mut fs_seen = None;
    for name in &names {
        let base = args.db.join(name);
        let rec = wfdb::read_record(&base).with_context(|| format!("reading {name}"))?;
        anyhow::ensure!(!rec.signals.is_empty(), "{name} has no signals");
        let ann = wfdb::read_annotations(&args.db.join(format!("{name}.atr")))
            .with_context(|| format!("reading {name}.atr"))?;
        let reference: Vec<u64> = ann
            .iter()
            .filter(|a| wfdb::is_beat(a.code))
            .map(|a| a.sample)
            .collect();
        let x = rec.physical(0);
        let frame = ((FRAME_S * rec.fs).round() as usize).max(1);
        let beats = detect(&x, rec.fs, frame);
        let path = args.out.join(format!("{name}.csv"));
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for b in &beats {
            writeln!(w, "{b}")?;
        }
        w.flush()?;
        let win = (args.tolerance_ms / 1000.0 * rec.fs).round() as u64;
        let whole = score(&reference, &beats, win);
        let vf = vf_episodes(&ann);
        let ec57 = score(&outside(&reference, &vf), &outside(&beats, &vf), win);
        g_ec57.add(ec57);
        g_whole.add(whole);
        fs_seen = Some(rec.fs);
        writeln!(
            stdout,
            "{name:<10} {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>7.2} | {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>7.2}",
            ec57.tp + ec57.fn_,
            ec57.tp,
            ec57.fn_,
            ec57.fp,
            ec57.se(),
            ec57.pp(),
            "",
            whole.tp,
            whole.fn_,
            whole.fp,
            whole.se(),
            whole.pp()
        )?;
    }
    writeln!(
        stdout,
        "{:<10} {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>7.2} | {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>7.2}",
        "gross",
        g_ec57.tp + g_ec57.fn_,
        g_ec57.tp,
        g_ec57.fn_,
        g_ec57.fp,
        g_ec57.se(),
        g_ec57.pp(),
        "",
        g_whole.tp,
        g_whole.fn_,
        g_whole.fp,
        g_whole.se(),
        g_whole.pp()
    )?;
    if let Some(fs) = fs_seen {
        let lat = QrsDetector::new(fs).latency_samples();
        writeln!(
            stdout,
            "detector latency: {lat} samples at {fs} Hz ({:.3} s); beats written to {}",
            lat as f64 / fs,
            args.out.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_matches_within_the_window() {
        let c = score(&[100, 200, 300], &[105, 260, 301, 500], 10);
        assert_eq!(
            c,
            Counts {
                tp: 2,
                fn_: 1,
                fp: 2
            }
        );
        assert_eq!(
            score(&[], &[1], 5),
            Counts {
                tp: 0,
                fn_: 0,
                fp: 1
            }
        );
    }

    #[test]
    fn detects_every_beat_of_a_synthetic_record_in_frames() {
        let fs = 250.0;
        let n = (30.0 * fs) as usize;
        let beats: Vec<u64> = (0..36).map(|k| 100 + k * 200).collect();
        let mut x = vec![0.0f32; n];
        for &b in &beats {
            for (k, v) in [0.1f32, 0.5, 1.0, 0.5, 0.1].iter().enumerate() {
                x[b as usize + k - 2] += v;
            }
        }
        let d = detect(&x, fs, 50);
        assert_eq!(d, detect(&x, fs, 1));
        let c = score(&beats, &d, 37);
        assert!(c.fn_ <= 1 && c.fp == 0, "{c:?}");
    }
}

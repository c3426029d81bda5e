//! `cardiostream eval qrs`.
//!
//! Finds the beats of every WFDB record of a folder that has an `.atr` file as the
//! pipeline finds a stream's beats, fed in 200 ms frames, writes them and scores them
//! beat by beat against the reference beat annotations (ANSI/AAMI EC57, PhysioNet
//! `bxb` style: a detection within the match window of a reference beat is a true
//! positive, each reference beat matches at most one detection).
//!
//! The record's ECG leads are those a replay of it sends
//! ([`ecg_ingest::replay::lead_signals`]): with two or more, the beats are those of
//! [`ecg_dsp::PairedQrs`] on the first two (lead 0's beats, except where lead 0 is
//! noisy and lead 1 clearly cleaner), as `StreamDsp` takes them; with one, the
//! streaming QRS detector's on it. It drives the detectors directly rather than
//! through `StreamDsp`, which feeds them the same raw samples one by one (so the
//! beats are the same) but only hands beats out inside closed rhythm windows, so the
//! beats of the record's last partial window would be lost. At the end of a record
//! the detectors are flushed with their fixed latency of copies of the last sample,
//! and only beats inside the record are kept.
//!
//! Two figures are printed: **EC57** (ventricular flutter/fibrillation episodes,
//! between `[` and `]` annotations, excluded from scoring — reference beats and
//! detections alike — as EC57 prescribes) and **whole** (nothing excluded).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ecg_dsp::score::{match_beats, outside, BeatCounts};
use ecg_dsp::{PairedQrs, QrsDetector};
use ecg_ingest::{replay, wfdb};

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

/// A sample as the stream carries it: WFDB's invalid value (non-finite here) is sent
/// as 0 with the lead flagged off (`ingest::replay`), and `StreamDsp` feeds its
/// detectors 0 for any non-finite sample.
fn as_streamed(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// `chunk` as the stream carries it ([`as_streamed`]), into `buf` (cleared first).
fn streamed_into(buf: &mut Vec<f32>, chunk: &[f32]) {
    buf.clear();
    buf.extend(chunk.iter().map(|&v| as_streamed(v)));
}

/// Beats of a single-lead signal (mV) found by the streaming detector fed in frames
/// of `frame` samples, flushed at the end; beats beyond the signal are dropped.
/// Non-finite samples are fed as 0, as in the pipeline.
pub fn detect(signal_mv: &[f32], fs: f64, frame: usize) -> Vec<u64> {
    let mut det = QrsDetector::new(fs);
    let mut beats = Vec::new();
    let mut x = Vec::with_capacity(frame.max(1));
    for chunk in signal_mv.chunks(frame.max(1)) {
        streamed_into(&mut x, chunk);
        det.push(&x, &mut beats);
    }
    det.finish(&mut beats);
    beats.retain(|&b| b < signal_mv.len() as u64);
    beats
}

/// Beats of two leads (mV) found by [`PairedQrs`] fed in frames of `frame` samples,
/// flushed at the end; beats beyond the signals are dropped. Non-finite samples
/// (WFDB's invalid value) are fed as 0, with lead 1 flagged off for the frame when
/// they are lead 1's, as a replay sends them.
pub fn detect_two(lead0_mv: &[f32], lead1_mv: &[f32], fs: f64, frame: usize) -> Vec<u64> {
    let mut det = PairedQrs::new(fs);
    let mut beats = Vec::new();
    let n = lead0_mv.len().min(lead1_mv.len());
    let frame = frame.max(1);
    let (mut x0, mut x1) = (Vec::with_capacity(frame), Vec::with_capacity(frame));
    for (a, b) in lead0_mv[..n].chunks(frame).zip(lead1_mv[..n].chunks(frame)) {
        streamed_into(&mut x0, a);
        streamed_into(&mut x1, b);
        let off1 = b.iter().any(|v| !v.is_finite());
        det.push(&x0, &x1, off1, &mut beats);
    }
    det.finish(&mut beats);
    beats.retain(|&b| b < n as u64);
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
        "QRS detection, the stream's beats (leads 0 and 1 where the record has two ECG leads, else lead 0), {} ms frames, match window ±{} ms; EC57 = VF/VFL episodes ([ … ]) excluded, whole = nothing excluded",
        FRAME_S * 1000.0,
        args.tolerance_ms
    )?;
    writeln!(
        stdout,
        "{:<10} {:>6} {:>6} {:>5} {:>5} {:>7} {:>7} | {:>6} {:>6} {:>5} {:>5} {:>7} {:>7}",
        "record", "beats", "TP", "FN", "FP", "Se%", "+P%", "whole:", "TP", "FN", "FP", "Se%", "+P%"
    )?;
    let (mut g_ec57, mut g_whole) = (BeatCounts::default(), BeatCounts::default());
    let mut fs_seen = None;
    let mut two_leads = 0usize;
    let mut scored = 0usize;
    for name in &names {
        let read = || -> anyhow::Result<_> {
            let rec = wfdb::read_record(&args.db.join(name))
                .with_context(|| format!("reading {name}"))?;
            anyhow::ensure!(!rec.signals.is_empty(), "{name} has no signals");
            let ann = wfdb::read_annotations(&args.db.join(format!("{name}.atr")))
                .with_context(|| format!("reading {name}.atr"))?;
            Ok((rec, ann))
        };
        let Some((rec, ann)) = super::unless_unreadable(name, read()) else {
            continue;
        };
        let reference = wfdb::beat_samples(&ann);
        let frame = ((FRAME_S * rec.fs).round() as usize).max(1);
        let leads = replay::lead_signals(&rec);
        let beats = match leads[..] {
            [(a, _), (b, _), ..] => {
                two_leads += 1;
                detect_two(&rec.physical(a), &rec.physical(b), rec.fs, frame)
            }
            [(a, _)] => detect(&rec.physical(a), rec.fs, frame),
            // No signal a replay would send as ECG: the first one, as before.
            [] => detect(&rec.physical(0), rec.fs, frame),
        };
        scored += 1;
        let path = args.out.join(format!("{name}.csv"));
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for b in &beats {
            writeln!(w, "{b}")?;
        }
        w.flush()?;
        let win = (args.tolerance_ms / 1000.0 * rec.fs).round() as u64;
        let whole = match_beats(&reference, &beats, win);
        let vf = wfdb::vf_episodes(&ann);
        let ec57 = match_beats(&outside(&reference, &vf), &outside(&beats, &vf), win);
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
        let lat2 = PairedQrs::new(fs).latency_samples();
        writeln!(
            stdout,
            "{two_leads} of {scored} records with two ECG leads; latency {lat} samples at {fs} Hz ({:.3} s) with one lead, {lat2} ({:.3} s) with two; beats written to {}",
            lat as f64 / fs,
            lat2 as f64 / fs,
            args.out.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Two identical leads: lead 0 is never the noisier one, its beats stand; so
        // with lead 1 missing (WFDB's invalid value, flagged off).
        assert_eq!(detect_two(&x, &x, fs, 50), d);
        assert_eq!(detect_two(&x, &vec![f32::NAN; n], fs, 50), d);
        // Invalid samples are fed as the pipeline feeds them: as 0.
        let mut gap = x.clone();
        gap[3100..3500].fill(f32::NAN);
        let mut zeros = x.clone();
        zeros[3100..3500].fill(0.0);
        assert_eq!(detect(&gap, fs, 50), detect(&zeros, fs, 50));
        assert_eq!(detect_two(&gap, &x, fs, 50), detect_two(&zeros, &x, fs, 50));
        let c = match_beats(&beats, &d, 37);
        assert!(c.fn_ <= 1 && c.fp == 0, "{c:?}");
    }
}

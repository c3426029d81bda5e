//! `cardiostream eval af-episodes`: AF episodes of continuous recordings, found by the
//! pipeline's own per-stream code, scored against rhythm annotations.
//!
//! Each WFDB record (with a `.atr` file) is replayed as a device stream — 200 ms
//! frames of every lead whose name the record gives, wire format v1 — through the
//! stages the pipeline runs (`ecg_pipeline::Processor`: sequencer, analyzer, scorer
//! with the bundled models and its AF episode tracker). An episode is what the
//! findings of the active AF model say: from a finding's `episode_start` to the
//! `episode_end` of the finding that ends it (the tracker's end, which can lie inside
//! the last window segment reported in the episode), or, for an episode still open
//! when the record ends, to where the tracker would end it if the stream stopped there
//! (`AfEpisodes::at_stop`: the offset a window without AF evidence has dated, or the
//! last AF segment's end after windows it could not score). A record's ends go with
//! the window nearest them: an episode open at the record's first window (which
//! starts after the analysis's warm-up and grid phase, seconds into the record) starts
//! at the record's first sample, and one that the record's last window sustained runs
//! to its last sample.
//! Output: `record,start_s,end_s`, seconds from the record's start.
//!
//! Reference: the rhythm annotations `(AFIB` and `(AFL` open an AF episode, any other
//! rhythm annotation closes it (ANSI/AAMI EC57, which counts atrial flutter with AF).
//! Scores, gross over records (EC57): episode sensitivity (reference episodes that
//! any detected episode overlaps) and positive predictivity (detected episodes that
//! overlap a reference one), duration sensitivity (reference AF time detected) and
//! positive predictivity (detected time that is reference AF), and per record the
//! AF burden (share of the record in AF) and its error.
//!
//! `--noise bw|ma|em --snr DB` streams the records with noise-stress-test noise added
//! as PhysioNet's `nst` adds it (`super::nst`); the reference stays the clean
//! record's annotations.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ecg_dsp::stream::DspConfig;
use ecg_inference::Model;
use ecg_ingest::replay::RecordSource;
use ecg_pipeline::episodes::centre_segment;
use ecg_pipeline::Processor;
use ecg_types::{Condition, FindingStatus};

use super::nst::{load_noise, noisy_record_at, Noise, NoiseKind};
use super::{record_names, replay, unless_unreadable, T0_US};

/// Arguments of `eval af-episodes`.
#[derive(Debug, clap::Args)]
pub struct EpisodesArgs {
    /// Folder of WFDB records with `.atr` rhythm annotations (e.g. MIT-BIH).
    #[arg(long)]
    pub db: PathBuf,
    /// Output CSV: `record,start_s,end_s`, one line per detected AF episode.
    #[arg(long)]
    pub out: PathBuf,
    /// Only these records (default: every record with a `.atr` file).
    #[arg(long, value_delimiter = ',')]
    pub records: Vec<String>,
    /// Models directory (`DIR/*/*.toml`); the active AF model's episodes are scored.
    /// Default: `models` in the working directory if there is one, else the bundled
    /// models of the source tree the binary was built from.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Stream the records with this noise of the MIT-BIH Noise Stress Test Database
    /// added (`super::nst`: as PhysioNet's `nst` adds it, standard protocol — clean
    /// until 5:00, then 2 min noisy / 2 min clean in turn; resampled to a record at
    /// another rate); `em` is nstdb's `em` record, or without one is recovered from
    /// `118e00` and MIT-BIH record 118 (from `--db`, else `mitdb` beside `--nstdb`).
    /// Default: the records as they are.
    #[arg(long, value_enum, requires = "snr")]
    pub noise: Option<NoiseKind>,
    /// SNR (dB) of the added noise, against each signal's QRS amplitude (`nst -s`).
    #[arg(long, requires = "noise", allow_negative_numbers = true)]
    pub snr: Option<f64>,
    /// Other noise on the same records: the noise taken this many whole noisy/clean
    /// cycles (4 min each) further into the noise record (wrapping around its end).
    #[arg(long, requires = "noise", default_value_t = 0)]
    pub noise_offset_cycles: u32,
    /// Folder of the noise records (`bw`, `ma`, `em` or `118e00`); default: `nstdb`
    /// next to `--db`.
    #[arg(long)]
    pub nstdb: Option<PathBuf>,
}

/// An interval of seconds from a record's start.
pub type Span = (f64, f64);

/// AF and atrial flutter episodes of a record's rhythm annotations, in seconds.
pub fn reference_episodes(ann: &[ecg_ingest::wfdb::Annotation], fs: f64, end_s: f64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut open: Option<f64> = None;
    for a in ann {
        let Some(aux) = a.aux.as_deref() else {
            continue;
        };
        let aux = aux.trim_end_matches('\0');
        if !aux.starts_with('(') {
            continue;
        }
        let t = a.sample as f64 / fs;
        let af = aux.starts_with("(AFIB") || aux.starts_with("(AFL");
        match (af, open) {
            (true, None) => open = Some(t),
            (false, Some(s)) => {
                out.push((s, t));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        out.push((s, end_s));
    }
    out
}

fn overlap(a: Span, b: Span) -> f64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0.0)
}

fn total(spans: &[Span]) -> f64 {
    spans.iter().map(|s| s.1 - s.0).sum()
}

/// Counts behind the EC57 AF episode and duration statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpisodeCounts {
    /// Reference episodes.
    pub ref_episodes: usize,
    /// Reference episodes some detected episode overlaps.
    pub ref_detected: usize,
    /// Detected episodes.
    pub det_episodes: usize,
    /// Detected episodes that overlap some reference episode.
    pub det_true: usize,
    /// Reference AF time (s).
    pub ref_s: f64,
    /// Detected AF time (s).
    pub det_s: f64,
    /// Time both call AF (s).
    pub both_s: f64,
}

impl EpisodeCounts {
    /// The counts of one record.
    pub fn of(reference: &[Span], detected: &[Span]) -> Self {
        let hits = |a: &Span, others: &[Span]| others.iter().any(|b| overlap(*a, *b) > 0.0);
        Self {
            ref_episodes: reference.len(),
            ref_detected: reference.iter().filter(|r| hits(r, detected)).count(),
            det_episodes: detected.len(),
            det_true: detected.iter().filter(|d| hits(d, reference)).count(),
            ref_s: total(reference),
            det_s: total(detected),
            both_s: reference
                .iter()
                .map(|r| detected.iter().map(|d| overlap(*r, *d)).sum::<f64>())
                .sum(),
        }
    }

    /// Sums.
    pub fn add(&mut self, o: &EpisodeCounts) {
        self.ref_episodes += o.ref_episodes;
        self.ref_detected += o.ref_detected;
        self.det_episodes += o.det_episodes;
        self.det_true += o.det_true;
        self.ref_s += o.ref_s;
        self.det_s += o.det_s;
        self.both_s += o.both_s;
    }

    /// (episode Se, episode +P, duration Se, duration +P) in %, `NaN` when undefined.
    pub fn rates(&self) -> (f64, f64, f64, f64) {
        let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { f64::NAN };
        (
            pct(self.ref_detected as f64, self.ref_episodes as f64),
            pct(self.det_true as f64, self.det_episodes as f64),
            pct(self.both_s, self.ref_s),
            pct(self.both_s, self.det_s),
        )
    }
}

/// AF episodes of the record `src` replays (named `name`) as the pipeline finds them
/// (seconds from its start).
///
/// # Errors
/// When the record cannot be read or replayed.
pub fn detect(
    src: RecordSource,
    name: &str,
    models: &Arc<Vec<Model>>,
    dsp: &DspConfig,
) -> anyhow::Result<Vec<Span>> {
    let end_s = src.record_frames() as f64 / src.record_fs();
    let t0 = src.t0_us();
    let (tracked_at, tracked) = super::active_af_model(models)?;
    let man = tracked.manifest();
    let source = tracked.source();
    let hop_us = ecg_types::seconds_to_us(f64::from(man.hop_s.unwrap_or(man.window_s)));
    let mut p = Processor::new(
        dsp.clone(),
        10.0,
        models.clone(),
        Arc::new(ecg_pipeline::events::Discard),
    );
    let mut episodes: Vec<(i64, i64)> = Vec::new();
    // The record's first window's start.
    let mut first_window: Option<i64> = None;
    replay(src, name, &mut p, 64, |findings| {
        for f in findings {
            if f.condition != Condition::AtrialFibrillation || f.source != source {
                continue;
            }
            first_window.get_or_insert(f.window_start.0);
            // The finding that ends an episode says when it ended (before any episode
            // the same finding opens).
            if let (Some(end), Some(e)) = (f.episode_end, episodes.last_mut()) {
                e.1 = end.0.max(e.0);
            }
            if f.status != FindingStatus::Present {
                continue;
            }
            let (Some(start), (_, seg_end)) = (
                f.episode_start,
                centre_segment(f.window_start.0, f.window_end.0, hop_us),
            ) else {
                continue;
            };
            match episodes.last_mut() {
                Some(e) if e.0 == start.0 => e.1 = e.1.max(seg_end),
                _ => episodes.push((start.0, seg_end)),
            }
        }
    })?;
    // An episode still open when the record ends: where the tracker would end it if
    // the stream stopped here (the offset a window without AF evidence has dated, or
    // the last AF segment's end after unread windows), or, when the record's last
    // window sustained it, through the record's end: no window's centre is nearer the
    // stretch after that window's centre segment. Likewise no window covers the
    // stretch before the first window (the analysis's warm-up and grid phase): an
    // episode open at the first window starts with the record.
    if let Some((_, start, end)) = p.af_episodes_at_stop(tracked_at).into_iter().next() {
        if let Some(e) = episodes.last_mut().filter(|e| e.0 == start) {
            e.1 = end.unwrap_or(t0 + ecg_types::seconds_to_us(end_s)).max(e.0);
        }
    }
    if let (Some(first), Some(e)) = (first_window, episodes.first_mut()) {
        if e.0 <= first {
            e.0 = t0;
        }
    }
    Ok(episodes
        .into_iter()
        .map(|(s, e)| {
            (
                ((s - t0) as f64 / 1e6).max(0.0),
                ((e - t0) as f64 / 1e6).min(end_s),
            )
        })
        .collect())
}

/// Runs `eval af-episodes`.
///
/// # Errors
/// When the models or records cannot be read or the output cannot be written.
#[allow(clippy::print_stdout)]
pub fn run(args: &EpisodesArgs) -> anyhow::Result<()> {
    let dir = args
        .models
        .clone()
        .unwrap_or_else(ecg_inference::bundled_models_dir);
    let models = Arc::new(ecg_inference::load_models(&dir, 1)?);
    let names: Vec<String> = if args.records.is_empty() {
        record_names(&args.db)?
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
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    writeln!(out, "record,start_s,end_s")?;
    let noise = match (args.noise, args.snr) {
        (Some(kind), Some(snr)) => {
            let nstdb = args
                .nstdb
                .clone()
                .unwrap_or_else(|| args.db.join("..").join("nstdb"));
            let n = load_noise(&nstdb, &args.db, kind)
                .with_context(|| format!("loading the {} noise", kind.name()))?;
            println!(
                "noise: {} at {snr} dB SNR, standard protocol (noise from {}{})",
                kind.name(),
                nstdb.display(),
                match args.noise_offset_cycles {
                    0 => String::new(),
                    k => format!(", {k} cycles = {} min further in", 4 * k),
                }
            );
            Some((n, snr))
        }
        _ => None,
    };
    let dsp = DspConfig::default();
    let mut gross = EpisodeCounts::default();
    let mut burden_err = Vec::new();
    println!(
        "record   dur_s   ref_AF_s  det_AF_s  both_s  ref_ep det_ep  burden_ref burden_det  error"
    );
    let mut skipped = Vec::new();
    // The noise at the records' other rates, resampled once per rate.
    let mut resampled: Vec<Noise> = Vec::new();
    for name in &names {
        let mut one = || -> anyhow::Result<_> {
            let path = args.db.join(name);
            let ann = read_atr(&args.db, name)?;
            let src = match &noise {
                // Without noise the record is read from its files as it is replayed:
                // memory does not grow with its length.
                None => RecordSource::open(&path, T0_US, 200, None)
                    .with_context(|| format!("reading {name}"))?,
                Some((n, snr)) => {
                    let rec = ecg_ingest::wfdb::read_record(&path)
                        .with_context(|| format!("reading {name}"))?;
                    let n = if n.is_at(rec.fs) {
                        n
                    } else {
                        let i = match resampled.iter().position(|r| r.is_at(rec.fs)) {
                            Some(i) => i,
                            None => {
                                resampled.push(n.at_rate(rec.fs)?.into_owned());
                                resampled.len() - 1
                            }
                        };
                        &resampled[i]
                    };
                    let rec = noisy_record_at(&rec, &ann, n, *snr, args.noise_offset_cycles)?;
                    RecordSource::new(&rec, T0_US, 200, None)?
                }
            };
            let (fs, frames) = (src.record_fs(), src.record_frames());
            let detected = detect(src, name, &models, &dsp)?;
            Ok((fs, frames, ann, detected))
        };
        let Some((fs, frames, ann, detected)) = unless_unreadable(name, one()) else {
            skipped.push(name.as_str());
            continue;
        };
        for (s, e) in &detected {
            writeln!(out, "{name},{s:.3},{e:.3}")?;
        }
        let dur = frames as f64 / fs;
        let reference = reference_episodes(&ann, fs, dur);
        let c = EpisodeCounts::of(&reference, &detected);
        let (b_ref, b_det) = (100.0 * c.ref_s / dur, 100.0 * c.det_s / dur);
        burden_err.push((b_det - b_ref).abs());
        // `+ 0.0` prints a zero as 0.0, never -0.0.
        println!(
            "{name:>6} {dur:>7.0} {:>10.1} {:>9.1} {:>7.1} {:>7} {:>6} {:>10.1}% {:>9.1}% {:>6.1}",
            c.ref_s + 0.0,
            c.det_s + 0.0,
            c.both_s + 0.0,
            c.ref_episodes,
            c.det_episodes,
            b_ref + 0.0,
            b_det + 0.0,
            b_det - b_ref + 0.0
        );
        gross.add(&c);
    }
    out.flush()?;
    anyhow::ensure!(
        skipped.len() < names.len() || names.is_empty(),
        "no record of {} could be scored",
        args.db.display()
    );
    if !skipped.is_empty() {
        println!(
            "{} records skipped (cannot be read or replayed): {}",
            skipped.len(),
            skipped.join(" ")
        );
    }
    let (ese, ep, dse, dp) = gross.rates();
    println!(
        "gross over {} records: episode Se {ese:.1}%, episode +P {ep:.1}%, duration Se {dse:.1}%, duration +P {dp:.1}%",
        names.len() - skipped.len()
    );
    let mean = burden_err.iter().sum::<f64>() / burden_err.len().max(1) as f64;
    let max = burden_err.iter().copied().fold(0.0, f64::max);
    println!("AF burden error per record: mean {mean:.2} points, max {max:.2} points");
    eprintln!("wrote episodes to {}", args.out.display());
    Ok(())
}

fn read_atr(db: &Path, name: &str) -> anyhow::Result<Vec<ecg_ingest::wfdb::Annotation>> {
    let p = db.join(format!("{name}.atr"));
    ecg_ingest::wfdb::read_annotations(&p).with_context(|| format!("reading {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_and_duration_statistics() {
        let reference = [(10.0, 100.0), (200.0, 210.0)];
        let detected = [(20.0, 110.0), (300.0, 305.0)];
        let c = EpisodeCounts::of(&reference, &detected);
        assert_eq!((c.ref_detected, c.det_true), (1, 1));
        let (ese, ep, dse, dp) = c.rates();
        assert!((ese - 50.0).abs() < 1e-9 && (ep - 50.0).abs() < 1e-9);
        assert!((dse - 100.0 * 80.0 / 100.0).abs() < 1e-9);
        assert!((dp - 100.0 * 80.0 / 95.0).abs() < 1e-9);
    }

    #[test]
    fn rhythm_annotations_open_and_close_episodes() {
        let a = |sample: u64, aux: &str| ecg_ingest::wfdb::Annotation {
            sample,
            code: 28,
            symbol: '+',
            subtype: 0,
            chan: 0,
            num: 0,
            aux: Some(aux.into()),
        };
        let ann = [
            a(0, "(N"),
            a(360, "(AFIB"),
            a(720, "(AFL"),
            a(1080, "(N"),
            a(1800, "(AFIB"),
        ];
        assert_eq!(
            reference_episodes(&ann, 360.0, 10.0),
            vec![(1.0, 3.0), (5.0, 10.0)]
        );
    }
}

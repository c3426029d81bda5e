//! `cardiostream eval alarms`: the lethal-arrhythmia alarms of the pipeline on
//! bedside-monitor alarm records (PhysioNet/CinC Challenge 2015 style), and
//! `cardiostream eval alarms-score`, their challenge score.
//!
//! Each WFDB record of the folder is an alarm: the alarm type is the header's first
//! comment line (`Asystole`, `Bradycardia`, `Tachycardia`, `Ventricular_Tachycardia`,
//! `Ventricular_Flutter_Fib`) and the alarm sounds at the record's last sample. The
//! record is replayed as a device stream — 200 ms frames of every ECG lead, the
//! plethysmogram and arterial pressure as pulsatile waveforms, wire format v1 — up to
//! the alarm and no further, through the stages the pipeline runs (sequencer and
//! analyzer: the same per-stream code, the lethal detector over the record's ECG leads). The
//! answer is `1` when the pipeline raised that alarm type (a present finding) from a
//! window that ends in the 10 s before the alarm, `0` when it stayed silent. `eval
//! alarms` never reads the verdicts (the header's second comment line, `ALARMS`).
//!
//! `alarms-score` reads the answers and the experts' verdicts (`ALARMS` or the
//! headers) and prints the challenge score 100·(TP+TN)/(TP+TN+FP+5·FN), TPR and TNR,
//! overall and per type, with bootstrap 95 % CIs, beside the monitors' own baseline
//! (every alarm raised) and the challenge winner's 81.39.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ecg_dsp::lethal::score::{bootstrap, AlarmCounts, AlarmOutcome};
use ecg_dsp::stream::DspConfig;
use ecg_pipeline::Processor;
use ecg_types::{Condition, FindingStatus};

use super::{record_names, replay_record, T0_US};

/// An alarm counts when raised from a window ending this long before the alarm (µs).
const WINDOW_BEFORE_US: i64 = 10_000_000;
/// The challenge winner's score on the hidden test set (Plesinger et al. 2015).
pub const CHALLENGE_WINNER: f64 = 81.39;

/// Arguments of `eval alarms`.
#[derive(Debug, clap::Args)]
pub struct AlarmsArgs {
    /// Folder of CinC 2015-style alarm records (WFDB, alarm type on the header's first
    /// comment line, the alarm at the last sample).
    #[arg(long)]
    pub db: PathBuf,
    /// Output CSV: `record,alarm`, 1 when the pipeline raised the alarm.
    #[arg(long)]
    pub out: PathBuf,
    /// Only these records (default: every record of the folder).
    #[arg(long, value_delimiter = ',')]
    pub records: Vec<String>,
}

/// Arguments of `eval alarms-score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// The folder the answers are for (its `ALARMS` file, else the headers' second
    /// comment line, gives the verdicts).
    #[arg(long)]
    pub db: PathBuf,
    /// The answers: a `record,alarm` CSV written by `eval alarms`.
    #[arg(long)]
    pub answers: PathBuf,
    /// Score only the records listed in this file (one name per line, `#` comments),
    /// e.g. `docs/cinc2015-heldout.txt`.
    #[arg(long)]
    pub only: Option<PathBuf>,
    /// Score all records except those listed in this file (the tuning part).
    #[arg(long)]
    pub except: Option<PathBuf>,
}

/// The alarm type of a CinC 2015 header comment, as the condition the pipeline raises.
pub fn alarm_condition(comment: &str) -> Option<Condition> {
    match comment.trim() {
        "Asystole" => Some(Condition::Asystole),
        "Bradycardia" => Some(Condition::ExtremeBradycardia),
        "Tachycardia" => Some(Condition::ExtremeTachycardia),
        "Ventricular_Tachycardia" => Some(Condition::VentricularTachycardia),
        "Ventricular_Flutter_Fib" => Some(Condition::VentricularFibrillation),
        _ => None,
    }
}

/// Whether the pipeline raises `condition` on the record from a window ending in the
/// 10 s before its last sample. Reads the record's signals only.
///
/// # Errors
/// When the record cannot be replayed.
pub fn raised(
    rec: &ecg_ingest::wfdb::Record,
    condition: Condition,
    dsp: &DspConfig,
) -> anyhow::Result<bool> {
    let alarm_us =
        T0_US + ecg_types::SampleRate(rec.fs.round() as u32).samples_to_us(rec.n_samples as u64);
    let mut p = Processor::new(
        dsp.clone(),
        10.0,
        Arc::new(Vec::new()),
        Arc::new(ecg_pipeline::events::Discard),
    );
    let mut hit = false;
    replay_record(rec, &mut p, 25, |findings| {
        hit |= findings.iter().any(|f| {
            f.condition == condition
                && f.status == FindingStatus::Present
                && f.window_end.0 <= alarm_us
                && f.window_end.0 >= alarm_us - WINDOW_BEFORE_US
        });
    })?;
    Ok(hit)
}

/// Runs `eval alarms`.
///
/// # Errors
/// When records cannot be read or the output cannot be written.
pub fn run(args: &AlarmsArgs) -> anyhow::Result<()> {
    let names = if args.records.is_empty() {
        record_names(&args.db)?
    } else {
        args.records.clone()
    };
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    writeln!(out, "record,alarm")?;
    let dsp = DspConfig::default();
    let (mut n, mut raised_n) = (0usize, 0usize);
    for name in &names {
        let path = args.db.join(name);
        let rec = ecg_ingest::wfdb::read_record(&path).with_context(|| format!("reading {name}"));
        // The alarm type is the first comment line (from the header alone when the
        // signals cannot be read); the verdict (the second) is never read.
        let first_comment = match &rec {
            Ok(rec) => rec.comments.first().cloned(),
            Err(_) => ecg_ingest::wfdb::read_header(&path)
                .with_context(|| format!("reading {name}'s header"))?
                .comments
                .into_iter()
                .next(),
        };
        let Some(condition) = first_comment.as_deref().and_then(alarm_condition) else {
            eprintln!("{name}: no alarm type on the header's first comment line; skipped");
            continue;
        };
        // A record whose signals cannot be read or replayed leaves the monitor's alarm
        // standing: the pipeline never silences what it could not check.
        let hit = rec
            .and_then(|rec| raised(&rec, condition, &dsp))
            .unwrap_or_else(|e| {
                eprintln!("{name}: {e:#}; the alarm stands (1)");
                true
            });
        writeln!(out, "{name},{}", u8::from(hit))?;
        n += 1;
        raised_n += usize::from(hit);
    }
    out.flush()?;
    eprintln!(
        "{n} alarms, {raised_n} raised by the pipeline; answers in {}",
        args.out.display()
    );
    Ok(())
}

/// `record -> (type, true alarm)` from a folder's `ALARMS` file or its headers.
fn verdicts(db: &Path) -> anyhow::Result<BTreeMap<String, (String, bool)>> {
    if let Ok(text) = std::fs::read_to_string(db.join("ALARMS")) {
        return Ok(text
            .lines()
            .filter_map(|l| {
                let mut it = l.trim().split(',');
                let (r, t, v) = (it.next()?, it.next()?, it.next()?);
                Some((r.to_owned(), (t.to_owned(), v.trim() == "1")))
            })
            .collect());
    }
    let mut out = BTreeMap::new();
    for name in record_names(db)? {
        let h = ecg_ingest::wfdb::read_record(&db.join(&name))?;
        if let (Some(t), Some(v)) = (h.comments.first(), h.comments.get(1)) {
            out.insert(name, (t.trim().to_owned(), v.trim() == "True alarm"));
        }
    }
    Ok(out)
}

fn names_in(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Runs `eval alarms-score`.
///
/// # Errors
/// When the answers or verdicts cannot be read.
#[allow(clippy::print_stdout)]
pub fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    let truth = verdicts(&args.db)?;
    let only = args.only.as_deref().map(names_in).transpose()?;
    let except = args.except.as_deref().map(names_in).transpose()?;
    let text = std::fs::read_to_string(&args.answers)
        .with_context(|| format!("reading {}", args.answers.display()))?;
    let mut by_type: BTreeMap<String, Vec<AlarmOutcome>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some((rec, a)) = line.trim().split_once(',') else {
            continue;
        };
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == rec))
            || except.as_ref().is_some_and(|e| e.iter().any(|n| n == rec))
        {
            continue;
        }
        let Some((kind, truly)) = truth.get(rec) else {
            anyhow::bail!("{rec}: no verdict in {}", args.db.display());
        };
        by_type.entry(kind.clone()).or_default().push(AlarmOutcome {
            truth: *truly,
            raised: a.trim() == "1",
        });
    }
    let all: Vec<AlarmOutcome> = by_type.values().flatten().copied().collect();
    println!(
        "{:<26} {:>5} {:>22} {:>6} {:>6} {:>12}",
        "alarm type", "n", "score [95 % CI]", "TPR", "TNR", "all raised"
    );
    let row = |name: &str, o: &[AlarmOutcome]| {
        let c = AlarmCounts::of(o);
        let ci = bootstrap(o, 2000, 20151);
        println!(
            "{name:<26} {:>5} {:>7.2} [{:>5.1}, {:>5.1}] {:>6.3} {:>6.3} {:>12.2}",
            o.len(),
            c.score(),
            ci.score.lo,
            ci.score.hi,
            c.tpr(),
            c.tnr(),
            c.all_raised().score()
        );
    };
    for (kind, o) in &by_type {
        row(kind, o);
    }
    row("all", &all);
    println!("challenge winner (hidden test set): {CHALLENGE_WINNER}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_record_leaves_its_alarm_standing_and_the_others_are_scored() {
        let dir = std::env::temp_dir().join(format!("cs-eval-alarms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // 20 s of a flat lead II at 250 Hz, format 16.
        std::fs::write(
            dir.join("flat.hea"),
            "flat 1 250 5000\nflat.dat 16 200/mV 16 0 0 0 0 II\n# Asystole\n# False alarm\n",
        )
        .expect("header");
        std::fs::write(dir.join("flat.dat"), vec![0u8; 10_000]).expect("signal");
        // A header whose signal file is missing.
        std::fs::write(
            dir.join("gone.hea"),
            "gone 1 250 5000\ngone.dat 16 200/mV 16 0 0 0 0 II\n# Ventricular_Tachycardia\n",
        )
        .expect("header");
        // No alarm type: not an alarm record.
        std::fs::write(
            dir.join("other.hea"),
            "other 1 250 5000\nflat.dat 16 200/mV 16 0 0 0 0 II\n",
        )
        .expect("header");
        let out = dir.join("answers.csv");
        run(&AlarmsArgs {
            db: dir.clone(),
            out: out.clone(),
            records: Vec::new(),
        })
        .expect("one unreadable record does not stop the run");
        let text = std::fs::read_to_string(&out).expect("answers");
        let lines: Vec<&str> = text.lines().collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "record,alarm");
        assert!(lines[1] == "flat,0" || lines[1] == "flat,1", "{text}");
        assert_eq!(lines[2], "gone,1", "the alarm it could not check stands");
    }

    #[test]
    fn alarm_types_map_to_the_lethal_conditions() {
        assert_eq!(alarm_condition("Asystole"), Some(Condition::Asystole));
        assert_eq!(
            alarm_condition(" Ventricular_Flutter_Fib"),
            Some(Condition::VentricularFibrillation)
        );
        assert_eq!(alarm_condition("True alarm"), None);
    }
}

//! Lethal-arrhythmia alarms on the shared PhysioNet/CinC Challenge 2015 records,
//! scored the challenge way, 100·(TP+TN)/(TP+TN+FP+5·FN): the held-out part
//! (`docs/cinc2015-heldout.txt`, 155 records never tuned on) and the tuning part (the
//! other 295). The assertions keep both at or above the figures reported in
//! `docs/accuracy-alarms.md`, minus a small margin, so a regression shows in CI.
//!
//! Each record is streamed in 0.4 s frames (pulse data of a frame first), as the
//! pipeline pushes them; the alarm counts as raised when a Present call of its type
//! comes from an assessment ending in the 10 s before the alarm (the record's end).
//! Skips with a printed reason when the shared data is absent.
//! `cargo test -p ecg-dsp --release --test cinc2015 -- --nocapture` prints the table.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use common::cinc2015 as cinc;
use ecg_dsp::lethal::score::{bootstrap, AlarmCounts, AlarmOutcome};
use ecg_dsp::lethal::{LethalConfig, LETHAL_CONDITIONS};

/// Held-out figures reported in docs/accuracy-alarms.md.
const HELDOUT_SCORE: f64 = 69.40;
const HELDOUT_TPR: f64 = 0.887;
/// Tuning-part figures.
const TUNING_SCORE: f64 = 80.78;
const TUNING_TPR: f64 = 0.974;
/// Margins: one point of score; one true alarm of the part's true alarms.
const SCORE_MARGIN: f64 = 1.0;

fn evaluate(heldout: bool) -> Option<(Vec<(ecg_types::Condition, AlarmOutcome)>, usize)> {
    let dir = match cinc::data_dir() {
        Ok(d) => d,
        Err(e) => {
            println!("skipping: no CinC 2015 data ({e})");
            return None;
        }
    };
    let held = cinc::heldout();
    assert!(held.len() > 100, "docs/cinc2015-heldout.txt missing");
    let verdicts = cinc::verdicts(&dir).expect("ALARMS");
    let cfg = LethalConfig::default();
    let mut out = Vec::new();
    let mut n_true = 0;
    for name in cinc::record_names(&dir) {
        if held.contains(&name) != heldout {
            continue;
        }
        let rec = cinc::load(&dir, &name).expect("record");
        let a = cinc::stream(&rec, &cfg, 100);
        let truth = *verdicts.get(&name).expect("verdict");
        n_true += usize::from(truth);
        let raised = cinc::decision(&rec, &a).0.is_some();
        out.push((rec.condition, AlarmOutcome { truth, raised }));
    }
    Some((out, n_true))
}

fn report(label: &str, rows: &[(ecg_types::Condition, AlarmOutcome)]) -> AlarmCounts {
    println!("{label}: type n TP FN TN FP score [95% CI] TPR TNR (all raised)");
    let mut all = Vec::new();
    for c in LETHAL_CONDITIONS {
        let o: Vec<AlarmOutcome> = rows.iter().filter(|r| r.0 == c).map(|r| r.1).collect();
        let k = AlarmCounts::of(&o);
        let ci = bootstrap(&o, 1000, 2015);
        println!(
            "  {:26} {:3} {:3} {:3} {:3} {:3} {:6.2} [{:5.1},{:5.1}] {:.3} {:.3} ({:.2})",
            c.as_str(),
            k.total(),
            k.tp,
            k.fn_,
            k.tn,
            k.fp,
            k.score(),
            ci.score.lo,
            ci.score.hi,
            k.tpr(),
            k.tnr(),
            k.all_raised().score()
        );
        all.extend(o);
    }
    let k = AlarmCounts::of(&all);
    let ci = bootstrap(&all, 1000, 2015);
    println!(
        "  {:26} {:3} {:3} {:3} {:3} {:3} {:6.2} [{:5.1},{:5.1}] {:.3} {:.3} ({:.2})",
        "all",
        k.total(),
        k.tp,
        k.fn_,
        k.tn,
        k.fp,
        k.score(),
        ci.score.lo,
        ci.score.hi,
        k.tpr(),
        k.tnr(),
        k.all_raised().score()
    );
    k
}

#[test]
fn heldout_alarms_score_as_reported() {
    let Some((rows, n_true)) = evaluate(true) else {
        return;
    };
    assert_eq!(rows.len(), 155, "the held-out part has 155 records");
    let k = report("held-out", &rows);
    assert!(
        k.score() >= HELDOUT_SCORE - SCORE_MARGIN,
        "held-out score {:.2} < {HELDOUT_SCORE} - {SCORE_MARGIN}",
        k.score()
    );
    assert!(
        k.tpr() >= HELDOUT_TPR - 1.0 / n_true as f64 - 1e-9,
        "held-out TPR {:.3} < {HELDOUT_TPR} less one alarm",
        k.tpr()
    );
    // Far better than the monitors' own alarms, all raised.
    assert!(k.score() > k.all_raised().score() + 20.0);
}

#[test]
fn tuning_alarms_score_as_reported() {
    let Some((rows, n_true)) = evaluate(false) else {
        return;
    };
    assert_eq!(rows.len(), 295, "the tuning part has 295 records");
    let k = report("tuning", &rows);
    assert!(
        k.score() >= TUNING_SCORE - SCORE_MARGIN,
        "tuning score {:.2} < {TUNING_SCORE} - {SCORE_MARGIN}",
        k.score()
    );
    assert!(
        k.tpr() >= TUNING_TPR - 1.0 / n_true as f64 - 1e-9,
        "tuning TPR {:.3} < {TUNING_TPR} less one alarm",
        k.tpr()
    );
}

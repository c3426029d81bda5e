//! QRS detection on lead 0 of every shared MIT-BIH Arrhythmia record, fed in
//! 1-second blocks, scored beat by beat against the reference annotations with a
//! 150 ms match window (ANSI/AAMI EC57, PhysioNet `bxb` style).
//!
//! Run with `cargo test -p ecg-dsp --test mitdb -- --nocapture` to see the table.

mod common;

use ecg_dsp::{DspConfig, DspEvent, QrsDetector, StreamDsp};
use ecg_ingest::wfdb;

#[test]
fn mitdb_qrs_detection() {
    let dir = match common::data_dir() {
        Ok(d) => d.join("mitdb"),
        Err(why) => {
            println!("skipping: {why}");
            return;
        }
    };
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".hea").map(str::to_string)
            })
            .collect(),
        Err(e) => {
            println!("skipping: {}: {e}", dir.display());
            return;
        }
    };
    names.sort();
    if names.is_empty() {
        println!("skipping: no records in {}", dir.display());
        return;
    }
    let (mut tp, mut fn_, mut fp) = (0usize, 0usize, 0usize);
    let mut fp_vf = 0usize;
    let (mut good, mut total) = (0usize, 0usize);
    let mut worst = (String::new(), f64::INFINITY);
    println!("record    beats     TP    FN    FP     Se%     +P%  FP(in VF)  good windows");
    for name in &names {
        let rec = wfdb::read_record(&dir.join(name)).unwrap();
        let ann = wfdb::read_annotations(&dir.join(format!("{name}.atr"))).unwrap();
        let reference: Vec<u64> = ann
            .iter()
            .filter(|a| wfdb::is_beat(a.code))
            .map(|a| a.sample)
            .collect();
        let x = rec.physical(0);
        let mut det = QrsDetector::new(rec.fs);
        let mut beats = Vec::new();
        for block in x.chunks(rec.fs as usize) {
            det.push(block, &mut beats);
        }
        let win = (0.150 * rec.fs).round() as u64;
        let (t, f_n, f_p) = common::score(&reference, &beats, win);
        // EC57 excludes ventricular flutter/fibrillation episodes ('[' … ']') from
        // beat-by-beat scoring: count the unmatched detections inside them.
        let mut vf = Vec::new();
        let mut on = None;
        for a in &ann {
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
        let outside: Vec<u64> = beats
            .iter()
            .copied()
            .filter(|b| !vf.iter().any(|&(s, e)| (s..=e).contains(b)))
            .collect();
        let (_, _, f_p_out) = common::score(&reference, &outside, win);
        let in_vf = f_p - f_p_out;
        fp_vf += in_vf;
        // Signal-quality verdicts of the full stream pipeline on the same record.
        let mut s = StreamDsp::new(&DspConfig::default(), rec.fs as u32, 1);
        let mut ev = Vec::new();
        for block in x.chunks(rec.fs as usize) {
            s.push(block, &[false], &mut ev);
        }
        let ws: Vec<bool> = ev
            .iter()
            .filter_map(|e| match e {
                DspEvent::Window(w) => Some(w.quality_ok),
                DspEvent::Pause { .. } => None,
            })
            .collect();
        let g = ws.iter().filter(|&&v| v).count();
        good += g;
        total += ws.len();
        let se = 100.0 * t as f64 / (t + f_n).max(1) as f64;
        let pp = 100.0 * t as f64 / (t + f_p).max(1) as f64;
        println!(
            "{name:>6} {:>8} {t:>6} {f_n:>5} {f_p:>5} {se:>7.2} {pp:>7.2} {in_vf:>10} {g:>6}/{}",
            reference.len(),
            ws.len()
        );
        if se.min(pp) < worst.1 {
            worst = (name.clone(), se.min(pp));
        }
        tp += t;
        fn_ += f_n;
        fp += f_p;
    }
    let se = 100.0 * tp as f64 / (tp + fn_) as f64;
    let pp = 100.0 * tp as f64 / (tp + fp) as f64;
    println!(
        "gross  {:>8} {tp:>6} {fn_:>5} {fp:>5} {se:>7.2} {pp:>7.2}",
        tp + fn_
    );
    println!("worst record: {} ({:.2}%)", worst.0, worst.1);
    let pp_ec57 = 100.0 * tp as f64 / (tp + fp - fp_vf) as f64;
    println!("gross +P excluding VF/VFL episodes (EC57): {pp_ec57:.2}%");
    println!(
        "windows with good signal quality: {good}/{total} ({:.1}%)",
        100.0 * good as f64 / total.max(1) as f64
    );
    assert!(se >= 99.0, "gross Se {se:.2}% < 99%");
    assert!(pp >= 99.0, "gross +P {pp:.2}% < 99%");
}

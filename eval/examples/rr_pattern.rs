//! Study: how often an RR series that the irregularity rule calls irregular is in
//! fact patterned (bigeminy, alternating runs), by the lag-k successive differences.
//!
//! For each 30 s window every 10 s (lead 0's streamed beats) that the rule's other
//! indices call irregular (`min_alternation_ratio` 0), on the RR intervals the rule
//! sees (premature pairs left out): d1 = median |RR(n) − RR(n−1)|, dk = median
//! |RR(n) − RR(n−k)|, and the pattern ratio min(d2, d3) / d1. Independent intervals
//! (AF) give a ratio near 1; a repeating pattern of period 2 or 3 near 0.
//!
//!   cargo run --release -p ecg-eval --example rr_pattern -- cinc2017 $D/cinc2017
//!   cargo run --release -p ecg-eval --example rr_pattern -- mitdb $D/mitdb
#![allow(clippy::print_stdout)]
use std::collections::BTreeMap;
use std::path::Path;

use ecg_dsp::rhythm::{
    alternation_ratio, median_lag_difference, rr_irregular_with, without_ectopic_pairs,
    IrregularityThresholds,
};
use ecg_dsp::stream::DspConfig;

/// The shipped alternation ratio (d2 / d1) and, for comparison, min(d2, d3) / d1.
fn pattern_ratio(rr: &[f32]) -> (f32, f32) {
    let d1 = median_lag_difference(rr, 1);
    let d2 = median_lag_difference(rr, 2);
    let d3 = median_lag_difference(rr, 3);
    (alternation_ratio(rr), d2.min(d3) / d1)
}

fn windows(beats: &[u64], fs: u32, n: usize) -> Vec<(f64, Vec<f32>)> {
    let fsf = f64::from(fs);
    let len = n as f64 / fsf;
    let mut out = Vec::new();
    let mut start = 0.0;
    loop {
        let end = (start + 30.0f64).min(len);
        let b: Vec<f64> = beats
            .iter()
            .map(|&s| s as f64 / fsf)
            .filter(|&t| t >= start && t < end)
            .collect();
        let rr: Vec<f32> = b.windows(2).map(|w| (w[1] - w[0]) as f32).collect();
        out.push(((start + end) / 2.0, rr));
        if start + 30.0 >= len {
            break;
        }
        start += 10.0;
    }
    out
}

#[derive(Default)]
struct Stats {
    n: usize,
    irregular: usize,
    r2: Vec<f32>,
    r23: Vec<f32>,
}

fn report(stats: &BTreeMap<String, Stats>) {
    println!("label      windows irregular | among irregular: r2 p5/p50 | r23 p5/p50 | kept at r23 >= 0.3 0.4 0.5 0.6 | r2 >= 0.15 0.2 0.25 0.3 0.4 0.5");
    for (label, s) in stats {
        let q = |v: &Vec<f32>, p: f32| {
            let mut v: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f32::total_cmp);
            if v.is_empty() {
                return f32::NAN;
            }
            v[((v.len() - 1) as f32 * p).round() as usize]
        };
        let kept = |v: &Vec<f32>, t: f32| v.iter().filter(|x| x.is_nan() || **x >= t).count();
        println!(
            "{label:<10} {:>7} {:>9} | {:.2} / {:.2} | {:.2} / {:.2} | {} {} {} {} | {} {} {} {} {} {}",
            s.n,
            s.irregular,
            q(&s.r2, 0.05),
            q(&s.r2, 0.5),
            q(&s.r23, 0.05),
            q(&s.r23, 0.5),
            kept(&s.r23, 0.3),
            kept(&s.r23, 0.4),
            kept(&s.r23, 0.5),
            kept(&s.r23, 0.6),
            kept(&s.r2, 0.15),
            kept(&s.r2, 0.2),
            kept(&s.r2, 0.25),
            kept(&s.r2, 0.3),
            kept(&s.r2, 0.4),
            kept(&s.r2, 0.5),
        );
    }
}

fn add(stats: &mut BTreeMap<String, Stats>, label: &str, rr: &[f32], t: &IrregularityThresholds) {
    let s = stats.entry(label.to_string()).or_default();
    s.n += 1;
    if rr_irregular_with(rr, t) {
        s.irregular += 1;
        let kept = without_ectopic_pairs(rr, t.ectopic_prematurity);
        let (r2, r23) = pattern_ratio(&kept);
        s.r2.push(r2);
        s.r23.push(r23);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, db] = args.as_slice() else {
        anyhow::bail!("usage: rr_pattern cinc2017|mitdb DIR");
    };
    let (kind, db) = (kind.as_str(), Path::new(db));
    let cfg = DspConfig::default();
    // The rule's other indices: the population the alternation ratio is judged on.
    let t = IrregularityThresholds {
        min_alternation_ratio: 0.0,
        ..IrregularityThresholds::default()
    };
    let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
    let names = ecg_eval::record_names(db)?;
    match kind {
        "cinc2017" => {
            let reference = ecg_eval::read_reference(db);
            for name in names.iter().filter(|n| !ecg_eval::af::heldout(n)) {
                let Some(label) = reference.get(name) else {
                    continue;
                };
                let rec = ecg_ingest::wfdb::read_record(&db.join(name))?;
                let sig = rec.physical(0);
                let fs = rec.fs.round() as u32;
                let beats = ecg_eval::stream_beats(&sig, fs, &cfg);
                for (_, rr) in windows(&beats, fs, sig.len()) {
                    add(&mut stats, label, &rr, &t);
                }
            }
        }
        _ => {
            for name in &names {
                let path = db.join(name);
                let Ok(ann) = ecg_ingest::wfdb::read_annotations(&path.with_extension("atr"))
                else {
                    continue;
                };
                let rec = ecg_ingest::wfdb::read_record(&path)?;
                let sig = rec.physical(0);
                let fs = rec.fs.round() as u32;
                let beats = ecg_eval::stream_beats(&sig, fs, &cfg);
                let rhythm: Vec<(f64, String)> = ann
                    .iter()
                    .filter_map(|a| {
                        let aux = a.aux.as_deref()?.trim_end_matches('\0');
                        aux.starts_with('(')
                            .then(|| (a.sample as f64 / rec.fs, aux.to_string()))
                    })
                    .collect();
                for (centre, rr) in windows(&beats, fs, sig.len()) {
                    let label = rhythm
                        .iter()
                        .rev()
                        .find(|(t0, _)| *t0 <= centre)
                        .map_or("(N", |(_, l)| l.as_str());
                    add(&mut stats, label, &rr, &t);
                    if label.starts_with("(AFIB") || label.starts_with("(AFL") {
                        add(&mut stats, &format!("AF:{name}"), &rr, &t);
                    } else {
                        add(&mut stats, &format!("nonAF:{name}"), &rr, &t);
                    }
                }
            }
        }
    }
    report(&stats);
    Ok(())
}

//! How the RR-irregularity rule does on PhysioNet/CinC 2017 records: QRS detection
//! on the whole record, then [`ecg_dsp::rr_irregular`] on its RR series, reported
//! per reference class (N normal, A AF, O other, ~ noisy). No hard target: prints the
//! table, asserts only that AF is flagged far more often than normal rhythm.
//!
//! `cargo test -p ecg-dsp --test cinc2017_af -- --nocapture`

mod common;

use std::collections::BTreeMap;

use ecg_dsp::rhythm::{af_features, rr_intervals};
use ecg_dsp::{rr_irregular, QrsDetector};
use ecg_ingest::wfdb;

#[test]
fn cinc2017_rr_irregularity_by_class() {
    let dir = match common::data_dir() {
        Ok(d) => d.join("cinc2017"),
        Err(why) => {
            println!("skipping: {why}");
            return;
        }
    };
    let Ok(reference) = std::fs::read_to_string(dir.join("REFERENCE.csv")) else {
        println!("skipping: {} absent", dir.join("REFERENCE.csv").display());
        return;
    };
    // class -> (records, flagged, sum of nmad)
    let mut stats: BTreeMap<String, (usize, usize, Vec<f32>)> = BTreeMap::new();
    for line in reference.lines() {
        let Some((name, class)) = line.trim().split_once(',') else {
            continue;
        };
        let path = dir.join(name);
        if !path.with_extension("hea").exists() {
            continue;
        }
        let rec = wfdb::read_record(&path).unwrap();
        let x = rec.physical(0);
        let mut det = QrsDetector::new(rec.fs);
        let mut beats = Vec::new();
        det.push(&x, &mut beats);
        det.finish(&mut beats);
        beats.retain(|&b| (b as usize) < x.len());
        let rr = rr_intervals(&beats, rec.fs);
        let e = stats.entry(class.to_string()).or_default();
        e.0 += 1;
        e.1 += usize::from(rr_irregular(&rr));
        e.2.push(af_features(&rr)[3]);
    }
    if stats.is_empty() {
        println!("skipping: no cinc2017 records found in {}", dir.display());
        return;
    }
    println!("class  records  irregular  rate   median nmad_drr");
    for (c, (n, k, v)) in &mut stats {
        v.sort_by(f32::total_cmp);
        let med = v.get(v.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{c:>5} {n:>8} {k:>10} {:>5.1}%  {med:.3}",
            100.0 * *k as f64 / *n as f64
        );
    }
    let rate = |c: &str| {
        stats
            .get(c)
            .map(|(n, k, _)| *k as f64 / (*n).max(1) as f64)
            .unwrap_or(0.0)
    };
    if stats.contains_key("A") && stats.contains_key("N") {
        assert!(
            rate("A") > 0.5 && rate("N") < 0.2,
            "A {} N {}",
            rate("A"),
            rate("N")
        );
    }
}

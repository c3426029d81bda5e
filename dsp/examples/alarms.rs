//! Tuning and evaluation harness of the lethal-arrhythmia alarms on the CinC 2015
//! alarm records: streams every record of a split through [`LethalDetector`] and
//! scores the alarms the challenge way, overall and per alarm type, with bootstrap
//! 95 % intervals, next to the monitors' own baseline (every alarm raised).
//!
//! ```text
//! cargo run --release -p ecg-dsp --example alarms -- [--split tuning|heldout|all]
//!     [--block SAMPLES] [--set key=value ...] [--list] [--record NAME] [--csv FILE]
//! ```
//!
//! `--split tuning` (the default) runs the 295 records outside
//! `docs/cinc2015-heldout.txt`; thresholds were tuned on those only. `--list` prints
//! one line per record with the deciding call's evidence; `--record NAME` prints every
//! assessment of the record's last 20 s. `--set` overrides a `LethalConfig` key (JSON
//! value), e.g. `--set min_lead_quality=0.4`. The verdicts come from the `ALARMS` file
//! and are used for scoring only; the detector never sees them.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;

use common::cinc2015::{self as cinc, AlarmRecord};
use ecg_dsp::lethal::score::{bootstrap, AlarmCounts, AlarmOutcome};
use ecg_dsp::lethal::{LethalCall, LethalConfig, LETHAL_CONDITIONS};
use ecg_types::FindingStatus;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut split = "tuning".to_string();
    let mut block = 250usize;
    let mut list = false;
    let mut record: Option<String> = None;
    let mut csv: Option<String> = None;
    let mut cfg_json = serde_json::to_value(LethalConfig::default()).unwrap();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let val = args.get(i + 1).cloned().unwrap_or_default();
        match a {
            "--split" => split = val,
            "--block" => block = val.parse().expect("--block SAMPLES"),
            "--record" => record = Some(val),
            "--csv" => csv = Some(val),
            "--set" => {
                let (k, v) = val.split_once('=').expect("--set key=value");
                let v: serde_json::Value = serde_json::from_str(v).expect("--set value is JSON");
                cfg_json[k] = v;
            }
            "--list" => {
                list = true;
                i += 1;
                continue;
            }
            _ => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    let cfg: LethalConfig = serde_json::from_value(cfg_json).expect("valid LethalConfig");
    let dir = match cinc::data_dir() {
        Ok(d) => d,
        Err(e) => {
            println!("no CinC 2015 data: {e}");
            return;
        }
    };
    let held = cinc::heldout();
    assert!(held.len() > 100, "docs/cinc2015-heldout.txt missing");
    let verdicts = cinc::verdicts(&dir).expect("ALARMS");

    if let Some(name) = record {
        let rec = cinc::load(&dir, &name).expect("record");
        dump(&rec, &cfg, block);
        return;
    }

    let names: Vec<String> = cinc::record_names(&dir)
        .into_iter()
        .filter(|n| match split.as_str() {
            "tuning" => !held.contains(n),
            "heldout" => held.contains(n),
            "all" => true,
            s => panic!("unknown split {s}"),
        })
        .collect();
    let t0 = std::time::Instant::now();
    let mut rows: Vec<(AlarmRecord, bool, bool, Option<LethalCall>)> = Vec::new();
    let mut samples = 0u64;
    for n in &names {
        let rec = cinc::load(&dir, n).expect("record");
        let a = cinc::stream(&rec, &cfg, block);
        samples += (rec.n_samples * rec.ecg.len()) as u64;
        let (present, last) = cinc::decision(&rec, &a);
        let truth = *verdicts.get(n).expect("verdict for every record");
        rows.push((rec, truth, present.is_some(), present.or(last).copied()));
    }
    let el = t0.elapsed().as_secs_f64();

    if list {
        for (rec, truth, raised, call) in &rows {
            let mark = match (truth, raised) {
                (true, false) => "FN",
                (false, true) => "FP",
                (true, true) => "tp",
                (false, false) => "tn",
            };
            println!(
                "{mark} {} {:6} leads={} pulses={} {}",
                rec.name,
                cinc::label(rec.condition),
                rec.ecg_names.join("/"),
                rec.pulses
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join("/"),
                call.map(describe).unwrap_or_else(|| "-".into())
            );
        }
    }
    if let Some(path) = csv {
        let mut f = std::fs::File::create(&path).expect("csv");
        writeln!(f, "record,alarm").unwrap();
        for (rec, _, raised, _) in &rows {
            writeln!(f, "{},{}", rec.name, u8::from(*raised)).unwrap();
        }
    }
    println!(
        "latency {} samples at 250 Hz, tick {} samples",
        ecg_dsp::LethalDetector::new(&cfg, 250, 2, &[]).latency_samples(),
        ecg_dsp::LethalDetector::new(&cfg, 250, 2, &[]).tick_samples()
    );
    println!(
        "split {split}: {} records, {:.1} s ({:.1} M ECG samples/s, block {block})",
        rows.len(),
        el,
        samples as f64 / el / 1e6
    );
    println!(
        "{:8} {:>4} {:>4} {:>4} {:>4} {:>4} | {:>19} {:>17} {:>17} | {:>8}",
        "type", "n", "TP", "FN", "TN", "FP", "score [95% CI]", "TPR", "TNR", "baseline"
    );
    let mut all = Vec::new();
    for c in LETHAL_CONDITIONS {
        let o: Vec<AlarmOutcome> = rows
            .iter()
            .filter(|r| r.0.condition == c)
            .map(|r| AlarmOutcome {
                truth: r.1,
                raised: r.2,
            })
            .collect();
        all.extend_from_slice(&o);
        line(cinc::label(c), &o);
    }
    line("all", &all);
    println!("baseline = every alarm raised (the monitors); challenge winner (event 1) 81.39");
}

fn line(label: &str, o: &[AlarmOutcome]) {
    let c = AlarmCounts::of(o);
    let ci = bootstrap(o, 2000, 2015);
    println!(
        "{label:8} {:>4} {:>4} {:>4} {:>4} {:>4} | {:6.2} [{:5.1},{:5.1}] {:5.3} [{:.2},{:.2}] {:5.3} [{:.2},{:.2}] | {:8.2}",
        c.total(),
        c.tp,
        c.fn_,
        c.tn,
        c.fp,
        c.score(),
        ci.score.lo,
        ci.score.hi,
        c.tpr(),
        ci.tpr.lo,
        ci.tpr.hi,
        c.tnr(),
        ci.tnr.lo,
        ci.tnr.hi,
        c.all_raised().score()
    );
}

fn describe(c: LethalCall) -> String {
    let ev = &c.evidence;
    let q: Vec<String> = ev
        .lead_quality
        .iter()
        .take(4)
        .map(|q| format!("{q:.2}"))
        .collect();
    let mut s = format!(
        "{} v={} use={:b} for={:b} q=[{}]",
        c.status.as_str(),
        c.value.map_or("-".into(), |v| format!("{v:.1}")),
        ev.leads_usable,
        ev.leads_for,
        q.join(",")
    );
    if let Some(hr) = ev.heart_rate_bpm {
        s += &format!(" hr={hr:.0}");
    }
    if let Some(d) = ev.dominant_hz {
        s += &format!(" df={d:.1}");
    }
    if let Some(n) = ev.ventricular_beats {
        s += &format!(" nv={n}");
    }
    if let Some(x) = ev.run_consistency {
        s += &format!(" cons={x:.2}");
    }
    if let Some(x) = ev.run_rr_cv {
        s += &format!(" cv={x:.2}");
    }
    if let Some(p) = ev.pulse {
        s += &format!(
            " pulse[{} ok={} c={:.2} reg={} n={} r={} a={}]",
            p.kind.as_str(),
            p.usable,
            p.coupling,
            p.regular,
            p.pulses,
            p.rate_bpm.map_or("-".into(), |v| format!("{v:.0}")),
            p.amplitude_ratio.map_or("-".into(), |v| format!("{v:.2}"))
        );
    }
    if let Some(sb) = ev.suppressed_by {
        s += &format!(" SUPPRESSED:{}", sb.as_str());
    }
    s
}

fn dump(rec: &AlarmRecord, cfg: &LethalConfig, block: usize) {
    let (a, det) = cinc::stream_keep(rec, cfg, block);
    let fs = f64::from(rec.fs);
    let from = (rec.n_samples as f64 / fs
        - std::env::var("DUMP_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16.0))
    .max(0.0);
    for l in 0..rec.ecg.len() {
        let v: Vec<String> = det
            .lead_detections(l)
            .filter(|d| d.sample as f64 / fs >= from)
            .map(|d| {
                format!(
                    "{}{:.2}(s{:.2} a{:.2} w{:.0} c{})",
                    if d.beat { "B" } else { "." },
                    d.sample as f64 / fs,
                    d.slope_ratio,
                    d.amplitude_mv,
                    d.width_s * 1000.0,
                    d.template_corr.map_or("-".into(), |c| format!("{c:.2}"))
                )
            })
            .collect();
        let q: Vec<String> = det
            .lead_quality_history(l)
            .filter(|d| d.0 as f64 / fs >= from)
            .map(|(t, q, qs, qv)| format!("{:.1}:{q:.2}/{qs:.2}/{qv:.2}", t as f64 / fs))
            .collect();
        println!("quality {} {}: {}", l, rec.ecg_names[l], q.join(" "));
        println!(
            "lead {} {} template {:?}: {}",
            l,
            rec.ecg_names[l],
            det.lead_template(l),
            v.join(" ")
        );
    }
    for c in 0..rec.pulses.len() {
        let v: Vec<String> = det
            .pulse_detections(c)
            .filter(|d| d.0 as f64 / fs >= from)
            .map(|d| format!("{:.2}({:.3})", d.0 as f64 / fs, d.1))
            .collect();
        println!(
            "pulse {} {} coupling {:?}: {}",
            c,
            rec.pulses[c].0.as_str(),
            det.pulse_coupling(c),
            v.join(" ")
        );
    }
    println!(
        "{} {} fs={} leads={:?} pulses={:?}",
        rec.name,
        rec.alarm_type,
        rec.fs,
        rec.ecg_names,
        rec.pulses.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    let n = rec.n_samples as u64;
    for x in a
        .iter()
        .filter(|x| x.end_sample + 20 * u64::from(rec.fs) >= n)
    {
        println!("E={:.1}s", x.end_sample as f64 / f64::from(rec.fs));
        for c in &x.calls {
            if c.status != FindingStatus::Absent
                || c.evidence.suppressed_by.is_some()
                || c.condition == rec.condition
            {
                println!("   {:28} {}", c.condition.as_str(), describe(*c));
            }
        }
    }
}

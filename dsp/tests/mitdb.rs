//! QRS detection on lead 0 of every shared MIT-BIH Arrhythmia record, fed in
//! 1-second blocks, scored beat by beat against the reference annotations with a
//! 150 ms match window (ANSI/AAMI EC57, PhysioNet `bxb` style), whole records.
//!
//! Two variants are reported: **EC57** (the headline: ventricular flutter and
//! fibrillation episodes, between `[` and `]`, are excluded from scoring, reference
//! beats and detections alike, as EC57 prescribes) and **whole** (nothing excluded).
//! Figures are given for the tuning half of the records (`common::QRS_TUNING`), the
//! held-out half and all records.
//!
//! Run with `cargo test -p ecg-dsp --test mitdb -- --nocapture` to see the table.
//! `QRS_DEBUG=116,203` also lists the missed and false beats of those records.
//! The nstdb records 118e24/e12/e00 are scored by `nstdb_qrs_detection`, the
//! noise-stress mixtures of every record with `bw`, `ma` and `em` noise at 12 and
//! 6 dB by `nst_mixtures_qrs` (`QRS_NST=ma:6,em:12` for a subset), and 10-s
//! spot-check excerpts at 360 and 500 Hz by `spot_check_excerpts`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::path::Path;

use ecg_dsp::noise_stress::{noisy_spans, standard_protocol};
use ecg_dsp::resample::resample_offline;
use ecg_dsp::score::{match_beats, outside, BeatCounts};
use ecg_dsp::{DspConfig, DspEvent, PairedQrs, QrsDetector, StreamDsp};
use ecg_ingest::wfdb;

/// Which beats a row scores: the detector on lead 0, or `PairedQrs` on both leads.
const BEATS_OF: [&str; 2] = ["lead 0", "two leads"];

/// A shared data set's folder (`mitdb`, `nstdb`), or `None` after printing why the
/// test skips.
fn shared(set: &str) -> Option<std::path::PathBuf> {
    match common::data_dir() {
        Ok(d) => Some(d.join(set)),
        Err(why) => {
            println!("skipping: {why}");
            None
        }
    }
}

/// Bootstrap 95 % intervals of gross Se and +P over records (2,000 resamplings of
/// the records with replacement, fixed seed): ((Se low, Se high), (+P low, +P high)).
fn bootstrap(recs: &[BeatCounts]) -> ((f64, f64), (f64, f64)) {
    if recs.is_empty() {
        return ((0.0, 0.0), (0.0, 0.0));
    }
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let (mut se, mut pp) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let mut g = BeatCounts::default();
        for _ in 0..recs.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g.add(recs[(x % recs.len() as u64) as usize]);
        }
        se.push(g.se());
        pp.push(g.pp());
    }
    let ci = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[50], v[1949])
    };
    (ci(&mut se), ci(&mut pp))
}

/// The detector's beats, fed in blocks and flushed with the detector's latency of
/// copies of the last sample (as `eval qrs` does), each with the detector's noise
/// ratio after the block in which it came out (what a streaming fusion of leads
/// would know then).
fn detect_with_noise(x: &[f32], fs: f64, block: usize) -> Vec<(u64, f32)> {
    let mut det = QrsDetector::new(fs);
    let (mut beats, mut out) = (Vec::new(), Vec::new());
    for b in x.chunks(block.max(1)) {
        let before = beats.len();
        det.push(b, &mut beats);
        let r = det.noise_ratio();
        out.extend(beats[before..].iter().map(|&t| (t, r)));
    }
    let before = beats.len();
    det.finish(&mut beats);
    let r = det.noise_ratio();
    out.extend(beats[before..].iter().map(|&t| (t, r)));
    out.retain(|&(t, _)| t < x.len() as u64);
    out
}

/// Beats of two leads (`PairedQrs`), flushed as `detect` flushes.
fn detect_pair(x0: &[f32], x1: &[f32], fs: f64) -> Vec<u64> {
    let mut det = PairedQrs::new(fs);
    let mut beats = Vec::new();
    det.push(x0, x1, false, &mut beats);
    det.finish(&mut beats);
    beats.retain(|&t| t < x0.len() as u64);
    beats
}

fn detect(x: &[f32], fs: f64, block: usize) -> Vec<u64> {
    detect_with_noise(x, fs, block)
        .into_iter()
        .map(|(b, _)| b)
        .collect()
}

fn record_names(dir: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".atr").map(str::to_string)
            })
            .collect(),
        Err(e) => {
            println!("skipping: {}: {e}", dir.display());
            return None;
        }
    };
    names.sort();
    if names.is_empty() {
        println!("skipping: no records in {}", dir.display());
        return None;
    }
    Some(names)
}

/// Scores one record; returns (EC57, whole) counts and the detections.
fn score_record(dir: &Path, name: &str, debug: bool) -> (BeatCounts, BeatCounts, Vec<u64>, f64) {
    let rec = wfdb::read_record(&dir.join(name)).unwrap();
    let ann = wfdb::read_annotations(&dir.join(format!("{name}.atr"))).unwrap();
    let reference = wfdb::beat_samples(&ann);
    let x = rec.physical(0);
    let beats = detect(&x, rec.fs, rec.fs as usize);
    let win = (0.150 * rec.fs).round() as u64;
    let whole = match_beats(&reference, &beats, win);
    let vf = wfdb::vf_episodes(&ann);
    let ec57 = match_beats(&outside(&reference, &vf), &outside(&beats, &vf), win);
    if debug {
        let near = |s: u64| {
            ann.iter()
                .filter(|a| a.sample.abs_diff(s) <= win)
                .map(|a| format!("{}@{}", a.symbol, a.sample))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for &r in &reference {
            if !beats.iter().any(|&b| b.abs_diff(r) <= win) {
                println!("  {name} FN {r} ({:.1} s): {}", r as f64 / rec.fs, near(r));
            }
        }
        for &b in &beats {
            if !reference.iter().any(|&r| r.abs_diff(b) <= win) {
                println!("  {name} FP {b} ({:.1} s): {}", b as f64 / rec.fs, near(b));
            }
        }
    }
    (ec57, whole, beats, rec.fs)
}

#[test]
fn mitdb_qrs_detection() {
    let Some(dir) = shared("mitdb") else {
        return;
    };
    let Some(names) = record_names(&dir) else {
        return;
    };
    let debug: Vec<String> = std::env::var("QRS_DEBUG")
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    // [tuning, held-out, all] × [EC57, whole]
    let mut gross = [[BeatCounts::default(); 2]; 3];
    let mut per_record: [Vec<BeatCounts>; 2] = [Vec::new(), Vec::new()];
    let mut worst = (String::new(), f64::INFINITY);
    let (mut good, mut total) = (0usize, 0usize);
    println!("lead 0, 150 ms window; EC57 = VF/VFL episodes excluded (headline), whole = nothing excluded");
    println!(
        "record half      beats    TP   FN   FP    Se%    +P% | whole: FN   FP    Se%    +P%  good windows"
    );
    let only = std::env::var("QRS_ONLY").unwrap_or_default();
    for name in &names {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let (e, w, _, fs) = score_record(&dir, name, debug.contains(name));
        let tuning = common::QRS_TUNING.contains(&name.as_str());
        for (i, g) in gross.iter_mut().enumerate() {
            if i == 2 || (i == 0) == tuning {
                g[0].add(e);
                g[1].add(w);
            }
        }
        per_record[usize::from(!tuning)].push(e);
        // Signal-quality verdicts of the full stream pipeline on the same record.
        if std::env::var("QRS_FAST").is_ok() {
            println!("{name:>6} {:>6} {:>4} {:>4}", e.tp + e.fn_, e.fn_, e.fp);
            continue;
        }
        let rec = wfdb::read_record(&dir.join(name)).unwrap();
        let x = rec.physical(0);
        let mut s = StreamDsp::new(&DspConfig::default(), fs as u32, 1);
        let mut ev = Vec::new();
        for block in x.chunks(fs as usize) {
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
        println!(
            "{name:>6} {:<8} {:>6} {:>6} {:>4} {:>4} {:>6.2} {:>6.2} |      {:>4} {:>4} {:>6.2} {:>6.2}  {g:>4}/{}",
            if tuning { "tuning" } else { "held-out" },
            e.tp + e.fn_,
            e.tp,
            e.fn_,
            e.fp,
            e.se(),
            e.pp(),
            w.fn_,
            w.fp,
            w.se(),
            w.pp(),
            ws.len()
        );
        if e.se().min(e.pp()) < worst.1 {
            worst = (name.clone(), e.se().min(e.pp()));
        }
    }
    for (label, g) in ["gross tuning", "gross held-out", "gross all"]
        .iter()
        .zip(&gross)
    {
        let (e, w) = (g[0], g[1]);
        println!(
            "{label:<15} {:>6} {:>6} {:>4} {:>4} {:>6.2} {:>6.2} |      {:>4} {:>4} {:>6.2} {:>6.2}",
            e.tp + e.fn_,
            e.tp,
            e.fn_,
            e.fp,
            e.se(),
            e.pp(),
            w.fn_,
            w.fp,
            w.se(),
            w.pp()
        );
    }
    for (label, recs) in ["tuning", "held-out"].iter().zip(&per_record) {
        let ((a, b), (c, d)) = bootstrap(recs);
        println!(
            "{label}: EC57 bootstrap 95 % CI over records: Se {a:.2}–{b:.2} %, +P {c:.2}–{d:.2} %"
        );
    }
    println!(
        "worst record (EC57, min of Se and +P): {} ({:.2}%)",
        worst.0, worst.1
    );
    println!(
        "windows with good signal quality: {good}/{total} ({:.1}%)",
        100.0 * good as f64 / total.max(1) as f64
    );
    let all = gross[2][0];
    if only.is_empty() {
        assert!(all.se() >= 99.8, "gross Se {:.3}% < 99.8%", all.se());
        assert!(all.pp() >= 99.8, "gross +P {:.3}% < 99.8%", all.pp());
        assert!(worst.1 >= 98.0, "record {} at {:.2}%", worst.0, worst.1);
    }
}

/// Both leads through `PairedQrs` on the clean records: the clean target (gross
/// EC57 Se and +P ≥ 99.8 %, no record below 98 %) holds for the two-lead beats too,
/// and each record's counts are printed beside lead 0's.
#[test]
fn mitdb_two_leads() {
    let Some(dir) = shared("mitdb") else {
        return;
    };
    let Some(names) = record_names(&dir) else {
        return;
    };
    println!("EC57, 150 ms: lead 0 | two leads (PairedQrs)");
    println!("record half       FN   FP |   FN   FP    Se%    +P%");
    let mut gross = [[BeatCounts::default(); 2]; 2];
    let mut worst = f64::INFINITY;
    for name in &names {
        let rec = wfdb::read_record(&dir.join(name)).unwrap();
        let ann = wfdb::read_annotations(&dir.join(format!("{name}.atr"))).unwrap();
        let vf = wfdb::vf_episodes(&ann);
        let reference = outside(&wfdb::beat_samples(&ann), &vf);
        let (x0, x1) = (rec.physical(0), rec.physical(1));
        let win = (0.150 * rec.fs).round() as u64;
        let counts = |beats: &[u64]| match_beats(&reference, &outside(beats, &vf), win);
        let l0 = counts(&detect(&x0, rec.fs, rec.fs as usize));
        let two = counts(&detect_pair(&x0, &x1, rec.fs));
        if let Ok(dir) = std::env::var("QRS_DUMP") {
            let lines = |x: &[f32]| {
                detect_with_noise(x, rec.fs, 1)
                    .iter()
                    .map(|(b, r)| format!("{b} {r}\n"))
                    .collect::<String>()
            };
            let stem = format!("{dir}/{name}.clean");
            let refs: String = reference.iter().map(|b| format!("{b}\n")).collect();
            std::fs::write(format!("{stem}.ref"), refs).unwrap();
            std::fs::write(format!("{stem}.l0"), lines(&x0)).unwrap();
            std::fs::write(format!("{stem}.l1"), lines(&x1)).unwrap();
        }
        let tuning = common::QRS_TUNING.contains(&name.as_str());
        let half = if tuning { "tuning" } else { "held-out" };
        println!(
            "{name:>6} {half:<9} {:>4} {:>4} | {:>4} {:>4} {:>6.2} {:>6.2}",
            l0.fn_,
            l0.fp,
            two.fn_,
            two.fp,
            two.se(),
            two.pp()
        );
        let i = usize::from(!tuning);
        gross[i][0].add(l0);
        gross[i][1].add(two);
        worst = worst.min(two.se()).min(two.pp());
    }
    let mut all = [BeatCounts::default(); 2];
    for (i, label) in ["tuning", "held-out"].iter().enumerate() {
        let [l0, two] = gross[i];
        all[0].add(l0);
        all[1].add(two);
        println!(
            "{label:<9} lead 0 Se {:.2} +P {:.2} | two leads Se {:.2} +P {:.2}",
            l0.se(),
            l0.pp(),
            two.se(),
            two.pp()
        );
    }
    if all[1].tp == 0 {
        return;
    }
    println!(
        "all       lead 0 Se {:.2} +P {:.2} | two leads Se {:.2} +P {:.2}, worst record {worst:.2}",
        all[0].se(),
        all[0].pp(),
        all[1].se(),
        all[1].pp()
    );
    assert!(
        all[1].se() >= 99.8 && all[1].pp() >= 99.8,
        "two leads below 99.8 %"
    );
    assert!(
        worst >= 98.0,
        "a record below 98 % with two leads: {worst:.2}"
    );
}

/// The same beats whatever the block size, on real records with ectopy, noise and
/// ventricular flutter: the detector on lead 0, and `PairedQrs` on both leads (118e00:
/// electrode motion, where it follows lead 1 in places).
#[test]
fn mitdb_block_size_invariance() {
    let Some(dir) = shared("mitdb") else {
        return;
    };
    for name in ["203", "207"] {
        let Ok(rec) = wfdb::read_record(&dir.join(name)) else {
            println!("skipping: {name} absent");
            continue;
        };
        let x = rec.physical(0);
        let x = &x[..x.len().min((600.0 * rec.fs) as usize)];
        let a = detect(x, rec.fs, rec.fs as usize);
        assert!(!a.is_empty());
        for block in [1, 37, 200, 4096] {
            assert_eq!(a, detect(x, rec.fs, block), "{name}, blocks of {block}");
        }
    }
    let Ok(rec) = wfdb::read_record(&dir.with_file_name("nstdb").join("118e00")) else {
        println!("skipping the two-lead check: 118e00 absent");
        return;
    };
    let (x0, x1) = (rec.physical(0), rec.physical(1));
    let n = x0.len().min((900.0 * rec.fs) as usize);
    let (x0, x1) = (&x0[..n], &x1[..n]);
    let whole = detect_pair(x0, x1, rec.fs);
    assert!(whole.len() > 500);
    for block in [1usize, 37, 200, 4096] {
        let mut det = PairedQrs::new(rec.fs);
        let mut beats = Vec::new();
        for (a, b) in x0.chunks(block).zip(x1.chunks(block)) {
            det.push(a, b, false, &mut beats);
        }
        det.finish(&mut beats);
        beats.retain(|&t| t < n as u64);
        assert_eq!(whole, beats, "118e00 two leads, blocks of {block}");
    }
}

/// Noise stress: record 118 with electrode-motion noise at 24, 12 and 0 dB SNR
/// (noise from minute 5 on), whole records, same settings.
#[test]
fn nstdb_qrs_detection() {
    let Some(dir) = shared("nstdb") else {
        return;
    };
    println!("record     beats    TP   FN   FP    Se%    +P%");
    for name in ["118e24", "118e12", "118e00"] {
        if !dir.join(format!("{name}.atr")).exists() {
            println!("skipping: {name} absent");
            continue;
        }
        let (_, w, _, _) = score_record(&dir, name, false);
        println!(
            "{name:>6} {:>9} {:>5} {:>4} {:>4} {:>6.2} {:>6.2}",
            w.tp + w.fn_,
            w.tp,
            w.fn_,
            w.fp,
            w.se(),
            w.pp()
        );
        if name == "118e24" {
            assert!(w.se() >= 99.0 && w.pp() >= 99.0, "118e24: {w:?}");
        }
    }
}

/// The samples of `v` inside any of the half-open `spans`.
fn inside(v: &[u64], spans: &[(usize, usize)]) -> Vec<u64> {
    v.iter()
        .copied()
        .filter(|&b| {
            spans
                .iter()
                .any(|&(s, e)| (s as u64..e as u64).contains(&b))
        })
        .collect()
}

/// Runs `f` on each noise-stress mixture that `only` selects (`ma:6,em:12`; empty:
/// all), in `NOISES` × `SNRS` order: each noise loaded once, a noise that cannot be
/// loaded skipped with the reason printed.
fn for_each_mixture(
    nstdb: &Path,
    mitdb: &Path,
    only: &str,
    mut f: impl FnMut(&'static str, f64, &common::nst::Noise),
) {
    for noise_name in common::nst::NOISES {
        let noise = match common::nst::load_noise(nstdb, mitdb, noise_name) {
            Ok(n) => n,
            Err(e) => {
                println!("skipping {noise_name}: {e}");
                continue;
            }
        };
        for snr in common::nst::SNRS {
            let key = format!("{noise_name}:{snr}");
            if only.is_empty() || only.split(',').any(|o| o == key) {
                f(noise_name, snr, &noise);
            }
        }
    }
}

/// Noise stress: every shared MIT-BIH record with the nstdb noise added as `nst`
/// does (`common::nst`: standard protocol, SNR relative to the QRS amplitude, both
/// leads; the held-out records get noise the tuning records never saw), scored with
/// 150 ms, EC57 (VF excluded), over the whole record and over the noisy periods
/// only: the detector on lead 0, and the stream's beats from both leads
/// (`PairedQrs`, what `StreamDsp` and `eval qrs` take from a two-lead record).
#[test]
fn nst_mixtures_qrs() {
    let (Some(mitdb), Some(nstdb)) = (shared("mitdb"), shared("nstdb")) else {
        return;
    };
    let Some(names) = record_names(&mitdb) else {
        return;
    };
    let only = std::env::var("QRS_NST").unwrap_or_default();
    let half = std::env::var("QRS_HALF").unwrap_or_default();
    let verbose = std::env::var("QRS_NST_VERBOSE").is_ok();
    // QRS_DUMP=DIR: per record and mixture, the reference beats (VF excluded), the
    // noisy spans and the detector's beats on lead 0 and on lead 1 (mixed the same
    // way), each with the detector's noise ratio when it came out, as text files, for
    // offline study (tools/qrs_two_lead.py).
    let dump = std::env::var("QRS_DUMP").ok();
    println!("EC57 (VF excluded), 150 ms; whole record | noisy periods only");
    println!(
        "{:<5} {:>4} {:<9} {:>7} {:>10} {:>5} {:>5} {:>6} {:>6} | {:>6} {:>5} {:>5} {:>6} {:>6} | whole-record 95 % CI (bootstrap over records)",
        "noise", "SNR", "half", "beats", "beats of", "FN", "FP", "Se%", "+P%", "beats", "FN", "FP", "Se%", "+P%"
    );
    // Lowest +P of lead 0 and of the two leads (bw, ma; em at 12 dB); the two leads'
    // +P with em at 6 dB against lead 0's, per half.
    let mut worst_pp = [f64::INFINITY; 2];
    let mut em6 = Vec::new();
    for_each_mixture(&nstdb, &mitdb, &only, |noise_name, snr, noise| {
        // [lead 0, two leads] × [tuning, held-out] × [whole, noisy]
        let mut g = [[[BeatCounts::default(); 2]; 2]; 2];
        let mut per_record: [[Vec<BeatCounts>; 2]; 2] = Default::default();
        for name in &names {
            let tuning = common::QRS_TUNING.contains(&name.as_str());
            if (half == "tuning" && !tuning) || (half == "held-out" && tuning) {
                continue;
            }
            let rec = wfdb::read_record(&mitdb.join(name)).unwrap();
            let ann = wfdb::read_annotations(&mitdb.join(format!("{name}.atr"))).unwrap();
            let normal = common::nst::amplitude_beats(&ann);
            let lead = |sig: usize| {
                let d = common::nst::mix_signal(&rec, &normal, sig, noise, snr, !tuning).unwrap();
                common::nst::physical(&rec, sig, &d)
            };
            let (x, x1) = (lead(0), lead(1));
            let vf = wfdb::vf_episodes(&ann);
            let reference = outside(&wfdb::beat_samples(&ann), &vf);
            let win = (0.150 * rec.fs).round() as u64;
            let spans = noisy_spans(&standard_protocol(x.len(), rec.fs));
            if let Some(dir) = &dump {
                let lines = |v: &[u64]| v.iter().map(|b| format!("{b}\n")).collect::<String>();
                // Each lead's beats outside ventricular flutter, with the noise ratio.
                let with_noise = |x: &[f32]| {
                    let all = detect_with_noise(x, rec.fs, rec.fs as usize);
                    let times: Vec<u64> = all.iter().map(|b| b.0).collect();
                    let kept = outside(&times, &vf);
                    all.into_iter()
                        .filter(|b| kept.binary_search(&b.0).is_ok())
                        .map(|(b, r)| format!("{b} {r}\n"))
                        .collect::<String>()
                };
                let stem = format!("{dir}/{name}.{noise_name}{snr}");
                std::fs::write(format!("{stem}.ref"), lines(&reference)).unwrap();
                std::fs::write(format!("{stem}.l0"), with_noise(&x)).unwrap();
                std::fs::write(format!("{stem}.l1"), with_noise(&x1)).unwrap();
                let spans: Vec<String> = spans.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
                std::fs::write(format!("{stem}.spans"), spans.concat()).unwrap();
            }
            let found = [
                detect(&x, rec.fs, rec.fs as usize),
                detect_pair(&x, &x1, rec.fs),
            ];
            let i = usize::from(!tuning);
            for (k, beats) in found.iter().enumerate() {
                let beats = outside(beats, &vf);
                let w = match_beats(&reference, &beats, win);
                let n = match_beats(&inside(&reference, &spans), &inside(&beats, &spans), win);
                if verbose {
                    println!(
                        "  {name} {noise_name}:{snr} {}: FN {} FP {} Se {:.2} +P {:.2} | noisy FN {} FP {}",
                        BEATS_OF[k],
                        w.fn_,
                        w.fp,
                        w.se(),
                        w.pp(),
                        n.fn_,
                        n.fp
                    );
                }
                g[k][i][0].add(w);
                g[k][i][1].add(n);
                per_record[k][i].push(w);
            }
        }
        for (i, label) in ["tuning", "held-out"].iter().enumerate() {
            for k in 0..2 {
                let [w, n] = g[k][i];
                if w.tp + w.fn_ == 0 {
                    continue;
                }
                let ((a, b), (c, d)) = bootstrap(&per_record[k][i]);
                println!(
                        "{noise_name:<5} {snr:>4} {label:<9} {:>7} {:>10} {:>5} {:>5} {:>6.2} {:>6.2} | {:>6} {:>5} {:>5} {:>6.2} {:>6.2} | Se {a:.2}–{b:.2} +P {c:.2}–{d:.2}",
                        w.tp + w.fn_,
                        BEATS_OF[k],
                        w.fn_,
                        w.fp,
                        w.se(),
                        w.pp(),
                        n.tp + n.fn_,
                        n.fn_,
                        n.fp,
                        n.se(),
                        n.pp()
                    );
                if noise_name != "em" || snr > 6.0 {
                    worst_pp[k] = worst_pp[k].min(w.pp());
                }
            }
            if noise_name == "em" && snr <= 6.0 && g[0][i][0].tp > 0 {
                em6.push((label, g[0][i][0].pp(), g[1][i][0].pp()));
            }
        }
    });
    if worst_pp[0].is_finite() {
        println!(
            "lowest whole-record +P (bw, ma; em at 12 dB): lead 0 {:.2}%, two leads {:.2}%",
            worst_pp[0], worst_pp[1]
        );
        // The target for baseline wander and muscle noise at 12 and 6 dB and for
        // electrode motion at 12 dB (em at 6 dB is below it: docs/accuracy-qrs.md).
        // Before the noise-floor rules: 93.45 % (ma, 6 dB); before the early-noise
        // rule, em at 12 dB: 96.69 %.
        assert!(worst_pp[0] >= 97.0, "lead 0: +P {:.2}% < 97%", worst_pp[0]);
        assert!(
            worst_pp[1] >= 97.0,
            "two leads: +P {:.2}% < 97%",
            worst_pp[1]
        );
    }
    for (label, one, two) in em6 {
        // Electrode motion at 6 dB: following the cleaner lead gains 1.7-2.6 points of
        // +P (88.4 -> 91.0 % tuning, 89.3 -> 90.9 % held-out).
        assert!(
            two >= one + 1.0,
            "em 6 dB, {label}: two leads +P {two:.2}% against {one:.2}%"
        );
    }
}

/// `n` deterministic excerpt starts in `0..range` (xorshift seeded by the record
/// name), each one `ok` accepts; the draws `ok` refuses are skipped.
fn excerpt_starts(name: &str, n: usize, range: usize, ok: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut seed = name.bytes().fold(0x9e37_79b9_u32, |a, b| {
        (a ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut starts = Vec::with_capacity(n);
    let mut draws = 0;
    while starts.len() < n && draws < 1000 * n {
        draws += 1;
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let start = seed as usize % range;
        if ok(start) {
            starts.push(start);
        }
    }
    starts
}

/// The reference beats an excerpt (`start..end` of a record at `fs`, fed at `rate`)
/// is scored against, in the scoring's coordinates (see `score_excerpt`).
struct ExcerptReference {
    /// The 75 ms match window, samples at `rate`.
    win: u64,
    /// The record's reference beats within `win` of the excerpt (inside it or just
    /// outside), at `rate`, as excerpt sample indices shifted by `win` (so that the
    /// beats just before the excerpt keep their place).
    near: Vec<u64>,
    /// How many reference beats lie inside the excerpt.
    inner: usize,
}

impl ExcerptReference {
    fn new(reference: &[u64], start: usize, end: usize, fs: f64, rate: f64) -> Self {
        let scale = rate / fs;
        let win = (0.075 * rate).round() as u64;
        let to_out = |s: u64| ((s as f64 - start as f64) * scale + win as f64).round() as u64;
        let span = (start as u64).saturating_sub(win)..end as u64 + win;
        let near: Vec<u64> = reference
            .iter()
            .copied()
            .filter(|r| span.contains(r))
            .map(to_out)
            .collect();
        let inner = reference
            .iter()
            .filter(|&&r| r >= start as u64 && r < end as u64)
            .count();
        Self { win, near, inner }
    }

    /// Scores `found` (the excerpt's samples, fed at `rate`) as `score_excerpt` does.
    fn score(&self, rate: f64, found: &[u64]) -> (BeatCounts, usize) {
        let (win, near) = (self.win, &self.near);
        let beats: Vec<u64> = found.iter().map(|b| b + win).collect();
        let c = match_beats(near, &beats, win);
        let false_first = beats
            .iter()
            .filter(|&&b| ((b - win) as f64) < rate && !near.iter().any(|&r| r.abs_diff(b) <= win))
            .count();
        (
            BeatCounts {
                tp: c.tp,
                fn_: c.fn_.saturating_sub(near.len() - self.inner),
                fp: c.fp,
            },
            false_first,
        )
    }
}

/// Scores the beats found in an excerpt (`start..end` of a record at `fs`, fed at
/// `rate`; `found` in the excerpt's samples) with a 75 ms window against the
/// record's `reference` beats. A detection within 75 ms of a reference beat just
/// outside the excerpt is not false, and such beats are not counted as missed.
/// Returns the counts and the false beats in the excerpt's first second.
fn score_excerpt(
    reference: &[u64],
    start: usize,
    end: usize,
    fs: f64,
    rate: f64,
    found: &[u64],
) -> (BeatCounts, usize) {
    ExcerptReference::new(reference, start, end, fs, rate).score(rate, found)
}

/// Spot checks: 10-s excerpts cut at pseudo-random points of every record (none
/// overlapping ventricular flutter), at 360 Hz and resampled to 500 Hz, each fed to
/// a fresh detector and scored with a 75 ms window. A detection not within 75 ms of
/// a reference beat (including beats just outside the excerpt) is false; false
/// detections in the first second count separately.
#[test]
fn spot_check_excerpts() {
    let Some(dir) = shared("mitdb") else {
        return;
    };
    let Some(names) = record_names(&dir) else {
        return;
    };
    const PER_RECORD: usize = 20;
    const LEN_S: f64 = 10.0;
    println!("10-s excerpts, {PER_RECORD} per record, 75 ms window");
    println!(
        "fs   half      beats from  excerpts  beats    TP   FN   FP  FP<1s  excerpts with FP<1s    Se%    +P%"
    );
    // [lead 0, two leads]
    let mut first_second_fp = [0usize; 2];
    let mut excerpts = [0usize; 2];
    let mut all = [BeatCounts::default(); 2];
    for fs_out in [360u32, 500] {
        // [lead 0, two leads] × [tuning, held-out]: counts, FP in the first second,
        // excerpts with one, excerpts.
        let mut g = [[(BeatCounts::default(), 0usize, 0usize, 0usize); 2]; 2];
        for name in &names {
            let rec = wfdb::read_record(&dir.join(name)).unwrap();
            let ann = wfdb::read_annotations(&dir.join(format!("{name}.atr"))).unwrap();
            let reference = wfdb::beat_samples(&ann);
            let vf = wfdb::vf_episodes(&ann);
            let x = rec.physical(0);
            let x1 = rec.physical(1);
            let fs = rec.fs;
            let len = (LEN_S * fs) as usize;
            let tuning = common::QRS_TUNING.contains(&name.as_str());
            let starts = excerpt_starts(name, PER_RECORD, x.len() - len, |start| {
                let end = start + len;
                !vf.iter()
                    .any(|&(s, e)| s < end as u64 + fs as u64 && e + fs as u64 > start as u64)
            });
            for start in starts {
                let end = start + len;
                let cut = |x: &[f32]| {
                    let ex = &x[start..end];
                    if fs_out as f64 == fs {
                        ex.to_vec()
                    } else {
                        resample_offline(fs as u32, fs_out, ex)
                    }
                };
                let (sig, rate) = (cut(&x), f64::from(fs_out));
                let found = [
                    detect(&sig, rate, (0.2 * rate) as usize),
                    detect_pair(&sig, &cut(&x1), rate),
                ];
                for (k, found) in found.into_iter().enumerate() {
                    let (c, false_first) = score_excerpt(&reference, start, end, fs, rate, &found);
                    let g = &mut g[k][usize::from(!tuning)];
                    g.0.add(c);
                    g.1 += false_first;
                    g.2 += usize::from(false_first > 0);
                    g.3 += 1;
                    if false_first > 0 && std::env::var("QRS_DEBUG").is_ok() {
                        println!("  {name} @{:.1} s ({fs_out} Hz, {}): {false_first} false beat(s) in the first second: {:?} ref {:?}", start as f64 / fs, BEATS_OF[k], &found[..found.len().min(4)], reference.iter().filter(|&&r| r >= start as u64).take(4).collect::<Vec<_>>());
                    }
                }
            }
        }
        for (i, label) in ["tuning", "held-out"].iter().enumerate() {
            for k in 0..2 {
                let (c, ff, fx, n) = g[k][i];
                println!(
                    "{fs_out} {label:<9} {:<10} {n:>8} {:>6} {:>5} {:>4} {:>4} {ff:>6} {fx:>21} {:>6.2} {:>6.2}",
                    BEATS_OF[k],
                    c.tp + c.fn_,
                    c.tp,
                    c.fn_,
                    c.fp,
                    c.se(),
                    c.pp()
                );
                first_second_fp[k] += ff;
                excerpts[k] += n;
                all[k].add(c);
            }
        }
    }
    for (k, from) in BEATS_OF.iter().enumerate() {
        println!(
            "{from}: false beats in a first second: {} in {} excerpts; gross +P {:.2}%",
            first_second_fp[k],
            excerpts[k],
            all[k].pp()
        );
        // With the detector before the learning period: 216 first-second false beats,
        // +P 97.42 % (docs/accuracy-qrs.md).
        assert!(
            first_second_fp[k] * 40 <= excerpts[k],
            "{from}: {} false beats in a first second",
            first_second_fp[k]
        );
        assert!(all[k].pp() >= 98.5, "{from}: +P {:.2}%", all[k].pp());
    }
}

/// Writes one scored excerpt to `path` for `tools/qrs_excerpts_nk.py`: a JSON object
/// with `head`'s fields (JSON members, already written), the scoring's window `win`,
/// reference beats `near` and count `inner` (`ExcerptReference`), the beats `found`
/// (excerpt samples, unshifted), their score (`tp`, `fn`, `fp`, `fp_first`) and the
/// excerpt's samples (mV), one per line.
fn dump_excerpt(
    path: &Path,
    head: &str,
    r: &ExcerptReference,
    found: &[u64],
    (c, false_first): (BeatCounts, usize),
    sig: &[f32],
) {
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    assert!(sig.iter().all(|v| v.is_finite()), "{}", path.display());
    let samples: Vec<String> = sig.iter().map(f32::to_string).collect();
    let text = format!(
        "{{{head}, \"win\": {}, \"inner\": {}, \"near\": [{}], \"found\": [{}],\n\"tp\": {}, \"fn\": {}, \"fp\": {}, \"fp_first\": {false_first},\n\"samples\": [\n{}\n]}}\n",
        r.win,
        r.inner,
        list(&r.near),
        list(found),
        c.tp,
        c.fn_,
        c.fp,
        samples.join(",\n")
    );
    std::fs::write(path, text).unwrap();
}

/// Short, noisy recordings, as a wearable's or a handheld's: 10-s excerpts at 500 Hz
/// of lead 0 taken from the noisy stretches of the noise-stress mixtures (`bw`, `ma`,
/// `em` at 12 and 6 dB; `QRS_SPOT_NOISE=em:6` for a subset), each fed to a fresh
/// detector, scored with a 75 ms window; beside them the same excerpts without the
/// noise. `QRS_SPOT_DUMP_DIR=DIR` writes every excerpt, both signals, with its
/// reference beats, found beats and score to `DIR/<noise>_<snr>/` (`dump_excerpt`),
/// for `tools/qrs_excerpts_nk.py` to score NeuroKit2 beside them.
#[test]
fn spot_check_noisy_excerpts() {
    let (Some(mitdb), Some(nstdb)) = (shared("mitdb"), shared("nstdb")) else {
        return;
    };
    let Some(names) = record_names(&mitdb) else {
        return;
    };
    const PER_RECORD: usize = 10;
    const LEN_S: f64 = 10.0;
    const RATE: u32 = 500;
    let only = std::env::var("QRS_SPOT_NOISE").unwrap_or_default();
    let dump = std::env::var_os("QRS_SPOT_DUMP_DIR").map(std::path::PathBuf::from);
    println!("10-s excerpts of the noisy stretches, lead 0, {PER_RECORD} per record, {RATE} Hz, 75 ms window");
    println!("noise SNR  half      signal  excerpts  beats    TP   FN   FP  FP<1s    Se%    +P%");
    for_each_mixture(&nstdb, &mitdb, &only, |noise_name, snr, noise| {
        // [tuning, held-out] × [noisy, clean]: counts, first-second false beats,
        // excerpts.
        let mut g = [[(BeatCounts::default(), 0usize, 0usize); 2]; 2];
        for name in &names {
            let tuning = common::QRS_TUNING.contains(&name.as_str());
            let rec = wfdb::read_record(&mitdb.join(name)).unwrap();
            let ann = wfdb::read_annotations(&mitdb.join(format!("{name}.atr"))).unwrap();
            let normal = common::nst::amplitude_beats(&ann);
            let mixed = common::nst::mix_signal(&rec, &normal, 0, noise, snr, !tuning).unwrap();
            let noisy = common::nst::physical(&rec, 0, &mixed);
            let clean = rec.physical(0);
            let reference = wfdb::beat_samples(&ann);
            let vf = wfdb::vf_episodes(&ann);
            let fs = rec.fs;
            let len = (LEN_S * fs) as usize;
            let spans = noisy_spans(&standard_protocol(noisy.len(), fs));
            let starts = excerpt_starts(name, PER_RECORD, noisy.len() - len, |start| {
                let end = start + len;
                spans.iter().any(|&(a, b)| a <= start && end <= b)
                    && !vf
                        .iter()
                        .any(|&(s, e)| s < end as u64 + fs as u64 && e + fs as u64 > start as u64)
            });
            let half = ["tuning", "held-out"][usize::from(!tuning)];
            let dump_dir = dump.as_ref().map(|d| {
                let d = d.join(format!("{noise_name}_{snr}"));
                std::fs::create_dir_all(&d).unwrap();
                d
            });
            for (k, start) in starts.into_iter().enumerate() {
                let end = start + len;
                let rate = f64::from(RATE);
                let r = ExcerptReference::new(&reference, start, end, fs, rate);
                for (j, x) in [&noisy, &clean].into_iter().enumerate() {
                    let sig = resample_offline(fs as u32, RATE, &x[start..end]);
                    let found = detect(&sig, rate, (0.2 * rate) as usize);
                    let (c, ff) = r.score(rate, &found);
                    if let Some(d) = &dump_dir {
                        let signal = ["noisy", "clean"][j];
                        let head = format!(
                                "\"record\": \"{name}\", \"noise\": \"{noise_name}\", \"snr\": {snr}, \"half\": \"{half}\", \"signal\": \"{signal}\", \"rate\": {RATE}, \"fs\": {fs}, \"start\": {start}, \"end\": {end}"
                            );
                        let path = d.join(format!("{name}_{k:02}_{start:07}_{signal}.json"));
                        dump_excerpt(&path, &head, &r, &found, (c, ff), &sig);
                    }
                    let g = &mut g[usize::from(!tuning)][j];
                    g.0.add(c);
                    g.1 += ff;
                    g.2 += 1;
                }
            }
        }
        let mut noisy = g[0][0].0;
        noisy.add(g[1][0].0);
        for (i, label) in ["tuning", "held-out"].iter().enumerate() {
            for (j, signal) in ["noisy", "clean"].iter().enumerate() {
                let (c, ff, n) = g[i][j];
                println!(
                        "{noise_name:<5} {snr:>3} {label:<9} {signal:<6} {n:>9} {:>6} {:>5} {:>4} {:>4} {ff:>6} {:>6.2} {:>6.2}",
                        c.tp + c.fn_,
                        c.tp,
                        c.fn_,
                        c.fp,
                        c.se(),
                        c.pp()
                    );
            }
        }
        // Regression floors a little below this detector's figures (not targets:
        // issue 13's +P target of 97 % is for whole records).
        let (se_min, pp_min) = match (noise_name, snr as u32) {
            ("bw", _) => (97.5, 97.5),
            ("ma", 12) => (97.0, 96.5),
            ("ma", _) => (93.0, 90.0),
            ("em", 12) => (95.0, 91.5),
            _ => (80.0, 71.5),
        };
        assert!(
            noisy.se() >= se_min && noisy.pp() >= pp_min,
            "{noise_name}:{snr}: noisy excerpts Se {:.2} % +P {:.2} %",
            noisy.se(),
            noisy.pp()
        );
    });
}

/// The noise-stress mixing reproduces `nst`: record 118 plus the recovered `em`
/// noise at 12 dB is nstdb's 118e12 (made by `nst` from 118 and the original `em`)
/// within a few ADC units (5 µV each: the truncations of 118e00, of 118e12 and of
/// the mixing), on both signals. The last sample is
/// left out: there `nst` "rewinds" the noise record (its length is the clean
/// record's) and recomputes the offset before removing the ADC zero, which moves
/// that one sample; the mixing here does not copy this.
#[test]
fn nst_mixing_reproduces_118e12() {
    let (Some(mitdb), Some(nstdb)) = (shared("mitdb"), shared("nstdb")) else {
        return;
    };
    let (Ok(rec), Ok(e12)) = (
        wfdb::read_record(&mitdb.join("118")),
        wfdb::read_record(&nstdb.join("118e12")),
    ) else {
        println!("skipping: 118 or 118e12 absent");
        return;
    };
    let ann = wfdb::read_annotations(&mitdb.join("118.atr")).unwrap();
    let noise = common::nst::load_noise(&nstdb, &mitdb, "em").unwrap();
    let normal = common::nst::amplitude_beats(&ann);
    for sig in 0..2 {
        let mixed = common::nst::mix_signal(&rec, &normal, sig, &noise, 12.0, false).unwrap();
        let reference = &e12.samples[sig];
        assert_eq!(mixed.len(), reference.len());
        let n = mixed.len() - 1;
        let worst = mixed[..n]
            .iter()
            .zip(&reference[..n])
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        println!("signal {sig}: largest difference from 118e12 {worst} adu");
        assert!(worst <= 4, "signal {sig}: {worst} adu");
    }
}

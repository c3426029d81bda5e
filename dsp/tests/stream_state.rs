//! `StreamDsp` state memory and block-size invariance of the per-stream chain.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use ecg_dsp::{DspConfig, DspEvent, MonitorFilter, StreamDsp};
use ecg_sim::{Device, Preset};
use ecg_types::Lead;

const FS: u32 = 500;

/// `seconds` of a simulated 12-lead 500 Hz stream, lead-major, cut into blocks of
/// `block` samples per lead.
fn blocks(preset: Preset, seconds: usize, block: usize) -> Vec<Vec<f32>> {
    let mut dev = Device::new(preset.config(7, FS, Lead::STANDARD_12.to_vec())).unwrap();
    let total = seconds * FS as usize;
    let mut out = Vec::new();
    let mut done = 0;
    while done < total {
        let n = block.min(total - done);
        let mut v = Vec::new();
        dev.generate(n, &mut v);
        out.push(v);
        done += n;
    }
    out
}

fn run(blocks: &[Vec<f32>]) -> (StreamDsp, Vec<DspEvent>) {
    let mut d = StreamDsp::new(&DspConfig::default(), FS, 12);
    let off = [false; 12];
    let mut ev = Vec::new();
    for b in blocks {
        d.push(b, &off, &mut ev);
    }
    (d, ev)
}

#[test]
fn state_of_a_12_lead_500hz_stream_is_below_64_kib() {
    let fs = f64::from(FS);
    println!(
        "components @ 500 Hz (bytes): QRS detector {}, quality filters {}, second detector {}, monitor filter {} per lead",
        ecg_dsp::QrsDetector::new(fs).state_bytes(),
        ecg_dsp::quality::QualityFilters::new(fs, 50.0).state_bytes(),
        ecg_dsp::curve_length::CurveLengthDetector::new(fs).state_bytes(),
        MonitorFilter::new(fs).state_bytes(),
    );
    for preset in [
        Preset::NoisyNormalSinus,
        Preset::Pvcs,
        Preset::LeadOffNormalSinus,
    ] {
        let (d, ev) = run(&blocks(preset, 60, FS as usize));
        let windows = ev
            .iter()
            .filter(|e| matches!(e, DspEvent::Window(_)))
            .count();
        println!(
            "{preset:?}: state after 60 s, 12 leads @ 500 Hz: {} bytes ({:.1} KiB), {windows} windows",
            d.state_bytes(),
            d.state_bytes() as f64 / 1024.0
        );
        assert!(windows >= 10);
        assert!(d.state_bytes() <= 64 * 1024, "{}", d.state_bytes());
    }
}

#[test]
fn chain_is_block_size_invariant() {
    let (_, ev_ref) = run(&blocks(Preset::Pvcs, 30, FS as usize));
    assert!(ev_ref.len() >= 3, "{} events", ev_ref.len());
    for block in [1, 37, 3 * FS as usize] {
        let (_, ev) = run(&blocks(Preset::Pvcs, 30, block));
        assert_eq!(ev, ev_ref, "block {block}");
    }
}

#[test]
fn first_window_end_moves_the_window_grid() {
    let bl = blocks(Preset::NormalSinus, 40, 100);
    let run = |first_end: Option<u64>| {
        let mut d = StreamDsp::new(&DspConfig::default(), FS, 12);
        if let Some(e) = first_end {
            d = d.with_first_window_end(e);
        }
        let mut ev = Vec::new();
        for b in &bl {
            d.push(b, &[false; 12], &mut ev);
        }
        ev.into_iter()
            .filter_map(|e| match e {
                DspEvent::Window(w) => Some((w.start_sample, w.end_sample, w.beats)),
                DspEvent::Pause { .. } => None,
            })
            .collect::<Vec<_>>()
    };
    let plain = run(None);
    let (win, hop) = (10 * FS as u64, 5 * FS as u64);
    assert_eq!(plain[0].0, 0);
    assert_eq!(plain[0].1, win);
    // Windows start 7.3 s in, then every hop; same beats as the plain run where both
    // have a window (the analysis itself does not depend on where windows fall).
    let shifted = run(Some(win + 3650));
    assert_eq!(shifted[0].0, 3650);
    for pair in shifted.windows(2) {
        assert_eq!(pair[1].1 - pair[0].1, hop);
    }
    let beats_plain: std::collections::BTreeSet<u64> =
        plain.iter().flat_map(|w| w.2.iter().copied()).collect();
    let covered = plain.last().unwrap().1;
    for (s, e, beats) in shifted.iter().filter(|w| w.1 <= covered) {
        let want: Vec<u64> = beats_plain.range(*s..*e).copied().collect();
        assert_eq!(beats, &want, "window {s}..{e}");
    }
    // An end before one window length is raised to one window length.
    assert_eq!(run(Some(10))[0].1, win);
}

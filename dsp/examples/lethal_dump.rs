//! A digest of everything [`LethalDetector`] outputs on simulated streams, to check
//! that a change to its implementation changes no output bit: every assessment, and
//! every 5 s every lead's detections, tick qualities and template and every pulse
//! channel's pulses and coupling (their `Debug` text, which prints each `f32` exactly).
//!
//! ```text
//! cargo run --release -p ecg-dsp --example lethal_dump [-- --full]
//! ```
//!
//! Streams: every simulator preset at 12 leads 500 Hz and at 3 leads 250 Hz with a
//! plethysmogram, 2 leads at 1000 Hz and 360 Hz, fed 100-sample frames (and blocks of
//! 37 and 1000 samples for one); each with a stretch of lead-off, missing (NaN)
//! samples and a 5 Hz flutter wave. Prints one SHA-256 per stream and one of all;
//! `--full` prints the text itself.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::fmt::Write as _;

use ecg_dsp::lethal::{LethalConfig, LethalDetector};
use ecg_sim::{Device, Preset};
use ecg_types::{Lead, PulseKind};
use sha2::{Digest, Sha256};

const SECONDS: usize = 40;

fn run(
    preset: Preset,
    rate: u32,
    leads: Vec<Lead>,
    pleth: bool,
    block: usize,
    full: bool,
) -> String {
    let nl = leads.len();
    let mut dev = Device::new(preset.config(3, rate, leads)).unwrap();
    let pulses: Vec<(PulseKind, u32)> = if pleth {
        vec![(PulseKind::Pleth, rate)]
    } else {
        Vec::new()
    };
    let mut det = LethalDetector::new(&LethalConfig::default(), rate, nl, &pulses);
    let total = SECONDS * rate as usize;
    let mut text = String::new();
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut next_dump = 5 * rate as usize;
    while pos < total {
        let n = block.min(total - pos);
        let mut v = Vec::new();
        dev.generate(n, &mut v);
        let mut off = vec![false; nl];
        for i in 0..n {
            let t = (pos + i) as f32 / rate as f32;
            // 5 Hz flutter on every lead over 24-30 s.
            if (24.0..30.0).contains(&t) {
                for l in 0..nl {
                    v[l * n + i] = 0.8 * (2.0 * std::f32::consts::PI * 5.0 * t).sin();
                }
            }
            // Missing samples on the last lead over 12-13.5 s.
            if (12.0..13.5).contains(&t) {
                v[(nl - 1) * n + i] = f32::NAN;
            }
        }
        // Lead 0 off over 16-19 s.
        let t0 = pos as f32 / rate as f32;
        off[0] = (16.0..19.0).contains(&t0);
        if pleth {
            let p: Vec<f32> = (0..n)
                .map(|i| {
                    let t = (pos + i) as f32 / rate as f32;
                    let ph = (t * 1.25).fract() / 1.25;
                    0.5 + (ph / 0.12).min(1.0) * (-(ph - 0.12).max(0.0) / 0.3).exp()
                })
                .collect();
            det.push_pulse(0, &p);
        }
        out.clear();
        det.push_ecg(&v, &off, &mut out);
        for a in &out {
            writeln!(text, "{a:?}").unwrap();
        }
        pos += n;
        if pos >= next_dump {
            next_dump += 5 * rate as usize;
            writeln!(text, "at {pos}").unwrap();
            for l in 0..nl {
                let d: Vec<_> = det.lead_detections(l).collect();
                let q: Vec<_> = det.lead_quality_history(l).collect();
                writeln!(text, "lead {l} {:?} {d:?} {q:?}", det.lead_template(l)).unwrap();
            }
            for c in 0..pulses.len() {
                let d: Vec<_> = det.pulse_detections(c).collect();
                writeln!(text, "pulse {c} {:?} {d:?}", det.pulse_coupling(c)).unwrap();
            }
        }
    }
    if full {
        print!("{text}");
    }
    let h = Sha256::digest(text.as_bytes());
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let mut all = Sha256::new();
    let three = vec![Lead::I, Lead::II, Lead::V1];
    // Not the paced preset: this dump feeds the detector raw, and a paced stream is
    // blanked and its pulses reported first (the analyzer's path); the digests compare
    // builds on the presets they always covered.
    for &preset in Preset::all()
        .iter()
        .filter(|&&p| p != Preset::VentricularPaced)
    {
        for (rate, leads, pleth, block) in [
            (500, Lead::STANDARD_12.to_vec(), false, 100),
            (250, three.clone(), true, 100),
        ] {
            let h = run(preset, rate, leads.clone(), pleth, block, full);
            println!(
                "{preset:?} {rate} Hz {} leads block {block}: {h}",
                leads.len()
            );
            all.update(h.as_bytes());
        }
    }
    for (rate, block) in [(1000, 100), (360, 100), (500, 37), (500, 1000)] {
        let leads = vec![Lead::II, Lead::V1];
        let h = run(Preset::Pvcs, rate, leads, false, block, full);
        println!("Pvcs {rate} Hz 2 leads block {block}: {h}");
        all.update(h.as_bytes());
    }
    let h: String = all.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("all: {h}");
}

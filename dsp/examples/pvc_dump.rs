//! The beats of a WFDB record's lead 0 and the ones the DSP stage's PVC classifier
//! calls PVCs, as `StreamDsp` streams them (one-second blocks, then `finish`), one
//! `beat,<sample>,<pvc 0|1>` line each, for looking at the classifier on a record.
//!
//! ```text
//! cargo run --release -p ecg-dsp --example pvc_dump -- RECORD_PATH_WITHOUT_EXTENSION
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;

use ecg_dsp::stream::{DspConfig, DspEvent, StreamDsp};

fn main() {
    let path = std::env::args().nth(1).expect("a record path");
    let rec = ecg_ingest::wfdb::read_record(std::path::Path::new(&path)).unwrap();
    let fs = rec.fs.round() as u32;
    let sig = rec.physical(0);
    let mut dsp = StreamDsp::new(&DspConfig::default(), fs, 1);
    let mut ev = Vec::new();
    for c in sig.chunks(fs as usize) {
        dsp.push(c, &[false], &mut ev);
    }
    dsp.finish(&mut ev);
    let mut beats: BTreeMap<u64, bool> = BTreeMap::new();
    for e in ev {
        if let DspEvent::Window(w) = e {
            for b in &w.beats {
                beats.entry(*b).or_insert(false);
            }
            for p in &w.pvc_beats {
                beats.insert(*p, true);
            }
        }
    }
    println!("fs,{fs}");
    for (b, p) in beats {
        println!("beat,{b},{}", u8::from(p));
    }
}

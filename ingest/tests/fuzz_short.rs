//! The short version of the WFDB fuzzing campaigns (docs/fuzzing.md) for the test
//! command: the checks of `fuzz/fuzz_targets/wfdb_{header,record,annotations}.rs` on
//! a few thousand inputs each, arbitrary bytes and the campaigns' seeds
//! (`fuzz/seeds/`) with random byte edits; and that every seed, the frame decoder's
//! too, is a valid input. The campaigns themselves run ten million
//! coverage-guided inputs per target (`scripts/fuzz.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ecg_ingest::{codec, wfdb};
use proptest::prelude::*;

/// The record harness's checks, the campaign's own.
#[path = "../../fuzz/checks/wfdb_record.rs"]
mod record_checks;
use record_checks::check_record;

/// The campaign's seed inputs of `target`.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Byte edits applied to a seed: (position, kind, byte).
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..12)
}

/// `seed` with `edits`: overwrite, insert, delete, or duplicate a byte.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, kind, b) in edits {
        let i = if v.is_empty() { 0 } else { pos % v.len() };
        match kind {
            0 if !v.is_empty() => v[i] = b,
            1 => v.insert(i.min(v.len()), b),
            2 if !v.is_empty() => {
                v.remove(i);
            }
            _ if !v.is_empty() => {
                let x = v[i];
                v.insert(i, x);
            }
            _ => v.push(b),
        }
    }
    v
}

/// The header harness's checks; whether the input parsed.
fn check_header(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(h) = wfdb::parse_header(&text, Path::new("fuzz.hea")) else {
        return false;
    };
    assert!(h.fs.is_finite() && h.fs > 0.0);
    assert!(h.signals.iter().all(|s| s.samples_per_frame > 0));
    assert!(h.signals.len() <= text.lines().count());
    true
}

/// The annotation harness's checks; whether the input parsed.
fn check_annotations(data: &[u8]) -> bool {
    let Ok(a) = wfdb::parse_annotations(data, Path::new("fuzz.atr")) else {
        return false;
    };
    assert!(a.len() <= data.len() / 2);
    let _ = wfdb::beat_samples(&a);
    let _ = wfdb::vf_episodes(&a);
    for x in &a {
        let _ = wfdb::symbol(x.code);
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn wfdb_header_arbitrary_and_mutated(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                        pick in any::<usize>(), e in edits()) {
        check_header(&bytes);
        let s = seeds("wfdb_header");
        check_header(&mutate(&s[pick % s.len()], &e));
    }

    #[test]
    fn wfdb_record_arbitrary_and_mutated(bytes in proptest::collection::vec(any::<u8>(), 0..1200),
                                        pick in any::<usize>(), e in edits()) {
        check_record(&bytes);
        let s = seeds("wfdb_record");
        check_record(&mutate(&s[pick % s.len()], &e));
    }

    #[test]
    fn wfdb_annotations_arbitrary_and_mutated(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                             pick in any::<usize>(), e in edits()) {
        check_annotations(&bytes);
        let s = seeds("wfdb_annotations");
        check_annotations(&mutate(&s[pick % s.len()], &e));
    }
}

/// The seeds are valid inputs: each parses and passes the checks, so the mutations
/// start from inputs that reach deep into the readers.
#[test]
fn every_seed_parses_and_passes_the_checks() {
    for (i, s) in seeds("wfdb_header").iter().enumerate() {
        assert!(check_header(s), "header seed {i}");
    }
    for (i, s) in seeds("wfdb_record").iter().enumerate() {
        assert!(check_record(s), "record seed {i}");
    }
    for (i, s) in seeds("wfdb_annotations").iter().enumerate() {
        assert!(check_annotations(s), "annotation seed {i}");
    }
    // The frame decoder's seeds (first byte: the content type, as in
    // fuzz/fuzz_targets/codec.rs) decode, and among them the optional parts.
    let types = [
        None,
        Some(codec::CONTENT_TYPE_PROTOBUF),
        Some(codec::CONTENT_TYPE_JSON),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
    ];
    let frames: Vec<_> = seeds("codec")
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let sel = usize::from(*s.first()?) % types.len();
            // A seed for the unsupported content type is there to be rejected.
            let decoded = codec::decode(&s[1..], types[sel]);
            (sel < 4).then(|| decoded.unwrap_or_else(|e| panic!("codec seed {i}: {e}")))
        })
        .collect();
    // One protobuf seed and one JSON seed carry pulse channels and pacemaker pulses.
    let full = frames
        .iter()
        .filter(|f| !f.pulses.is_empty() && !f.pace.is_empty())
        .count();
    assert_eq!(full, 2, "seeds with pulses and pace");
}

//! The checks of the `wfdb_record` campaign (docs/fuzzing.md), in one place for the
//! fuzz target (`fuzz/fuzz_targets/wfdb_record.rs`) and its short run in the test
//! command (`ingest/tests/fuzz_short.rs`), which both include this file.
//!
//! The input is `header length (u16 LE) | header text | signal bytes`; every signal
//! file the header names reads as the signal bytes (a `.mat` name included, so the MAT
//! v4 header path is reached).

use std::io;
use std::path::Path;

use ecg_ingest::wfdb;

/// Reads the input as a record with `read_record_with`; when it reads, converts and
/// checksums every signal, reads it again through `SignalReader::open_with` three
/// frames at a time, and asserts what must hold. Whether the input read as a record.
pub(crate) fn check_record(data: &[u8]) -> bool {
    if data.len() < 2 {
        return false;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    let (hea, sig) = rest.split_at(n.min(rest.len()));
    let rec = Path::new("/fuzz/r");
    let files = |p: &Path| {
        if p == Path::new("/fuzz/r.hea") {
            Ok(hea.to_vec())
        } else if p.starts_with("/fuzz") {
            Ok(sig.to_vec())
        } else {
            Err(io::Error::other("outside the record directory"))
        }
    };
    let Ok(r) = wfdb::read_record_with(rec, files) else {
        return false;
    };
    assert_eq!(r.samples.len(), r.signals.len());
    for i in 0..r.signals.len() {
        let _ = r.physical(i);
        let _ = r.checksum_ok(i);
    }
    // Memory stays bounded by the input: no signal has more samples than its file has
    // bytes (every format takes at least one byte per sample). A header may name
    // itself as a signal file, so the bound is the larger file.
    let longest = sig.len().max(hea.len());
    assert!(r.samples.iter().all(|v| v.len() <= longest));
    // Read three frames at a time, the same samples, up to the record's frame count.
    let mut blocks = wfdb::SignalReader::open_with(rec, files).expect("opens as it reads");
    assert_eq!(blocks.n_frames(), r.n_samples);
    let mut read: Vec<Vec<i32>> = vec![Vec::new(); r.signals.len()];
    while let Some(b) = blocks.read_frames(3).expect("reads as whole") {
        read.iter_mut().zip(b).for_each(|(v, b)| v.extend(b));
    }
    for (i, (v, s)) in read.iter().zip(&r.signals).enumerate() {
        let whole = &r.samples[i];
        assert_eq!(v[..], whole[..v.len()], "signal {i}");
        assert!(
            whole.is_empty() || v.len() == r.n_samples * s.samples_per_frame,
            "signal {i}"
        );
    }
    true
}

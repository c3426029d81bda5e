//! Crafted WFDB headers, signal and annotation files that once panicked the reader
//! (issue 15 and the fuzzing campaigns of docs/fuzzing.md). The reader is documented
//! as never panicking: each must come back as a `WfdbError` naming the problem.
//! `fuzz/corpus/wfdb*` holds the same inputs for the fuzzers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use ecg_ingest::wfdb::{self, WfdbError};

/// Writes the files into a fresh directory and reads record `r` from it.
fn read_disk(files: &[(&str, &[u8])]) -> Result<wfdb::Record, WfdbError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wfdb-crashers-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    for (n, b) in files {
        let p = d.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
    let r = wfdb::read_record(&d.join("r"));
    std::fs::remove_dir_all(&d).ok();
    r
}

/// Reads a record from in-memory files (name relative to the header's directory).
fn read_mem(files: &[(&str, &[u8])]) -> Result<wfdb::Record, WfdbError> {
    let map: HashMap<PathBuf, Vec<u8>> = files
        .iter()
        .map(|(n, b)| (Path::new("/rec").join(n), b.to_vec()))
        .collect();
    wfdb::read_record_with(Path::new("/rec/r"), |p| {
        map.get(p)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    })
}

#[test]
fn signal_count_of_2_pow_64_minus_1_is_an_error() {
    // Was: `nsig + 1` overflowed, then `Vec::with_capacity(nsig)` overflowed capacity.
    let e = wfdb::parse_header("r 18446744073709551615 360\n", Path::new("r.hea")).unwrap_err();
    assert!(e.to_string().contains("signal lines"), "{e}");
    let e = wfdb::parse_header("r 18446744073709551615 360\nr.dat 16\n", Path::new("r.hea"))
        .unwrap_err();
    assert!(e.to_string().contains("signal lines"), "{e}");
}

#[test]
fn samples_per_frame_summing_past_usize_is_an_error() {
    // Was: 2^63 + 2^63 wrapped to 0 and `avail / frame` divided by zero (release) or
    // the sum overflowed (debug).
    let hea = b"r 2 360\nr.dat 16x9223372036854775808\nr.dat 16x9223372036854775808\n";
    let e = read_disk(&[("r.hea", hea), ("r.dat", &[0u8; 8])]).unwrap_err();
    assert!(e.to_string().contains("samples per frame"), "{e}");
    // The same with a sample count in the header.
    let hea = b"r 2 360 4\nr.dat 16x9223372036854775808\nr.dat 16x9223372036854775808\n";
    let e = read_disk(&[("r.hea", hea), ("r.dat", &[0u8; 8])]).unwrap_err();
    assert!(e.to_string().contains("samples per frame"), "{e}");
}

#[test]
fn huge_samples_per_frame_of_one_signal_reads_no_frame() {
    let hea = b"r 1 360\nr.dat 16x18446744073709551615\n";
    let r = read_disk(&[("r.hea", hea), ("r.dat", &[1, 0, 2, 0])]).unwrap();
    assert_eq!(r.n_samples, 0);
    assert!(r.samples[0].is_empty());
    let hea = b"r 1 360 1\nr.dat 16x18446744073709551615\n";
    assert!(read_disk(&[("r.hea", hea), ("r.dat", &[1, 0, 2, 0])]).is_err());
}

#[test]
fn signal_files_outside_the_record_directory_are_refused() {
    for name in ["../secret.dat", "/etc/passwd", "a/../../b.dat"] {
        let hea = format!("r 1 360\n{name} 80\n");
        let e = read_disk(&[("r.hea", hea.as_bytes())]).unwrap_err();
        assert!(
            matches!(e, WfdbError::Unsupported { .. }) && e.to_string().contains("outside"),
            "{name}: {e}"
        );
    }
    // A file in a subdirectory of the record's directory is fine.
    let hea = b"r 1 360\nsub/r.dat 80\n";
    let r = read_disk(&[("r.hea", hea), ("sub/r.dat", &[128, 129])]).unwrap();
    assert_eq!(r.samples[0], vec![0, 1]);
}

#[test]
fn mem_reader_matches_the_file_reader() {
    let dir = tempfile_dir();
    let hea = "r 2 360 2\nr.dat 212 100(1)/mV 12 0 1 2048 0 A\nr.dat 212 200 12 0 -1 -2049 0 B\n";
    // Format 212: (1, -1), (2047, -2048).
    let dat = [1u8, 0xf0, 0xff, 0xff, 0x87, 0x00];
    std::fs::write(dir.join("r.hea"), hea).unwrap();
    std::fs::write(dir.join("r.dat"), dat).unwrap();
    let from_disk = wfdb::read_record(&dir.join("r")).unwrap();
    let from_mem = read_mem(&[("r.hea", hea.as_bytes()), ("r.dat", &dat)]).unwrap();
    assert_eq!(from_disk.samples, vec![vec![1, 2047], vec![-1, -2048]]);
    assert_eq!(from_disk.samples, from_mem.samples);
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wfdb-crashers-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

//! WFDB header parser (`ecg_ingest::wfdb::parse_header`) on arbitrary text.
#![no_main]

use std::path::Path;

use ecg_ingest::wfdb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(h) = wfdb::parse_header(&text, Path::new("fuzz.hea")) {
        // What parsed is consistent with the text it came from.
        assert!(h.fs.is_finite() && h.fs > 0.0);
        assert!(h.signals.iter().all(|s| s.samples_per_frame > 0));
        assert!(h.signals.len() <= text.lines().count());
    }
});

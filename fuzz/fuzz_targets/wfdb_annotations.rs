//! MIT-format annotation parser (`ecg_ingest::wfdb::parse_annotations`) and the helpers
//! over its output.
#![no_main]

use std::path::Path;

use ecg_ingest::wfdb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = wfdb::parse_annotations(data, Path::new("fuzz.atr")) {
        // At most one annotation per 16-bit word.
        assert!(a.len() <= data.len() / 2);
        let _ = wfdb::beat_samples(&a);
        let _ = wfdb::vf_episodes(&a);
        for x in &a {
            let _ = wfdb::symbol(x.code);
        }
    }
});

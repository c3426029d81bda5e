//! WFDB record reader (`ecg_ingest::wfdb::read_record_with`, and
//! `SignalReader` three frames at a time) on crafted files held in memory: the checks
//! are in `fuzz/checks/wfdb_record.rs`, shared with the test command's short run.
#![no_main]

#[path = "../checks/wfdb_record.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::check_record(data);
});

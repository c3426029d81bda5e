//! `eval af-episodes` at a record's ends: the stretch before the first window and the
//! one after the last window's centre segment go with the nearest window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

#[test]
fn a_record_in_af_from_end_to_end_is_one_episode_from_its_first_to_its_last_sample() {
    let Some(mitdb) = common::data_dir()
        .map(|d| d.join("mitdb"))
        .filter(|d| d.is_dir())
    else {
        println!("skipping: shared records not available (../shared/data or CARDIOSTREAM_DATA)");
        return;
    };
    // MIT-BIH 203: atrial fibrillation and flutter from its first to its last second
    // (with breaks of a second or two).
    let src =
        ecg_ingest::replay::RecordSource::open(&mitdb.join("203"), ecg_eval::T0_US, 200, None)
            .unwrap();
    let end_s = src.record_frames() as f64 / src.record_fs();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let models = Arc::new(ecg_inference::load_models(&dir, 1).unwrap());
    let episodes = ecg_eval::episodes::detect(src, "203", &models, &Default::default()).unwrap();
    println!("203: {episodes:?} of {end_s} s");
    let (first, last) = (episodes[0], episodes[episodes.len() - 1]);
    // The first window starts seconds into the record (warm-up, grid phase); the
    // episode it opens starts with the record.
    assert_eq!(first.0, 0.0, "{episodes:?}");
    // The last window's centre segment ends about 10 s before the record; the episode
    // it carries runs to the record's end.
    assert!((last.1 - end_s).abs() < 1e-6, "{episodes:?} of {end_s} s");
}

//! The processor's per-stream guarantees, without a broker: duplicates and reordering
//! change nothing, missing frames are a signal gap, device-clock jumps are reported,
//! and a restart from the offset it declares safe loses no window and invents none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use cardiostream::telemetry::Metrics;
use ecg_dsp::stream::DspConfig;
use ecg_pipeline::offline::frame_record;
use ecg_pipeline::{Output, Processor, StreamSettings};
use ecg_types::SourceRecord;
use ecg_types::{Condition, Finding, FindingStatus, Frame, Lead};
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use support::window_keys;

const T0: i64 = 1_800_000_000_123_456;

fn models() -> Arc<Vec<ecg_inference::Model>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    Arc::new(ecg_inference::load_models(&dir, 1).expect("bundled models load"))
}

fn processor(models: &Arc<Vec<ecg_inference::Model>>) -> Processor {
    Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        Metrics::new().pipeline,
    )
}

/// `seconds` of 200 ms frames (250 Hz, lead II) of simulated stream `s{i}`.
fn frames(i: u64, seconds: u32) -> Vec<Frame> {
    let mut src = support::sim_device(
        &format!("s{i}"),
        &format!("p{i}"),
        support::RHYTHMS[(i % 3) as usize],
        i,
        Lead::II,
        T0 + i as i64 * 37_000,
    );
    (0..seconds * 5).map(|_| src.next_frame()).collect()
}

/// Round-robin interleaving of several streams' frames, as one partition sees them.
fn interleave(streams: &[Vec<Frame>]) -> Vec<Frame> {
    let n = streams.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .flat_map(|j| streams.iter().filter_map(move |s| s.get(j).cloned()))
        .collect()
}

fn inputs(frames: &[Frame], first_offset: i64) -> Vec<SourceRecord> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| SourceRecord {
            // Produced the moment its last sample was taken.
            timestamp_us: Some(f.t0.0 + f.sample_rate.samples_to_us(f.samples_per_lead() as u64)),
            ..frame_record(f, first_offset + i as i64)
        })
        .collect()
}

/// Processes in batches of `batch`; every batch's output.
fn run(p: &mut Processor, inputs: Vec<SourceRecord>, batch: usize) -> Vec<Output> {
    let mut inputs = inputs.into_iter().peekable();
    let mut outs = Vec::new();
    while inputs.peek().is_some() {
        outs.push(p.process(inputs.by_ref().take(batch).collect()));
    }
    outs
}

fn findings(outs: &[Output]) -> Vec<Finding> {
    outs.iter()
        .flat_map(|o| o.findings.iter().cloned())
        .collect()
}

#[test]
fn duplicates_and_reordering_within_the_horizon_change_nothing() {
    let models = models();
    let all = interleave(&[frames(0, 70), frames(1, 70), frames(2, 70)]);
    let base = findings(&run(&mut processor(&models), inputs(&all, 0), 64));
    assert!(window_keys(&base).len() > 60, "{} findings", base.len());
    let model_findings = base.iter().filter(|f| f.decision_support).count();
    assert!(
        model_findings >= 9,
        "model windows scored: {model_findings}"
    );

    // Every tenth frame sent again up to 40 messages later, and runs of up to 6 frames
    // (~0.4 s per stream) shuffled: still inside the 2 s horizon.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut messy: Vec<Frame> = Vec::new();
    let mut dups = 0;
    for chunk in all.chunks(6) {
        let mut c = chunk.to_vec();
        c.shuffle(&mut rng);
        messy.extend(c);
    }
    for j in (0..all.len()).step_by(10) {
        let original = messy
            .iter()
            .position(|f| f.stream == all[j].stream && f.seq == all[j].seq)
            .unwrap();
        let at = (original + rng.random_range(1..40)).min(messy.len());
        messy.insert(at, all[j].clone());
        dups += 1;
    }
    let metrics = Metrics::new();
    let mut p = Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        metrics.pipeline.clone(),
    );
    let got = findings(&run(&mut p, inputs(&messy, 0), 64));
    let key_status = |fs: &[Finding]| -> BTreeSet<(String, String)> {
        fs.iter()
            .map(|f| (f.key.clone(), format!("{:?}", f.status)))
            .collect()
    };
    assert_eq!(key_status(&got), key_status(&base));
    assert_eq!(got.len(), base.len(), "no finding twice");
    assert_eq!(metrics.pipeline.frames_duplicate.get(), dups);
    assert!(metrics.pipeline.frames_reordered.get() > 100);
    assert_eq!(metrics.pipeline.signal_gaps.get(), 0);
}

#[test]
fn missing_frames_are_a_signal_gap_and_analysis_resumes_after_warm_up() {
    let models = models();
    let mut f = frames(0, 90);
    // Frames 200..215 (40 s .. 43 s) never arrive.
    f.drain(200..215);
    let metrics = Metrics::new();
    let mut p = Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        metrics.pipeline.clone(),
    );
    let got = findings(&run(&mut p, inputs(&f, 0), 32));
    let gaps: Vec<&Finding> = got
        .iter()
        .filter(|x| x.condition == Condition::SignalGap && x.status == FindingStatus::Present)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let g = gaps[0];
    assert!((g.value.unwrap() - 3.0).abs() < 1e-3, "gap {:?} s", g.value);
    assert_eq!(g.window_start.0, T0 + 40_000_000);
    assert_eq!(g.window_end.0, T0 + 43_000_000);
    assert_eq!(metrics.pipeline.signal_gaps.get(), 1);
    // No window overlaps the gap or its warm-up; windows continue after it and the
    // first one says the gap is over.
    let windows: Vec<&Finding> = got
        .iter()
        .filter(|x| x.condition == Condition::LeadOff)
        .collect();
    let warm_end = T0 + 43_000_000 + 5_000_000;
    for w in &windows {
        assert!(
            w.window_end.0 <= T0 + 40_000_000 || w.window_start.0 >= warm_end,
            "window {}..{} overlaps the gap",
            w.window_start.0,
            w.window_end.0
        );
    }
    let after: Vec<_> = windows
        .iter()
        .filter(|w| w.window_start.0 >= warm_end)
        .collect();
    assert!(after.len() >= 5, "{} windows after the gap", after.len());
    let cleared = got
        .iter()
        .find(|x| x.condition == Condition::SignalGap && x.status == FindingStatus::Absent)
        .expect("a finding that clears the gap");
    assert_eq!(cleared.window_start, after[0].window_start);
}

#[test]
fn device_clock_jumps_are_reported_and_analysis_restarts() {
    let models = models();
    let mut f = frames(1, 80);
    for fr in &mut f[150..] {
        fr.t0 = fr.t0.plus_us(3_000_000);
    }
    // A little jitter is not a jump.
    f[100].t0 = f[100].t0.plus_us(20_000);
    let metrics = Metrics::new();
    let mut p = Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        metrics.pipeline.clone(),
    );
    let got = findings(&run(&mut p, inputs(&f, 0), 50));
    let jumps: Vec<&Finding> = got
        .iter()
        .filter(|x| x.condition == Condition::ClockJump)
        .collect();
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert!((jumps[0].value.unwrap() - 3.0).abs() < 1e-3);
    assert_eq!(metrics.pipeline.clock_jumps.get(), 1);
    // Windows after the jump are on the new clock's grid: the stream's, the same
    // phase within the hop as before it.
    let phases: BTreeSet<i64> = got
        .iter()
        .filter(|x| x.condition == Condition::LeadOff)
        .map(|w| w.window_start.0.rem_euclid(5_000_000))
        .collect();
    assert_eq!(phases.len(), 1, "window off the stream's grid: {phases:?}");
}

/// The at-least-once contract of the processor: crash after any batch, restart a
/// fresh processor at the offset the last batch declared safe, and every window of
/// an undisturbed run is published by one run or the other, under the same key.
#[test]
fn restart_from_the_safe_offset_loses_no_window_and_invents_none() {
    let models = models();
    let all = interleave(&[
        frames(3, 120),
        frames(4, 120),
        frames(5, 120),
        frames(6, 120),
    ]);
    let n = all.len();
    let batch = 40;
    let base = findings(&run(&mut processor(&models), inputs(&all, 0), batch));
    let want = window_keys(&base);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut replayed_max = 0;
    for round in 0..12 {
        // Crash after a random number of whole batches.
        let crash_after = rng.random_range(1..n / batch);
        let mut a = processor(&models);
        let outs = run(&mut a, inputs(&all[..crash_after * batch], 0), batch);
        let safe = outs
            .last()
            .and_then(|o| o.offsets.iter().find(|(p, _)| *p == 0).map(|x| x.1))
            .expect("a safe offset");
        assert!(safe <= (crash_after * batch) as i64);
        let mut b = processor(&models);
        let resumed = run(&mut b, inputs(&all[safe as usize..], safe), batch);
        let published: Vec<Finding> = findings(&outs)
            .into_iter()
            .chain(findings(&resumed))
            .collect();
        let got = window_keys(&published);
        let lost: Vec<_> = want.difference(&got).collect();
        assert!(
            lost.is_empty(),
            "round {round}: crash after {crash_after} batches, resumed at {safe}: lost {lost:?}"
        );
        let invented: Vec<_> = got.difference(&want).collect();
        assert!(
            invented.is_empty(),
            "round {round}: keys the undisturbed run lacks: {invented:?}"
        );
        let replayed = crash_after * batch - safe as usize;
        replayed_max = replayed_max.max(replayed);
        println!(
            "round {round}: crash at {} of {n}, resumed at {safe} ({replayed} frames replayed), {} duplicates",
            crash_after * batch,
            published.len() - window_keys(&published).len().min(published.len())
        );
    }
    // What is replayed is bounded by the longest model window plus a rhythm window,
    // a hop and the warm-up (30 + 10 + 5 + 5 s of 4 streams at 5 frames/s) and the
    // reorder horizon, not by how long the streams have run.
    assert!(
        replayed_max <= (30 + 10 + 5 + 5 + 2) * 5 * 4 + batch,
        "replayed {replayed_max}"
    );
}

/// A stream evicted while it holds a model window (waiting for the rhythm windows
/// to cover it): the window is scored, and only then is the stream's AF episode state
/// forgotten, so nothing of the stream is left behind. An AF stream stopped at every
/// second over one model hop, so that some stops fall while a window is held.
#[test]
fn an_evicted_stream_s_held_window_is_scored_then_forgotten() {
    let models = models();
    let settings = StreamSettings {
        idle_evict_s: 1.0,
        commit_hold_s: 1.0,
        reorder_wait_ms: 500,
        ..StreamSettings::default()
    };
    let mut runs = Vec::new();
    for seconds in 46..=55 {
        let mut p = processor(&models).with_stream_settings(settings.clone());
        run(&mut p, inputs(&frames(1, seconds), 0), 200);
        assert!(p.episode_streams() >= 1, "{seconds} s: AF windows scored");
        runs.push(p);
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut released = 0;
    for mut p in runs {
        let out = p.process(Vec::new());
        released += usize::from(
            out.findings
                .iter()
                .any(|f| matches!(f.source, ecg_types::FindingSource::Model { .. })),
        );
        assert_eq!(p.streams(), 0, "evicted");
        assert_eq!(p.episode_streams(), 0, "no episode state left");
    }
    assert!(released >= 1, "no stop fell while a window was held");
}

#[test]
fn idle_streams_stop_holding_back_the_offset() {
    let models = models();
    let settings = StreamSettings {
        idle_evict_s: 1.0,
        ..StreamSettings::default()
    };
    let mut p = processor(&models).with_stream_settings(settings);
    let f = frames(2, 20);
    let outs = run(&mut p, inputs(&f, 100), 200);
    let safe = outs.last().unwrap().offsets[0].1;
    assert!(safe <= 100 + f.len() as i64);
    assert_eq!(p.streams(), 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Eviction is checked at most once a second, on the next batch.
    let later = frames(7, 1);
    let outs = run(&mut p, inputs(&later, 100 + f.len() as i64), 10);
    assert_eq!(p.streams(), 1, "only the new stream is left");
    let safe_after = outs.last().unwrap().offsets[0].1;
    assert_eq!(
        safe_after,
        100 + f.len() as i64,
        "held back only by the new stream"
    );
}

#[test]
fn waveform_model_scores_12_lead_streams_on_its_cadence_in_shadow() {
    let models = models();
    assert!(
        models.iter().any(|m| m.manifest().id == "ecg12-attia"),
        "the bundled 12-lead model is loaded"
    );
    let dev = ecg_sim::Device::new(ecg_sim::Preset::NormalSinus.config(
        3,
        500,
        Lead::STANDARD_12.to_vec(),
    ))
    .unwrap();
    let mut src = ecg_sim::FrameSource::new(
        dev,
        ecg_types::StreamId::new("twelve").unwrap(),
        ecg_types::DeviceId::new("d").unwrap(),
        ecg_types::PatientId::new("p12").unwrap(),
        T0,
        100,
        1000,
    );
    // Cadence 300 s on the stream's grid of device time (a phase within the 300 s
    // picked by its id): windows start no earlier than the first rhythm window and
    // end by the end of the signal, one every 300 s.
    let f: Vec<Frame> = (0..620 * 5).map(|_| src.next_frame()).collect();
    let metrics = Metrics::new();
    let mut p = Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        metrics.pipeline.clone(),
    );
    let got = findings(&run(&mut p, inputs(&f, 0), 100));
    let scored = metrics
        .pipeline
        .windows_scored
        .with_label_values(&["ecg12-attia", "scored"])
        .get()
        + metrics
            .pipeline
            .windows_scored
            .with_label_values(&["ecg12-attia", "indeterminate"])
            .get();
    let first_start = got
        .iter()
        .filter(|x| x.condition == Condition::LeadOff)
        .map(|x| x.window_start.0)
        .min()
        .expect("rhythm windows");
    // Model windows end in [first_start + 10 s, T0 + 620 s]: that span holds
    // floor(span / 300 s) or one more grid points, depending on the phase.
    let span = T0 + 620_000_000 - (first_start + 10_000_000);
    let at_least = (span / 300_000_000) as u64;
    println!(
        "{scored} windows of ecg12-attia scored, {at_least} or {} expected, {} findings",
        at_least + 1,
        got.len()
    );
    assert!(at_least >= 1);
    assert!(
        (at_least..=at_least + 1).contains(&scored),
        "one window per 300 s of device time"
    );
    assert!(
        got.iter().all(|x| !x.key.contains("ecg12-attia")),
        "shadow models publish no findings"
    );
    assert!(
        got.iter().any(|x| x.key.contains("af-rr")),
        "the active model still does"
    );
}

#[test]
fn model_runs_hold_at_most_max_batch_windows() {
    let models = models();
    let all = interleave(&[frames(0, 70), frames(1, 70), frames(2, 70), frames(3, 70)]);
    let metrics = Metrics::new();
    let mut p = Processor::new(
        DspConfig::default(),
        10.0,
        models.clone(),
        metrics.pipeline.clone(),
    )
    .with_max_batch(3);
    // One big batch: every model window of the run is due at once.
    let got = findings(&run(&mut p, inputs(&all, 0), all.len()));
    let windows = got.iter().filter(|f| f.key.contains("af-rr")).count() as u64;
    let h = metrics
        .pipeline
        .inference_batch_size
        .with_label_values(&["af-rr"]);
    let (runs, scored) = (h.get_sample_count(), h.get_sample_sum() as u64);
    assert!(windows >= 12, "{windows} windows");
    assert_eq!(scored, windows, "every window scored");
    assert!(
        runs >= windows.div_ceil(3),
        "{runs} runs for {windows} windows"
    );
}

/// A finding's window closes when the frame that completes it — its last sample plus
/// the QRS detector's decision latency — arrives, and different streams' windows close
/// at different moments of the hop, so that a process's windows do not all fall due
/// at once.
#[test]
fn windows_close_after_the_detector_latency_spread_over_the_hop() {
    let models = models();
    let streams: Vec<Vec<Frame>> = (0..24).map(|i| frames(i, 40)).collect();
    let all = interleave(&streams);
    let mut p = processor(&models);
    let outs = run(&mut p, inputs(&all, 0), 64);
    let latency_us = {
        let dsp = ecg_dsp::stream::StreamDsp::new(&DspConfig::default(), 250, 1);
        dsp.latency_samples() as i64 * 1_000_000 / 250
    };
    let mut checked = 0;
    for o in &outs {
        assert_eq!(
            o.closed_us.len(),
            o.findings.len(),
            "a close time per finding"
        );
        for (f, &closed) in o.findings.iter().zip(&o.closed_us) {
            if f.condition != Condition::LeadOff && !f.key.contains("af-rr") {
                continue;
            }
            // Produced (timestamp) when its frame's last sample was taken: the window
            // end plus the decision latency, rounded up to the end of a 200 ms frame.
            let after = closed - f.window_end.0;
            assert!(
                (latency_us..latency_us + 200_000 + 1).contains(&after),
                "closed {after} µs after the window end (latency {latency_us} µs)"
            );
            checked += 1;
        }
    }
    assert!(checked >= 24 * 4, "{checked} findings checked");
    let phases: BTreeSet<i64> = findings(&outs)
        .iter()
        .filter(|f| f.condition == Condition::LeadOff)
        .map(|f| f.window_end.0.rem_euclid(5_000_000))
        .collect();
    assert!(
        phases.len() >= 12,
        "24 streams' windows end at {} phases of the 5 s hop",
        phases.len()
    );
}

//! Lethal alarms through the pipeline's stages (sequencer → analyzer → scorer, the
//! per-stream code the deployable runs): asystole on a three-lead stream is published
//! at once (and again while it lasts) by the lethal detector with its evidence in words and a strip of every
//! lead; a plethysmogram that keeps pulsing through the same ECG pause suppresses it,
//! and the suppressed call says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use ecg_dsp::stream::DspConfig;
use ecg_pipeline::analyzer::lethal_source;
use ecg_pipeline::events::Recorder;
use ecg_pipeline::offline::{frame_record, Processor};
use ecg_sim::{Device, DeviceConfig, FrameSource, Preset, Rhythm, RhythmPlan};
use ecg_types::{
    Condition, DeviceId, Finding, FindingStatus, Frame, Lead, PatientId, PulseKind, PulseWave,
    SampleRate, StreamId,
};

const T0: i64 = 1_800_000_000_000_000;
const FS: u32 = 250;

/// A pulse wave at `bpm` (NU) over samples `[from, from + n)` at `rate`.
fn pleth(from: u64, n: usize, bpm: f32, rate: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = (from + i as u64) as f32 / rate as f32;
            let ph = t % (60.0 / bpm);
            let rise = (ph / 0.12).min(1.0);
            0.5 + rise * (-(ph - 0.12).max(0.0) / 0.3).exp()
        })
        .collect()
}

/// A device built from `cfg` streamed as a gateway would, in 1 s frames from `T0`:
/// stream `{site}-{n}.ecg`, device `mon-{n}`, patient `p-{n}`.
fn source(cfg: DeviceConfig, site: &str, n: u32) -> FrameSource {
    let per_frame = cfg.sample_rate as usize;
    FrameSource::new(
        Device::new(cfg).unwrap(),
        StreamId::new(format!("{site}-{n}.ecg")).unwrap(),
        DeviceId::new(format!("mon-{n}")).unwrap(),
        PatientId::new(format!("p-{n}")).unwrap(),
        T0,
        per_frame,
        1000,
    )
}

/// `frames` in order through the pipeline's stages (sequencer → analyzer, one record
/// each); none may be dead-lettered. The findings they produced.
fn process(frames: impl IntoIterator<Item = Frame>) -> Vec<Finding> {
    process_with(DspConfig::default(), frames)
}

/// [`process`] with the DSP configuration `cfg`.
fn process_with(cfg: DspConfig, frames: impl IntoIterator<Item = Frame>) -> Vec<Finding> {
    let mut p = Processor::new(
        cfg,
        5.0,
        Arc::new(Vec::new()),
        Arc::new(Recorder::default()),
    );
    let mut findings = Vec::new();
    for (s, f) in frames.into_iter().enumerate() {
        let out = p.process(vec![frame_record(&f, s as i64)]);
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        findings.extend(out.findings);
    }
    findings
}

/// The first `seconds` frames of `src`, each edited by `edit(second, frame)`, through
/// [`process`].
fn run_source(
    mut src: FrameSource,
    seconds: usize,
    mut edit: impl FnMut(usize, &mut Frame),
) -> Vec<Finding> {
    process((0..seconds).map(|s| {
        let mut f = src.next_frame();
        edit(s, &mut f);
        f
    }))
}

/// A pacemaker pulse at sample `k` of frame `f`: `artefact` (counts) added to every
/// lead from there (cut at the frame's end), and `k` flagged when `reported`.
fn pulse(f: &mut Frame, k: usize, artefact: &[i32], reported: bool) {
    let n = f.samples_per_lead();
    for l in 0..f.leads.len() {
        for (j, a) in artefact.iter().enumerate().take(n.saturating_sub(k)) {
            f.samples[l * n + k + j] += a;
        }
    }
    if reported {
        f.pace.push(k as u32);
    }
}

/// The findings of `seconds` of `preset` on `leads` in 1 s frames.
fn run_preset(preset: Preset, seed: u64, leads: Vec<Lead>, seconds: usize) -> Vec<Finding> {
    run_source(
        source(preset.config(seed, FS, leads), "ward", 3),
        seconds,
        |_, _| {},
    )
}

/// `seconds` of the asystole preset (sinus with 6.5 s pauses from 12 s, every 27 s)
/// on leads I, II and V1, in 1 s frames, with a pleth channel pulsing at 70/min when
/// `with_pulse`; the findings every frame produced.
fn run(seconds: usize, with_pulse: bool) -> Vec<Finding> {
    let leads = vec![Lead::I, Lead::II, Lead::V1];
    let src = source(Preset::Asystole.config(11, FS, leads), "icu", 7);
    run_source(src, seconds, |s, f| {
        if with_pulse {
            f.pulses.push(PulseWave {
                kind: PulseKind::Pleth,
                sample_rate: SampleRate(125),
                samples: pleth(s as u64 * 125, 125, 70.0, 125),
            });
        }
    })
}

fn lethal(findings: &[Finding], c: Condition, status: FindingStatus) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.source == lethal_source() && f.condition == c && f.status == status)
        .collect()
}

#[test]
fn asystole_on_every_lead_is_published_at_once_with_evidence_and_strip() {
    let findings = run(80, false);
    let present = lethal(&findings, Condition::Asystole, FindingStatus::Present);
    assert!(!present.is_empty(), "no asystole published");
    // Findings keyed on the event's start on a 1 s grid, inside a pause; an event that
    // lasts is published again under the same key, each time reaching further, the
    // strip going with the first.
    for w in present.windows(2) {
        if w[0].window_start == w[1].window_start {
            assert_eq!(w[0].key, w[1].key);
            assert!(w[1].window_end > w[0].window_end);
            assert!(w[1].strip.is_none(), "the strip goes with the onset only");
        }
    }
    let mut starts: Vec<i64> = present.iter().map(|f| f.window_start.0).collect();
    starts.dedup();
    for (k, f) in present.iter().enumerate() {
        assert_eq!((f.window_start.0 - T0) % 1_000_000, 0, "on the 1 s grid");
        let start_s = (f.window_start.0 - T0) as f64 / 1e6;
        assert!(
            [(12.0, 18.5), (39.0, 45.5), (66.0, 72.5)]
                .iter()
                .any(|&(s, e)| start_s >= s - 1.5 && start_s <= e),
            "asystole starting at {start_s} s is outside the pauses"
        );
        let reason = f.reason.as_deref().expect("evidence in words");
        assert!(
            reason.contains("raised by 3 of 3 usable lead(s)"),
            "{reason}"
        );
        assert!(reason.contains("no pulse channel"), "{reason}");
        if k > 0 && present[k - 1].window_start == f.window_start {
            continue;
        }
        let strip = f.strip.as_deref().expect("a strip with the onset");
        assert_eq!(strip.lead, Lead::I);
        let more: Vec<_> = strip.more.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(more, ["II", "V1"], "every other lead");
    }
    // The later pauses (after the warm-up) are each raised.
    for s in [39.0, 66.0] {
        assert!(
            present.iter().any(|f| {
                let t = (f.window_start.0 - T0) as f64 / 1e6;
                (s - 1.5..s + 6.5).contains(&t)
            }),
            "the pause at {s} s was not raised: {starts:?}"
        );
    }
    // Its absence is published with the rhythm windows, so the alert can resolve;
    // lead 0's own pause detector no longer calls asystole.
    assert!(!lethal(&findings, Condition::Asystole, FindingStatus::Absent).is_empty());
    assert!(findings
        .iter()
        .all(|f| f.condition != Condition::Asystole || f.source == lethal_source()));
    // Nothing else lethal on this rhythm.
    for c in [
        Condition::VentricularTachycardia,
        Condition::VentricularFibrillation,
        Condition::ExtremeTachycardia,
    ] {
        assert!(
            lethal(&findings, c, FindingStatus::Present).is_empty(),
            "{c}"
        );
    }
}

#[test]
fn a_pulse_through_the_pause_suppresses_asystole() {
    let with = run(80, true);
    let raised = lethal(&with, Condition::Asystole, FindingStatus::Present);
    assert!(
        raised.is_empty(),
        "asystole raised despite a pulse: {:?}",
        raised
            .iter()
            .map(|f| f.reason.as_deref())
            .collect::<Vec<_>>()
    );
    // The suppressed candidate says what suppressed it.
    let suppressed: Vec<&str> = lethal(&with, Condition::Asystole, FindingStatus::Absent)
        .iter()
        .filter_map(|f| f.reason.as_deref())
        .filter(|r| r.starts_with("suppressed"))
        .collect();
    assert!(
        !suppressed.is_empty(),
        "no suppressed asystole call published"
    );
    assert!(
        suppressed.iter().all(|r| r.contains("pleth")),
        "{suppressed:?}"
    );
}

#[test]
fn rhythms_that_are_not_lethal_raise_no_lethal_alarm() {
    for preset in [
        Preset::NormalSinus,
        Preset::NoisyNormalSinus,
        Preset::Bradycardia,
        Preset::Tachycardia,
        Preset::AtrialFibrillation,
        Preset::Pvcs,
        // Every lead off for 8 s every 40 s: no pause and no slow rate across the gap.
        Preset::LeadOffNormalSinus,
        // Wide paced beats at 100-120 bpm, the pulses flagged in the frames.
        Preset::VentricularPaced,
    ] {
        for (seed, leads) in [
            (5, vec![Lead::I, Lead::II, Lead::V1]),
            (2, vec![Lead::II]),
            (3, vec![Lead::II]),
        ] {
            check_no_lethal(preset, &run_preset(preset, seed, leads, 120));
        }
    }
}

fn check_no_lethal(preset: Preset, findings: &[Finding]) {
    let raised: Vec<String> = findings
        .iter()
        .filter(|f| f.source == lethal_source() && f.status == FindingStatus::Present)
        .map(|f| format!("{} {:?}", f.condition, f.reason))
        .collect();
    assert!(raised.is_empty(), "{preset:?}: {raised:?}");
    // Their absence is published, so the detector did run.
    assert!(
        findings
            .iter()
            .any(|f| f.source == lethal_source() && f.status == FindingStatus::Absent),
        "{preset:?}: no lethal call published"
    );
}

/// The asystole stream of [`run`] with a pacemaker that has lost capture: its pulses
/// go on at 70/min through the sinus stretches and the pauses alike, each a 2 mV
/// spike and a small undershoot, 20 ms in all, on every lead (a pulse as a 250 Hz
/// recording shows it), reported in the frames' `pace` when `reported`.
fn run_paced(seconds: usize, reported: bool) -> Vec<Finding> {
    run_paced_with(seconds, reported, &[2000, 1000, -300, -200, -100])
}

fn run_paced_with(seconds: usize, reported: bool, artefact: &[i32]) -> Vec<Finding> {
    let leads = vec![Lead::I, Lead::II, Lead::V1];
    let src = source(Preset::Asystole.config(11, FS, leads), "icu", 8);
    let period = f64::from(FS) * 60.0 / 70.0;
    let mut next = 0.4 * f64::from(FS);
    run_source(src, seconds, |s, f| {
        let n = f.samples_per_lead();
        let first = (s * n) as f64;
        while next < first + n as f64 {
            let at = (next - first).round() as usize;
            if at < n {
                pulse(f, at, artefact, reported);
            }
            next += period;
        }
    })
}

/// A pacemaker that has lost capture fires on through the pauses. Reported by the
/// device (wire format `pace_pulses`), its pulses are blanked before any detector sees
/// them: each pause is raised as asystole, the evidence naming the pulses, and the
/// pulses are not counted as beats (no tachycardia, no ventricular call). Unreported,
/// the same pulses are taken for beats and hide a pause — why a gateway must pass on
/// its monitor's pace flags (docs/wire-format.md).
#[test]
fn asystole_through_pacemaker_pulses_is_raised_when_the_device_reports_them() {
    let raised_in = |findings: &[Finding]| -> Vec<f64> {
        [39.0, 66.0]
            .into_iter()
            .filter(|&s| {
                lethal(findings, Condition::Asystole, FindingStatus::Present)
                    .iter()
                    .any(|f| {
                        let t = (f.window_start.0 - T0) as f64 / 1e6;
                        (s - 1.5..s + 6.5).contains(&t)
                    })
            })
            .collect()
    };
    // Artefacts of other shapes: a 60 ms recharge tail of -0.4 mV; a 5 mV biphasic
    // spike; a 40 ms band-limited pulse with its undershoot.
    let tail: Vec<i32> = [2000, 800]
        .into_iter()
        .chain((0..15).map(|k| (-400.0 * (-f64::from(k) / 4.0).exp()) as i32))
        .collect();
    for artefact in [
        tail,
        vec![5000, -1000],
        vec![1500, 1500, 1000, 500, 0, -200, -400, -300, -200, -100],
    ] {
        let findings = run_paced_with(80, true, &artefact);
        assert_eq!(
            raised_in(&findings),
            [39.0, 66.0],
            "{artefact:?}: a pause was not raised"
        );
        for c in [
            Condition::VentricularTachycardia,
            Condition::VentricularFibrillation,
            Condition::ExtremeTachycardia,
        ] {
            assert!(
                lethal(&findings, c, FindingStatus::Present).is_empty(),
                "{artefact:?}: {c}"
            );
        }
    }
    let reported = run_paced(80, true);
    assert_eq!(raised_in(&reported), [39.0, 66.0], "a pause was not raised");
    let present = lethal(&reported, Condition::Asystole, FindingStatus::Present);
    // The device times of the pulses sent: sample round(0.4 s + k period) at 250 Hz.
    let period = f64::from(FS) * 60.0 / 70.0;
    let sent: Vec<i64> = (0..)
        .map(|k| (0.4 * f64::from(FS) + f64::from(k) * period).round() as i64)
        .take_while(|&at| at < 80 * i64::from(FS))
        .map(|at| T0 + at * 1_000_000 / i64::from(FS))
        .collect();
    let mut marked = 0;
    for f in &present {
        let reason = f.reason.as_deref().expect("evidence in words");
        assert!(
            reason.contains("pacemaker pulse(s) reported (blanked)"),
            "{reason}"
        );
        // Its strip marks exactly the pulses sent within its span, at their times.
        if let Some(strip) = &f.strip {
            let end = strip.start_us
                + strip.samples_uv.len() as i64 * 1_000_000 / i64::from(strip.sample_rate_hz);
            let want: Vec<i64> = sent
                .iter()
                .copied()
                .filter(|t| (strip.start_us..end).contains(t))
                .collect();
            assert!(!want.is_empty());
            assert_eq!(strip.pace_us, want, "{}", f.key);
            marked += 1;
        }
    }
    assert!(marked >= 2, "{marked} asystole strips");
    for c in [
        Condition::VentricularTachycardia,
        Condition::VentricularFibrillation,
        Condition::ExtremeTachycardia,
    ] {
        assert!(
            lethal(&reported, c, FindingStatus::Present).is_empty(),
            "{c}"
        );
    }
    let unreported = run_paced(80, false);
    assert!(
        unreported
            .iter()
            .filter_map(|f| f.strip.as_ref())
            .all(|s| s.pace_us.is_empty()),
        "marks without reported pulses"
    );
    assert!(
        raised_in(&unreported).len() < 2,
        "unreported pulses no longer hide a pause: the test's premise changed"
    );
}

/// Captured pacing: every beat of `preset`'s stream begins with a reported pacemaker
/// pulse (a 2 mV one-sample artefact on every lead) `lead_s` before its R peak (160 ms
/// as an atrial pacemaker's; 20 ms as a ventricular one's in pseudofusion with the QRS,
/// where the blanking takes the R wave). The findings of `seconds`.
fn run_captured(seconds: usize, lead_s: f64, preset: Preset, seed: u64) -> Vec<Finding> {
    let leads = vec![Lead::I, Lead::II, Lead::V1];
    let mut src = source(preset.config(seed, FS, leads), "icu", 9);
    // All frames first: a beat's pulse may fall in the frame before the beat's.
    let mut frames: Vec<Frame> = (0..seconds).map(|_| src.next_frame()).collect();
    let n = FS as usize;
    let lead = (lead_s * f64::from(FS)).round() as u64;
    for b in &src.device().truth().beats {
        let Some(at) = b.sample.checked_sub(lead) else {
            continue;
        };
        if let Some(f) = frames.get_mut(at as usize / n) {
            pulse(f, at as usize % n, &[2000], true);
        }
    }
    process(frames)
}

/// A paced heart beats on: the blanking after each reported pulse leaves the beat that
/// follows it to the detectors. Over pulses 0-200 ms before the R peak (every 10 ms;
/// from 30 ms down, the blanking takes the R wave itself, as in pseudofusion) on four
/// streams (sinus, two seeds; sinus with PVCs; noisy sinus), no lethal alarm is raised
/// after a stream's first 5 s. In its first seconds, before the leads have learned
/// their dominant beat, the fibrillation call rests on the spectrum alone, and R waves
/// blanked in pseudofusion leave the spectrum of a slow fibrillation: 5 of the 84
/// streams raise it there (docs/accuracy-alarms.md, "Pacemaker pulses").
#[test]
fn captured_pacing_raises_no_lethal_alarm_after_the_first_seconds() {
    let mut early = 0;
    for (preset, seed) in [
        (Preset::NormalSinus, 7u64),
        (Preset::NormalSinus, 9),
        (Preset::Pvcs, 3),
        (Preset::NoisyNormalSinus, 4),
    ] {
        for k in 0..=20 {
            let lead_s = f64::from(k) * 0.01;
            let findings = run_captured(60, lead_s, preset, seed);
            let mut first_seconds = false;
            for c in ecg_dsp::lethal::LETHAL_CONDITIONS {
                for f in lethal(&findings, c, FindingStatus::Present) {
                    let t = (f.window_start.0 - T0) as f64 / 1e6;
                    assert!(
                        t < 5.0 && c == Condition::VentricularFibrillation,
                        "{preset:?} seed {seed}, pulse {lead_s:.2} s before the R peak: {c} from {t} s: {:?}",
                        f.reason
                    );
                    first_seconds = true;
                }
            }
            early += usize::from(first_seconds);
        }
    }
    assert!(
        early <= 5,
        "{early} of 84 streams raised fibrillation in their first seconds"
    );
}

/// The findings of `seconds` of a device built from `cfg` on leads I, II and V1, in
/// 1 s frames. The device's own pacemaker pulses (a paced rhythm's) are flagged when
/// `report`; with `asynchronous_pace_s`, a pacemaker that senses nothing also fires
/// every that many seconds, its spike (2 mV, one sample, on every lead) drawn and
/// flagged.
fn run_device(
    plan: RhythmPlan,
    seed: u64,
    seconds: usize,
    report: bool,
    asynchronous_pace_s: Option<f64>,
) -> Vec<Finding> {
    let leads = vec![Lead::I, Lead::II, Lead::V1];
    let src = source(DeviceConfig::new(seed, FS, leads, plan), "icu", 10);
    let n = FS as usize;
    let mut next = 0.37 * f64::from(FS);
    run_source(src, seconds, |s, f| {
        if !report {
            f.pace.clear();
        }
        if let Some(every) = asynchronous_pace_s {
            while (next.round() as usize) < (s + 1) * n {
                pulse(f, next.round() as usize - s * n, &[2000], true);
                next += every * f64::from(FS);
            }
            f.pace.sort_unstable();
            f.pace.dedup();
        }
    })
}

/// A ventricular-paced rhythm at a rate-responsive pacemaker's exercise rate
/// (100–120 bpm, wide complexes), alternating every 30 s with the patient's own narrow
/// sinus beats: wide complexes above 100 bpm after narrow ones are what the
/// ventricular tachycardia criterion describes. With the device's pulses reported no
/// lethal alarm is raised (the blanking alone on most seeds, the paced-run rule on
/// the others: dsp/tests/lethal.rs); unreported, ventricular tachycardia is raised on
/// most seeds, as monitors without pace detection do.
#[test]
fn paced_rhythm_is_not_ventricular_tachycardia_when_the_device_reports_its_pulses() {
    let plan = || {
        RhythmPlan::schedule(
            vec![
                (Rhythm::NormalSinus, 30.0),
                (Rhythm::VentricularPaced, 30.0),
            ],
            true,
        )
    };
    let mut raised_unreported = 0;
    for seed in 1..=8u64 {
        let reported = run_device(plan(), seed, 120, true, None);
        for c in ecg_dsp::lethal::LETHAL_CONDITIONS {
            let present = lethal(&reported, c, FindingStatus::Present);
            assert!(
                present.is_empty(),
                "seed {seed}: {c}: {:?}",
                present[0].reason
            );
        }
        let unreported = run_device(plan(), seed, 120, false, None);
        raised_unreported += usize::from(
            !lethal(
                &unreported,
                Condition::VentricularTachycardia,
                FindingStatus::Present,
            )
            .is_empty(),
        );
    }
    assert!(
        raised_unreported >= 6,
        "unreported pacing raised VT on {raised_unreported} of 8 seeds: the test's premise changed"
    );
}

/// A pacemaker that neither senses nor captures (lead failure, or asynchronous mode)
/// fires on at its own rate, every 0.8, 1, 1.2 or 1.5 s, through a sinus rhythm with
/// runs of true ventricular tachycardia at 160-185 bpm (12 s of every 32 s; 8 seeds,
/// 96 runs). Its pulses, reported and blanked, land on some of the run's beats (at
/// these intervals never on all of them; the rule's own guards against pulse trains
/// are tested in dsp/tests/lethal.rs), so the paced-run rule silences none, and the
/// blanking of pulses that fall on the run's complexes hides none. Every run still raises a
/// lethal alarm; 91 of the 96 raise ventricular tachycardia itself (the other 5, with
/// pulses every 0.8 or 1.2 s, raise fibrillation or extreme tachycardia instead: the
/// pulses held on the sinus beats between the runs let a lead's dominant beat become
/// the run's shape; docs/accuracy-alarms.md). Without the pacemaker all 24 runs raise
/// ventricular tachycardia.
#[test]
fn ventricular_tachycardia_through_an_undersensing_pacemaker_is_still_raised() {
    let plan = || {
        RhythmPlan::schedule(
            vec![
                (Rhythm::NormalSinus, 20.0),
                (Rhythm::VentricularTachycardia, 12.0),
            ],
            true,
        )
    };
    // The runs (of 3) during which one of `conditions` was raised.
    let raised = |findings: &[Finding], conditions: &[Condition]| -> Vec<usize> {
        (0..3)
            .filter(|k| {
                let (a, b) = (20.0 + 32.0 * *k as f64, 32.0 + 32.0 * *k as f64);
                conditions.iter().any(|&c| {
                    lethal(findings, c, FindingStatus::Present).iter().any(|f| {
                        let t = (f.window_start.0 - T0) as f64 / 1e6;
                        (a - 1.0..b + 1.0).contains(&t)
                    })
                })
            })
            .collect()
    };
    let vt = [Condition::VentricularTachycardia];
    let any = [
        Condition::VentricularTachycardia,
        Condition::VentricularFibrillation,
        Condition::ExtremeTachycardia,
    ];
    let mut vt_runs = 0;
    for seed in 1..=8u64 {
        let without = run_device(plan(), seed, 96, true, None);
        assert_eq!(
            raised(&without, &vt),
            [0, 1, 2],
            "seed {seed} without a pacemaker"
        );
        for every in [0.8, 1.0, 1.2, 1.5] {
            let paced = run_device(plan(), seed, 96, true, Some(every));
            assert_eq!(
                raised(&paced, &any),
                [0, 1, 2],
                "seed {seed}, pulses every {every} s: a run raised no alarm"
            );
            vt_runs += raised(&paced, &vt).len();
        }
    }
    eprintln!("{vt_runs} of 96 runs raised ventricular tachycardia");
    assert!(
        vt_runs >= 91,
        "{vt_runs} of 96 runs raised ventricular tachycardia"
    );
}

/// `seconds` 1 s frames of `preset` on the standard 12 leads at `fs`.
fn twelve_lead_frames(preset: Preset, seed: u64, fs: u32, seconds: usize) -> Vec<Frame> {
    let mut src = source(
        preset.config(seed, fs, Lead::STANDARD_12.to_vec()),
        "ward",
        12,
    );
    (0..seconds).map(|_| src.next_frame()).collect()
}

/// The lethal findings among `findings`, without their strips (which show every lead).
fn lethal_calls(findings: &[Finding]) -> Vec<Finding> {
    findings
        .iter()
        .filter(|f| f.source == lethal_source())
        .map(|f| Finding {
            strip: None,
            ..f.clone()
        })
        .collect()
}

/// On a stream that carries I, II and III the lethal detector does not analyse aVR, aVL
/// and aVF, which are combinations of them (`ecg_dsp::analysed_leads`): a 12-lead
/// stream's lethal calls are exactly those of the same frames with the three augmented
/// leads taken out. Against analysing all twelve (`augmented_leads = true`), on 12-lead
/// streams of every simulated rhythm (10 rhythms, 6 seeds, 250 and 500 Hz, 90 s): no
/// stream raises a condition that the twelve did not, the asystole and VT streams raise
/// the same conditions, and false alarms on rhythms that are not lethal
/// do not grow in number (before one lead could no longer raise a tachycardia alone,
/// they fell from 10 streams to 5: noisy sinus streams' false extreme tachycardias
/// came from the augmented leads, whose noise is the limb leads').
#[test]
fn a_12_lead_stream_s_augmented_leads_are_not_analysed_again() {
    // The same calls as without the augmented leads: in the standard order, and in
    // another with V2 flagged off for 8 s through the second asystole (its flags must
    // follow it to the detector, and the evidence says which lead was off).
    let shuffled = [
        Lead::V1,
        Lead::AVR,
        Lead::I,
        Lead::V2,
        Lead::AVL,
        Lead::II,
        Lead::V3,
        Lead::AVF,
        Lead::III,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];
    for (preset, order) in [
        (Preset::NoisyNormalSinus, &Lead::STANDARD_12),
        (Preset::Asystole, &Lead::STANDARD_12),
        (Preset::VentricularTachycardia, &Lead::STANDARD_12),
        (Preset::Pvcs, &Lead::STANDARD_12),
        (Preset::Asystole, &shuffled),
        (Preset::NoisyNormalSinus, &shuffled),
    ] {
        let keep_leads = |f: &Frame, keep: &dyn Fn(Lead) -> bool, order: &[Lead]| {
            let n = f.samples_per_lead();
            let at = |l: Lead| f.leads.iter().position(|&m| m == l).unwrap();
            let mut g = f.clone();
            g.leads = order.iter().copied().filter(|&l| keep(l)).collect();
            g.lead_off = g.leads.iter().map(|&l| f.lead_off[at(l)]).collect();
            g.samples = g
                .leads
                .iter()
                .flat_map(|&l| f.samples[at(l) * n..(at(l) + 1) * n].iter().copied())
                .collect();
            g
        };
        let frames: Vec<Frame> = twelve_lead_frames(preset, 1, 500, 60)
            .iter()
            .enumerate()
            .map(|(s, f)| {
                let mut g = keep_leads(f, &|_| true, order);
                if order != &Lead::STANDARD_12 && (36..44).contains(&s) {
                    g.lead_off[3] = true;
                }
                g
            })
            .collect();
        let augmented = |l: Lead| matches!(l, Lead::AVR | Lead::AVL | Lead::AVF);
        let nine: Vec<Frame> = frames
            .iter()
            .map(|f| keep_leads(f, &|l| !augmented(l), order))
            .collect();
        assert_eq!(nine[0].leads.len(), 9);
        // The 12-lead stream's evidence says how aVR, aVL and aVF were read.
        const THROUGH: &str = "; aVR, aVL, aVF read through I, II and III";
        let mut a = lethal_calls(&process(frames));
        let b = lethal_calls(&process(nine));
        assert!(!a.is_empty(), "{preset:?}: the detector ran");
        if preset == Preset::Asystole {
            assert!(a.iter().any(|f| f.reason.is_some()), "{preset:?}: raised");
        }
        for f in &mut a {
            if let Some(r) = &mut f.reason {
                assert!(r.ends_with(THROUGH), "{r}");
                r.truncate(r.len() - THROUGH.len());
            }
        }
        assert!(b
            .iter()
            .all(|f| f.reason.as_deref().is_none_or(|r| !r.contains("through"))));
        assert_eq!(a, b, "{preset:?} {order:?}");
    }

    // Against analysing all twelve.
    let presets = [
        (Preset::NormalSinus, false),
        (Preset::NoisyNormalSinus, false),
        (Preset::Bradycardia, false),
        (Preset::Tachycardia, false),
        (Preset::AtrialFibrillation, false),
        (Preset::Pvcs, false),
        (Preset::LeadOffNormalSinus, false),
        (Preset::VentricularPaced, false),
        (Preset::Asystole, true),
        (Preset::VentricularTachycardia, true),
    ];
    let raised = |cfg: &DspConfig, frames: Vec<Frame>| -> BTreeSet<Condition> {
        process_with(cfg.clone(), frames)
            .iter()
            .filter(|f| f.source == lethal_source() && f.status == FindingStatus::Present)
            .map(|f| f.condition)
            .collect()
    };
    let mut twelve = DspConfig::default();
    twelve.lethal.augmented_leads = true;
    let (mut false_nine, mut false_twelve, mut streams) = (0, 0, 0);
    for fs in [250, 500] {
        for (preset, lethal) in presets {
            for seed in 1..=6 {
                let frames = twelve_lead_frames(preset, seed, fs, 90);
                let a = raised(&DspConfig::default(), frames.clone());
                let b = raised(&twelve, frames);
                assert!(a.is_subset(&b), "{fs} Hz {preset:?} {seed}: {a:?} vs {b:?}");
                if lethal {
                    assert_eq!(a, b, "{fs} Hz {preset:?} {seed}");
                    assert!(!a.is_empty(), "{fs} Hz {preset:?} {seed}");
                } else {
                    false_nine += usize::from(!a.is_empty());
                    false_twelve += usize::from(!b.is_empty());
                    if !b.is_empty() {
                        println!("{fs} Hz {preset:?} seed {seed}: nine {a:?}, twelve {b:?}");
                    }
                }
                streams += 1;
            }
        }
    }
    println!(
        "{streams} 12-lead streams: streams of rhythms that are not lethal with a lethal \
         alarm: {false_nine} with nine leads analysed, {false_twelve} with all twelve"
    );
    assert!(false_nine <= false_twelve);
}

/// One lead of many cannot raise extreme tachycardia with beats shaped unlike its own
/// that no other lead shows: simulated AF (seed 2, 12 leads at 500 Hz) whose fast
/// stretch (about 120 bpm) passed the limit (126 bpm over 17 beats) when V2 alone
/// found a beat at 56.2 s raises no lethal alarm.
#[test]
fn one_lead_s_odd_beat_does_not_raise_tachycardia_beside_others_that_disagree() {
    let findings = process(twelve_lead_frames(Preset::AtrialFibrillation, 2, 500, 90));
    let raised: Vec<_> = findings
        .iter()
        .filter(|f| f.source == lethal_source() && f.status == FindingStatus::Present)
        .map(|f| (f.condition, f.value))
        .collect();
    assert!(raised.is_empty(), "{raised:?}");
    let fastest = lethal(
        &findings,
        Condition::ExtremeTachycardia,
        FindingStatus::Absent,
    )
    .iter()
    .filter_map(|f| f.value)
    .fold(0.0f32, f32::max);
    println!("fastest rate assessed: {fastest:.0} bpm");
    assert!(fastest > 100.0, "the fast stretch is there: {fastest}");
}

/// A true extreme tachycardia stays raised when the other leads catch only some of its
/// beats: ventricular tachycardia (160-185 bpm) on I, II and V1 with every other beat
/// flattened out of I and II (held from 60 ms before its fiducial point to 100 ms
/// after), so that V1 alone finds half the beats. Those beats are shaped like V1's
/// dominant beat, or (after 20 s of sinus rhythm, before the new shape becomes the
/// dominant one) like V1's beat before, and count: dropping every beat one lead alone
/// found would halve the rate. After sinus rhythm the alarm comes within 6 s of the
/// tachycardia's onset (4.0-4.5 s), from a stream's start within 10 s (7.5-8.5 s).
#[test]
fn a_tachycardia_that_one_lead_alone_sees_in_full_is_still_raised() {
    for (seed, sinus_s) in [
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
        (1, 20.0),
        (2, 20.0),
        (3, 20.0),
    ] {
        let leads = vec![Lead::I, Lead::II, Lead::V1];
        let plan = if sinus_s > 0.0 {
            RhythmPlan::schedule(
                vec![
                    (Rhythm::NormalSinus, sinus_s),
                    (Rhythm::VentricularTachycardia, 60.0),
                ],
                false,
            )
        } else {
            RhythmPlan::Constant(Rhythm::VentricularTachycardia)
        };
        let mut src = source(DeviceConfig::new(seed, FS, leads, plan), "icu", 5);
        let (before, after) = ((0.06 * f64::from(FS)) as u64, (0.1 * f64::from(FS)) as u64);
        let onset = (sinus_s * f64::from(FS)) as u64;
        let mut at = 0u64;
        let mut frames = Vec::new();
        for _ in 0..(sinus_s as usize + 40) {
            let mut f = src.next_frame();
            let n = f.samples_per_lead() as u64;
            let beats: Vec<u64> = src
                .device()
                .truth()
                .beats
                .iter()
                .filter(|b| b.sample >= onset)
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, b)| b.sample)
                .filter(|&s| s + after >= at && s < at + n + before)
                .collect();
            for s in beats {
                let (a, b) = (s.saturating_sub(before).max(at), (s + after).min(at + n));
                for l in 0..2 {
                    let base = l * n as usize;
                    let hold = f.samples[base + (a - at) as usize];
                    for k in a..b {
                        f.samples[base + (k - at) as usize] = hold;
                    }
                }
            }
            at += n;
            frames.push(f);
        }
        let findings = process(frames);
        let raised = lethal(
            &findings,
            Condition::ExtremeTachycardia,
            FindingStatus::Present,
        );
        let first = raised
            .iter()
            .map(|f| f.window_end.0)
            .min()
            .unwrap_or_else(|| panic!("seed {seed} after {sinus_s} s: not raised"));
        let delay_s = (first - T0) as f64 / 1e6 - sinus_s;
        println!(
            "seed {seed}, VT from {sinus_s} s: raised {delay_s:.1} s after its onset, {:?}",
            raised.first().and_then(|f| f.value)
        );
        // A stream's first seconds: the detector learns its leads.
        let bound = if sinus_s > 0.0 { 6.0 } else { 10.0 };
        assert!(
            delay_s < bound,
            "seed {seed} after {sinus_s} s: {delay_s} s"
        );
    }
}

/// A stream whose leads change (same count, another lead) restarts its analysis: the
/// lethal detector reads and names the new leads, not the first frame's.
#[test]
fn a_stream_whose_leads_change_is_analysed_on_its_new_leads() {
    let src = source(
        Preset::Asystole.config(11, FS, vec![Lead::I, Lead::II, Lead::V1]),
        "icu",
        6,
    );
    let findings = run_source(src, 60, |s, f| {
        if s >= 20 {
            f.leads = vec![Lead::I, Lead::II, Lead::V2];
        }
    });
    let asystole = lethal(&findings, Condition::Asystole, FindingStatus::Present);
    let named = |f: &Finding, l: &str| {
        f.reason
            .as_deref()
            .unwrap_or_default()
            .split([',', ';', ':', ' '])
            .any(|w| w == l)
    };
    let (early, late): (Vec<&Finding>, Vec<&Finding>) = asystole
        .iter()
        .copied()
        .partition(|f| f.window_start.0 < T0 + 20_000_000);
    assert!(!early.is_empty() && !late.is_empty(), "{asystole:?}");
    assert!(early.iter().all(|f| named(f, "V1") && !named(f, "V2")));
    assert!(late.iter().all(|f| named(f, "V2") && !named(f, "V1")));
}

//! The scorer under injected faults, around the real bundled model in ONNX Runtime:
//! transient faults are retried and lose nothing, a fault that outlasts the retry
//! budget fails the epoch (so its offsets are never stored), and a window that fails
//! permanently becomes indeterminate with its reason without failing its batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ecg_dsp::IrregularityThresholds;
use ecg_inference::{Model, ModelError, Retry, Scored};
use ecg_pipeline::episodes::EpisodeSettings;
use ecg_pipeline::events::{Recorder, Sink};
use ecg_pipeline::scorer::{Runner, Scorer};
use ecg_pipeline::{ScorerSettings, Scoring};
use ecg_types::{
    DeviceTimeUs, Finding, FindingStatus, ModelInput, PatientId, SampleRate, StreamId,
};

fn model() -> Arc<Vec<Model>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/af-rr/af_rr.toml");
    Arc::new(vec![Model::load(&dir, 1).expect("bundled af-rr loads")])
}

/// 40 af-rr inputs with deterministic, varied features; stream `s{i}`.
fn items() -> Vec<Scoring> {
    (0..40)
        .map(|i| {
            let x = (i * 37 % 41) as f32 / 41.0;
            Scoring {
                model: 0,
                input: ModelInput {
                    stream: StreamId::new(format!("s{i}")).unwrap(),
                    patient: PatientId::new("p").unwrap(),
                    start: DeviceTimeUs(i64::from(i) * 1_000_000),
                    end: DeviceTimeUs(i64::from(i) * 1_000_000 + 30_000_000),
                    sample_rate: SampleRate(250),
                    leads: Vec::new(),
                    samples_mv: Vec::new(),
                    rr_s: Vec::new(),
                    beats_s: Vec::new(),
                    wide_pvc: Vec::new(),
                    features: vec![0.5 + x, 0.3 * x, 0.3 * x, 0.2 * x, x, 0.6, 1.5 * x, x - 1.0],
                    quality_ok: true,
                },
                closed_us: 0,
                strip: None,
            }
        })
        .collect()
}

fn settings(budget_s: f32) -> ScorerSettings {
    ScorerSettings {
        max_batch: 16,
        retry_initial_ms: 1,
        retry_max_ms: 20,
        retry_budget_s: budget_s,
    }
}

/// The pipeline's scorer of `models` (5 s retry budget, default AF episode tracking).
fn scorer(models: &Arc<Vec<Model>>, telemetry: Sink) -> Scorer {
    Scorer::new(
        models,
        settings(5.0),
        &EpisodeSettings::default(),
        &IrregularityThresholds::default(),
        telemetry,
    )
}

/// A scorer running `faulty` (5 s retry budget) with the same episode tracking as
/// [`scorer`].
fn faulty_scorer(models: &Arc<Vec<Model>>, faulty: Faulty, telemetry: Sink) -> Scorer {
    Scorer::with_runners(vec![Arc::new(faulty)], settings(5.0), telemetry).with_episodes(
        models,
        &EpisodeSettings::default(),
        &IrregularityThresholds::default(),
    )
}

/// The real model, with faults injected before it runs.
#[derive(Debug)]
struct Faulty {
    models: Arc<Vec<Model>>,
    calls: AtomicUsize,
    /// The first this many calls fail with a transient fault.
    transient_first: usize,
    /// Every call fails with a transient fault.
    always_transient: bool,
    /// A run containing this stream fails permanently.
    poison: Option<String>,
}

impl Faulty {
    fn new(models: &Arc<Vec<Model>>) -> Self {
        Self {
            models: models.clone(),
            calls: AtomicUsize::new(0),
            transient_first: 0,
            always_transient: false,
            poison: None,
        }
    }
}

impl Runner for Faulty {
    fn id(&self) -> &str {
        "af-rr"
    }

    fn run(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.always_transient || n < self.transient_first {
            return Err(ModelError::Ort {
                model: "af-rr".into(),
                message: "injected: device reset".into(),
                retry: Retry::Transient,
            });
        }
        if let Some(p) = &self.poison {
            if inputs.iter().any(|w| w.stream.as_str() == p) {
                return Err(ModelError::Ort {
                    model: "af-rr".into(),
                    message: "injected: invalid argument".into(),
                    retry: Retry::Permanent,
                });
            }
        }
        self.models[0].score(inputs)
    }

    fn findings(&self, input: &ModelInput, scored: &Scored) -> Vec<Finding> {
        self.models[0].findings(input, scored)
    }
}

fn keyed(fs: &[Finding]) -> Vec<(String, FindingStatus, Option<u32>)> {
    fs.iter()
        .map(|f| (f.key.clone(), f.status, f.score.map(f32::to_bits)))
        .collect()
}

#[test]
fn transient_faults_are_retried_and_change_nothing() {
    let models = model();
    let clean = scorer(&models, Arc::new(Recorder::default()))
        .score(items())
        .unwrap();
    assert_eq!(clean.findings.len(), 40);
    let events = Arc::new(Recorder::default());
    let faulty = Faulty {
        transient_first: 3,
        ..Faulty::new(&models)
    };
    let got = faulty_scorer(&models, faulty, events.clone())
        .score(items())
        .unwrap();
    assert_eq!(keyed(&got.findings), keyed(&clean.findings));
    assert_eq!(events.count("ScoreRetry"), 3);
}

#[test]
fn a_fault_outlasting_the_budget_fails_the_epoch() {
    let models = model();
    let faulty = Faulty {
        always_transient: true,
        ..Faulty::new(&models)
    };
    let started = std::time::Instant::now();
    let err = Scorer::with_runners(
        vec![Arc::new(faulty)],
        settings(0.2),
        Arc::new(Recorder::default()),
    )
    .score(items())
    .unwrap_err();
    assert!(err.attempts >= 3, "{err}");
    assert!(err.to_string().contains("device reset"), "{err}");
    assert!(
        started.elapsed().as_secs_f32() < 2.0,
        "bounded by the budget"
    );
}

#[test]
fn a_permanently_failing_window_is_indeterminate_and_its_batch_is_scored() {
    let models = model();
    let clean = scorer(&models, Arc::new(Recorder::default()))
        .score(items())
        .unwrap();
    let faulty = Faulty {
        poison: Some("s5".into()),
        ..Faulty::new(&models)
    };
    let got = faulty_scorer(&models, faulty, Arc::new(Recorder::default()))
        .score(items())
        .unwrap();
    assert_eq!(got.findings.len(), 40);
    for (g, c) in got.findings.iter().zip(&clean.findings) {
        if g.stream.as_str() == "s5" {
            assert_eq!(g.status, FindingStatus::Indeterminate);
            assert!(
                g.reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("invalid argument"),
                "{:?}",
                g.reason
            );
            assert_eq!(g.key, c.key);
        } else {
            assert_eq!(
                keyed(std::slice::from_ref(g)),
                keyed(std::slice::from_ref(c))
            );
        }
    }
}

#[test]
fn a_malformed_window_is_rejected_and_the_others_scored_by_onnx_runtime() {
    let models = model();
    let mut it = items();
    it[7].input.features.truncate(3);
    let events = Arc::new(Recorder::default());
    let got = scorer(&models, events.clone()).score(it).unwrap();
    let bad: Vec<&Finding> = got
        .findings
        .iter()
        .filter(|f| f.status == FindingStatus::Indeterminate)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].stream.as_str(), "s7");
    assert!(bad[0].reason.as_deref().unwrap_or("").contains("3 values"));
    assert!(got
        .findings
        .iter()
        .filter(|f| f.stream.as_str() != "s7")
        .all(|f| f.score.is_some()));
    assert_eq!(
        events.count("WindowsScored { model: \"af-rr\", outcome: Failed, count: 1 }"),
        1
    );
}

/// 30 s of pseudo-random RR intervals (0.45–1.05 s): irregularly irregular.
fn irregular_rr() -> Vec<f32> {
    let mut x = 12_345u32;
    let mut rr = Vec::new();
    while rr.iter().sum::<f32>() < 30.0 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        rr.push(0.45 + 0.6 * ((x >> 16) % 1000) as f32 / 1000.0);
    }
    rr
}

#[test]
fn windows_the_gate_failed_end_an_episode_through_the_models_call_and_stay_indeterminate() {
    let models = model();
    let m = &models[0];
    // Among the deterministic inputs, one the model calls AF and one it calls N (its
    // top class; not its noise class).
    let all = items();
    let refs: Vec<&ModelInput> = all.iter().map(|s| &s.input).collect();
    let scored = m.score(&refs).unwrap();
    let argmax = |s: &Scored| match s {
        Scored::Probabilities(p) => p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i),
        _ => None,
    };
    let (n, a) = (m.manifest().label_index("N"), m.manifest().label_index("A"));
    let pick = |want| {
        all.iter()
            .zip(&scored)
            .find(|(_, s)| argmax(s) == want)
            .map(|(i, _)| i.input.features.clone())
            .expect("an input of that class")
    };
    let (af, normal) = (pick(a), pick(n));
    // One stream, windows every 10 s: two AF windows the gate passed (with irregular
    // RR: an episode opens), then two the gate failed that the model calls N.
    let window = |k: i64, features: &Vec<f32>, ok: bool| Scoring {
        model: 0,
        input: ModelInput {
            stream: StreamId::new("s").unwrap(),
            patient: PatientId::new("p").unwrap(),
            start: DeviceTimeUs(k * 10_000_000),
            end: DeviceTimeUs(k * 10_000_000 + 30_000_000),
            sample_rate: SampleRate(250),
            leads: Vec::new(),
            samples_mv: Vec::new(),
            rr_s: irregular_rr(),
            beats_s: Vec::new(),
            wide_pvc: Vec::new(),
            features: features.clone(),
            quality_ok: ok,
        },
        closed_us: 0,
        strip: None,
    };
    let run = |episodes: &EpisodeSettings| {
        let s = Scorer::new(
            &models,
            settings(5.0),
            episodes,
            &IrregularityThresholds::default(),
            Arc::new(ecg_pipeline::events::Discard),
        );
        let mut out = Vec::new();
        for (k, f, ok) in [
            (0, &af, true),
            (1, &af, true),
            (2, &normal, false),
            (3, &normal, false),
        ] {
            out.extend(s.score(vec![window(k, f, ok)]).unwrap().findings);
        }
        out
    };
    let on = run(&EpisodeSettings::default());
    let status: Vec<FindingStatus> = on.iter().map(|f| f.status).collect();
    use FindingStatus::*;
    assert_eq!(status, [Absent, Present, Indeterminate, Indeterminate]);
    // The second gated window's call closed the episode: its finding carries the end
    // (the first gated window's segment start, 20 s), and stays indeterminate.
    assert_eq!(on[3].episode_end, Some(DeviceTimeUs(20_000_000)));
    assert_eq!(on[3].score, None);
    // Off, the gated windows say nothing: the episode is still open.
    let off = run(&EpisodeSettings {
        gated_windows: false,
        ..EpisodeSettings::default()
    });
    assert!(off.iter().all(|f| f.episode_end.is_none()));
}

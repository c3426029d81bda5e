//! The bundled AF model through ONNX Runtime: contract checks, batching, the quality
//! gate and the findings it yields. Needs the library `scripts/setup-onnxruntime.sh`
//! installs (the test command runs it first).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ecg_inference::{Manifest, Model, ModelError, Scored};
use ecg_types::{
    Condition, DeviceTimeUs, FindingStatus, ModelInput, PatientId, SampleRate, StreamId,
};

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/af-rr/af_rr.toml")
}

fn window(features: Vec<f32>, quality_ok: bool) -> ModelInput {
    ModelInput {
        stream: StreamId::new("s1").unwrap(),
        patient: PatientId::new("p1").unwrap(),
        start: DeviceTimeUs(1_800_000_000_000_000),
        end: DeviceTimeUs(1_800_000_030_000_000),
        sample_rate: SampleRate(250),
        leads: vec![],
        samples_mv: vec![],
        rr_s: vec![],
        beats_s: vec![],
        wide_pvc: Vec::new(),
        features,
        quality_ok,
    }
}

// af_rr_v1 features (see ecg_dsp::rhythm::af_features) of a regular 75 bpm rhythm and
// of an irregularly irregular one.
fn regular() -> Vec<f32> {
    vec![0.8, 0.02, 0.02, 0.015, 0.0, 0.5, 0.4, -1.5]
}
fn irregular() -> Vec<f32> {
    vec![0.65, 0.35, 0.25, 0.25, 0.6, 0.7, 1.0, 1.2]
}

#[test]
fn scores_a_batch_and_gates_bad_windows() {
    let model = Model::load(&manifest(), 1).unwrap();
    let (a, b, c) = (
        window(regular(), true),
        window(irregular(), true),
        window(irregular(), false),
    );
    let scored = model.score(&[&a, &b, &c]).unwrap();
    let p = |s: &Scored| match s {
        Scored::Probabilities(p) => p.clone(),
        other => panic!("scored window came back {other:?}"),
    };
    let (pa, pb) = (p(&scored[0]), p(&scored[1]));
    for probs in [&pa, &pb] {
        assert_eq!(probs.len(), 4);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    assert!(pb[1] > 0.5, "irregular rhythm should score as AF: {pb:?}");
    assert!(pa[1] < 0.2, "regular rhythm should not: {pa:?}");
    assert_eq!(scored[2], Scored::Indeterminate);
    // Batched and one-by-one scoring agree.
    let single = model.score(&[&b]).unwrap();
    assert_eq!(p(&single[0]).len(), 4);
    for (x, y) in p(&single[0]).iter().zip(pb.iter()) {
        assert!((x - y).abs() < 1e-5);
    }

    let f = model.findings(&b, &scored[1]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].condition, Condition::AtrialFibrillation);
    assert_eq!(f[0].status, FindingStatus::Present);
    assert!(f[0].decision_support);
    assert!(f[0].key.contains("model:af-rr@1.1.0"), "{}", f[0].key);
    let g = model.findings(&c, &scored[2]);
    assert_eq!(g[0].status, FindingStatus::Indeterminate);
    assert_eq!(g[0].score, None);
}

#[test]
fn wrong_input_size_is_a_clear_error() {
    let model = Model::load(&manifest(), 1).unwrap();
    let w = window(vec![0.0; 3], true);
    match model.score(&[&w]).unwrap().as_slice() {
        [Scored::Rejected(why)] => assert_eq!(why, "input has 3 values, model af-rr takes 8"),
        other => panic!("expected a rejected window, got {other:?}"),
    }
}

#[test]
fn contract_mismatches_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(manifest()).unwrap();
    let bad = src
        .replace("name = \"features\"", "name = \"x\"")
        .replace("len = 8", "len = 9")
        .replace(
            "onnx = \"af_rr.onnx\"",
            &format!("onnx = {:?}", manifest().with_file_name("af_rr.onnx")),
        );
    let bad = bad.replace(
        "labels = [\"N\", \"A\", \"O\", \"~\"]",
        "labels = [\"N\", \"A\", \"O\"]",
    );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let err = Model::load(&path, 1).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Contract { .. }), "{msg}");
    assert!(msg.contains("no input named \"x\""), "{msg}");
    assert!(msg.contains("output \"probabilities\" has shape"), "{msg}");
}

#[test]
fn manifest_rules_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(manifest()).unwrap();
    for (from, to, expect) in [
        ("label = \"A\"", "label = \"AF\"", "not among output.labels"),
        ("threshold = 0.4", "threshold = 1.5", "outside 0..=1"),
        ("window_s = 30.0", "window_s = 0.0", "window_s"),
        ("len = 8", "len = 0", "input.len"),
        (
            "id = \"af-rr\"",
            "id = \"af-rr\"\nsurprise = 1",
            "unknown field",
        ),
    ] {
        let path = dir.path().join("m.toml");
        std::fs::write(&path, src.replace(from, to)).unwrap();
        let msg = ecg_inference::Manifest::load(&path)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(expect), "{from} -> {to}: {msg}");
    }
}

fn waveform_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ecg12-attia/ecg12_attia.toml")
}

#[test]
fn waveform_model_scores_12_lead_windows_in_shadow() {
    let model = Model::load(&waveform_manifest(), 1).unwrap();
    let m = model.manifest();
    assert_eq!(m.input.dims(m.window_s), vec![12, 5000]);
    assert_eq!(m.input.len, 60_000);
    assert_eq!(m.mode, ecg_inference::ModelMode::Shadow);
    let mk = |v: f32, ok: bool| {
        let mut w = window(Vec::new(), ok);
        w.leads = m.input.leads.clone();
        w.sample_rate = ecg_types::SampleRate(500);
        w.samples_mv = (0..60_000)
            .map(|i| v * ((i % 500) as f32 / 500.0 - 0.5))
            .collect();
        w
    };
    let (a, b, c) = (mk(1.0, true), mk(0.2, false), mk(2.0, true));
    let scored = model.score(&[&a, &b, &c]).unwrap();
    assert!(matches!(scored[1], Scored::Indeterminate));
    for s in [&scored[0], &scored[2]] {
        match s {
            Scored::Probabilities(p) => {
                assert_eq!(p.len(), 1);
                assert!((0.0..=1.0).contains(&p[0]), "{p:?}");
            }
            other => panic!("good windows are scored: {other:?}"),
        }
    }
    // Shadow: scored, never a finding.
    assert!(model.findings(&a, &scored[0]).is_empty());
    let wrong = {
        let mut w = mk(1.0, true);
        w.samples_mv.truncate(5000);
        w
    };
    assert!(matches!(
        model.score(&[&wrong]).unwrap().as_slice(),
        [Scored::Rejected(why)] if why.contains("5000 values") && why.contains("takes 60000")
    ));
}

/// What `Model::load` says of the bundled manifest `path` with `from` replaced by
/// `to`, read from another folder (its ONNX file named by absolute path).
fn load_error(path: &Path, from: &str, to: &str) -> String {
    let src = std::fs::read_to_string(path).unwrap();
    assert!(src.contains(from), "{from}");
    let onnx = src
        .lines()
        .find_map(|l| l.strip_prefix("onnx = "))
        .unwrap()
        .trim_matches('"');
    let src = src.replace(
        &format!("onnx = {onnx:?}"),
        &format!("onnx = {:?}", path.with_file_name(onnx)),
    );
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("m.toml");
    std::fs::write(&edited, src.replace(from, to)).unwrap();
    match Model::load(&edited, 1) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{from} -> {to} loaded"),
    }
}

#[test]
fn waveform_manifest_rules_are_checked() {
    for (from, to, expect) in [
        (
            "sample_rate_hz = 500",
            "sample_rate_hz = 5",
            "input.sample_rate_hz",
        ),
        ("leads = [", "len = 7\nleads = [", "disagrees with 12 leads"),
        ("mode = \"shadow\"", "mode = \"quiet\"", "unknown variant"),
        ("hop_s = 300.0", "hop_s = -1.0", "hop_s"),
        (
            "sample_rate_hz = 500",
            "sample_rate_hz = 250",
            "[batch, 12, 2500]",
        ),
    ] {
        let msg = load_error(&waveform_manifest(), from, to);
        assert!(msg.contains(expect), "{from} -> {to}: {msg}");
    }
}

#[test]
fn probabilities_are_kept_inline_up_to_eight_labels() {
    let few = ecg_inference::Probs::from(&[0.1f32, 0.2, 0.7][..]);
    assert_eq!(&*few, &[0.1, 0.2, 0.7]);
    assert_eq!(format!("{few:?}"), "[0.1, 0.2, 0.7]");
    let many: Vec<f32> = (0..12).map(|i| i as f32 / 66.0).collect();
    let p = ecg_inference::Probs::from(many.as_slice());
    assert_eq!(p.len(), 12);
    assert_eq!(p.iter().copied().collect::<Vec<_>>(), many);
    assert_eq!(p.clone(), p);
}

fn af_cnn_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/af-cnn/af_cnn.toml")
}

#[test]
fn waveform_model_with_rr_input_reads_both_and_rejects_a_short_rr_input() {
    let model = Model::load(&af_cnn_manifest(), 1).unwrap();
    let m = model.manifest();
    assert_eq!(m.input.rr_features.as_deref(), Some("rr"));
    let wave: Vec<f32> = (0..3750)
        .map(|i| {
            let phase = (i % 100) as f32 / 100.0; // 75 bpm at 125 Hz
            (-((phase - 0.3) / 0.02).powi(2)).exp() - 0.1
        })
        .collect();
    let mk = |features: Vec<f32>| {
        let mut w = window(features, true);
        w.leads = m.input.leads.clone();
        w.sample_rate = SampleRate(125);
        w.samples_mv = wave.clone();
        w
    };
    // The RR features, then (a model with `atrial_features`) atrial values: the
    // fallback of a window without P-wave evidence.
    let rr_input = |mut f: Vec<f32>| {
        f.extend([-6.907_755, 0.0, 0.0, 0.0, 0.289, -6.907_755]);
        f.truncate(m.input.rr_len());
        f
    };
    let (a, b, short) = (
        mk(rr_input(regular())),
        mk(rr_input(irregular())),
        mk(vec![0.5; 5]),
    );
    let scored = model.score(&[&a, &short, &b]).unwrap();
    let p = |s: &Scored| match s {
        Scored::Probabilities(p) => p.clone(),
        other => panic!("scored window came back {other:?}"),
    };
    match &scored[1] {
        Scored::Rejected(why) => assert_eq!(
            why,
            &format!(
                "RR input has 5 values, model af-cnn takes {}",
                m.input.rr_len()
            )
        ),
        other => panic!("expected a rejected window, got {other:?}"),
    }
    let (pa, pb) = (p(&scored[0]), p(&scored[2]));
    assert!((pa.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    // Same waveform, other RR features: the model reads the second input.
    assert!(
        pa.iter().zip(pb.iter()).any(|(x, y)| (x - y).abs() > 1e-4),
        "{pa:?} vs {pb:?}"
    );
    // Each window alone scores as in the batch.
    for (w, want) in [(&a, &pa), (&b, &pb)] {
        let single = p(&model.score(&[w]).unwrap()[0]);
        for (x, y) in single.iter().zip(want.iter()) {
            assert!((x - y).abs() < 1e-5, "{single:?} vs {want:?}");
        }
    }
}

#[test]
fn rr_input_contract_is_checked() {
    // Without its RR-feature input (and the atrial values riding on it).
    let rr_lines = if Manifest::load(&af_cnn_manifest())
        .unwrap()
        .input
        .atrial_features
    {
        "rr_features = \"rr\"\natrial_features = true\n"
    } else {
        "rr_features = \"rr\"\n"
    };
    for (from, to, expect) in [
        (rr_lines, "", "input \"rr\" is not in the contract"),
        (
            "rr_features = \"rr\"",
            "rr_features = \"beats\"",
            "no RR-feature input named \"beats\"",
        ),
        (
            "rr_features = \"rr\"",
            "rr_features = \"ecg\"",
            "names the waveform input",
        ),
    ] {
        let msg = load_error(&af_cnn_manifest(), from, to);
        assert!(msg.contains(expect), "{from} -> {to}: {msg}");
    }
    // A feature model's input is its features: no second one.
    let msg = load_error(&manifest(), "len = 8", "len = 8\nrr_features = \"rr\"");
    assert!(
        msg.contains("input.rr_features is for waveform inputs"),
        "{msg}"
    );
    let msg = load_error(&manifest(), "len = 8", "len = 8\natrial_features = true");
    assert!(
        msg.contains("input.atrial_features is for waveform inputs"),
        "{msg}"
    );
}

/// `atrial_features` widens the RR-feature input by the atrial-activity values: each
/// bundled af-cnn graph loads with the flag that fits its `rr` input (1.2.0's takes 8
/// values, 1.3.0's 14) and is refused with the other, whichever one the manifest
/// ships; and the flag needs an RR-feature input to ride on.
#[test]
fn atrial_features_widen_the_rr_input() {
    let shipped = std::fs::read_to_string(af_cnn_manifest()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let models = af_cnn_manifest().parent().unwrap().to_path_buf();
    // The shipped manifest with another graph and the flag set or not.
    let with = |graph: &str, atrial: bool| {
        let mut text = String::new();
        for line in shipped.lines() {
            if line.starts_with("onnx = ") {
                text.push_str(&format!("onnx = {:?}\n", models.join(graph)));
            } else if line.starts_with("atrial_features") {
                continue;
            } else if line.starts_with("rr_features") {
                text.push_str(&format!("{line}\natrial_features = {atrial}\n"));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        let path = dir.path().join(format!("{graph}-{atrial}.toml"));
        std::fs::write(&path, text).unwrap();
        Model::load(&path, 1)
    };
    let narrow = with("af_cnn_all_rr.onnx", false).expect("1.2.0's graph without the flag");
    assert_eq!(narrow.manifest().input.rr_len(), ecg_inference::RR_FEATURES);
    let wide = with("af_cnn_atrial_rr.onnx", true).expect("1.3.0's graph with the flag");
    assert_eq!(
        wide.manifest().input.rr_len(),
        ecg_inference::RR_FEATURES + ecg_inference::ATRIAL_FEATURES
    );
    for (graph, atrial, has, says) in [
        ("af_cnn_all_rr.onnx", true, 8, 14),
        ("af_cnn_atrial_rr.onnx", false, 14, 8),
    ] {
        let Err(e) = with(graph, atrial) else {
            panic!("{graph} loaded with atrial_features = {atrial}");
        };
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "input \"rr\" has shape [-1, {has}], the contract says [batch, {says}]"
            )),
            "{msg}"
        );
    }
    // Without an RR-feature input there is nothing to widen.
    let text = shipped
        .replace("rr_features = \"rr\"\n", "")
        .replace("atrial_features = true\n", "")
        .replace("[input]\n", "[input]\natrial_features = true\n");
    let path = dir.path().join("af_cnn.toml");
    std::fs::write(&path, text).unwrap();
    let err = Manifest::load(&path).unwrap_err().to_string();
    assert!(err.contains("set input.rr_features too"), "{err}");
}

/// A manifest or models folder that cannot be read is named with its I/O reason
/// once, however the error is reported (its message, or its message and its chain
/// of sources, as `anyhow`'s `{:#}` does).
#[test]
fn a_missing_manifest_is_named_with_its_io_reason_once() {
    let path = std::env::temp_dir().join(format!("no-such-manifest-{}.toml", std::process::id()));
    let reason = std::fs::read(&path).unwrap_err().to_string();
    let Err(e) = Model::load(&path, 1) else {
        panic!("a missing manifest loads");
    };
    let mut report = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        report.push_str(&format!(": {c}"));
        cur = c.source();
    }
    assert!(report.contains(&path.display().to_string()), "{report}");
    assert_eq!(report.matches(&reason).count(), 1, "{report}");
}

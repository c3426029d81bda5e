//! End-to-end run of the demo topology: simulated devices → in-process Kafka →
//! pipeline (DSP + ONNX model) → findings → alert service, with assertions on which
//! simulated patients raised which alerts. Needs the ONNX Runtime library that
//! `scripts/setup-onnxruntime.sh` installs (the test command runs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use cardiostream::demo::{self, DemoConfig};
use ecg_sim::Preset;
use ecg_types::{AlertKind, AlertState, Condition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn counter(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name_and_labels} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_topology_raises_the_right_alerts_for_the_right_patients() {
    let addr = free_addr();
    let cfg = DemoConfig {
        patients: 20,
        duration: Some(Duration::from_secs(14)),
        http_addr: addr,
        alerts_json: false,
        api_token: Some("demo-test-token".into()),
        alerts_store: None,
        speed: 5.0,
        seed: 7,
        sample_rate: 250,
        models_dir: demo::default_models_dir(),
    };
    // Scrape the console and /metrics while the demo runs, as an SRE would.
    let probe = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(11)).await;
        (
            http_get(addr, "/metrics", None).await,
            http_get(addr, "/", None).await,
            http_get(addr, "/api/v1/alerts", Some("demo-test-token")).await,
            http_get(addr, "/api/v1/alerts", None).await,
        )
    });
    let report = demo::run(cfg, std::future::pending()).await.unwrap();
    let (live_metrics, page, api, anonymous) = probe.await.unwrap();

    assert!(live_metrics.contains("200 OK"), "{live_metrics}");
    assert!(counter(&live_metrics, "cardiostream_ingest_frames_consumed_total") > 0.0);
    assert!(
        counter(
            &live_metrics,
            "cardiostream_inference_windows_total{model=\"af-rr\",outcome=\"scored\"}"
        ) > 0.0,
        "no window scored by the ONNX model during the run"
    );
    assert!(
        page.contains("decision support"),
        "console must label AI findings"
    );
    assert!(api.starts_with("HTTP/1.0 200"), "{api}");
    assert!(
        api.contains("\"alerts\"") && api.contains("decision support"),
        "{api}"
    );
    assert!(
        anonymous.starts_with("HTTP/1.0 401"),
        "the API needs a token: {anonymous}"
    );

    // The one malformed frame went to the dead-letter topic, and nothing else did.
    let end = report.metrics.render();
    assert_eq!(
        counter(
            &end,
            "cardiostream_ingest_frames_dead_lettered_total{kind=\"bad_sample_rate\"}"
        ),
        1.0
    );
    for kind in ecg_ingest::codec::DecodeError::KINDS
        .iter()
        .filter(|k| **k != "bad_sample_rate")
    {
        let line = format!("cardiostream_ingest_frames_dead_lettered_total{{kind=\"{kind}\"}}");
        assert_eq!(counter(&end, &line), 0.0, "{kind}");
    }

    // Which conditions each patient raised.
    let mut raised: HashMap<String, BTreeSet<Condition>> = HashMap::new();
    for a in report
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
    {
        raised
            .entry(a.patient.to_string())
            .or_default()
            .insert(a.condition);
        if a.decision_support {
            assert_eq!(a.kind, AlertKind::AiScreening);
        }
    }
    let physiological = |c: &Condition| !c.is_technical();
    for p in &report.patients {
        let got = raised.get(p.patient.as_str()).cloned().unwrap_or_default();
        let has = |c| got.contains(&c);
        match p.preset {
            Preset::NormalSinus | Preset::NoisyNormalSinus => assert!(
                !got.iter().any(physiological),
                "{} in sinus rhythm raised {got:?}",
                p.patient
            ),
            Preset::LeadOffNormalSinus => {
                assert!(has(Condition::LeadOff), "{}: {got:?}", p.patient);
                assert!(!got.iter().any(physiological), "{}: {got:?}", p.patient);
            }
            Preset::AtrialFibrillation => {
                assert!(has(Condition::AtrialFibrillation), "{}: {got:?}", p.patient)
            }
            Preset::Bradycardia => assert!(has(Condition::Bradycardia), "{}: {got:?}", p.patient),
            Preset::Tachycardia | Preset::VentricularTachycardia => {
                assert!(has(Condition::Tachycardia), "{}: {got:?}", p.patient)
            }
            Preset::Asystole => {
                assert!(has(Condition::Asystole), "{}: {got:?}", p.patient);
                assert!(
                    !has(Condition::Bradycardia),
                    "asystole must inhibit bradycardia"
                );
            }
            // Isolated PVCs with compensatory pauses are not atrial fibrillation.
            Preset::Pvcs => assert!(
                !has(Condition::AtrialFibrillation),
                "{}: {got:?}",
                p.patient
            ),
            // Paced beats with their pulses flagged are not ventricular tachycardia.
            Preset::VentricularPaced => assert!(
                !has(Condition::VentricularTachycardia) && !has(Condition::VentricularFibrillation),
                "{}: {got:?}",
                p.patient
            ),
        }
    }
    // The ONNX model raised AI screening notifications for AF patients only.
    for a in report.alerts.iter().filter(|a| a.decision_support) {
        let p = report
            .patients
            .iter()
            .find(|p| p.patient == a.patient)
            .unwrap();
        assert_eq!(
            p.preset,
            Preset::AtrialFibrillation,
            "AI alert for {:?}",
            p.preset
        );
    }
    assert!(
        report.alerts.iter().any(|a| a.decision_support),
        "no AI alert at all"
    );
}

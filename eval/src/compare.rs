//! `cardiostream model compare`: how far a shadow model agrees with the active one on
//! the findings both recorded for the same windows.
//!
//! Findings are paired by (stream, condition, window start): the idempotency key
//! without its source. Replays (the same key twice) count once. Reported: pairs, the
//! windows only one model scored, the status confusion matrix, agreement, Cohen's
//! kappa over the pairs both scored (present/absent), and the mean absolute score
//! difference.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ecg_ingest::kafka;
use ecg_types::{Condition, DeviceTimeUs, Finding, FindingStatus, StreamId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::Serialize;

/// `cardiostream model compare` arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The reference model, `ID@VERSION` (as in finding sources, `model:ID@VERSION`).
    #[arg(long)]
    pub active: String,
    /// The model under evaluation, `ID@VERSION`.
    #[arg(long)]
    pub shadow: String,
    /// Read findings from this JSON-lines file instead of Kafka.
    #[arg(long, conflicts_with = "bootstrap_servers")]
    pub findings_file: Option<PathBuf>,
    /// Kafka cluster to read the findings topic from (from the beginning).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Findings topic.
    #[arg(long, default_value = "ecg.findings.v1")]
    pub topic: String,
    /// Stop reading Kafka after this many seconds without a new finding.
    #[arg(long, default_value_t = 5.0)]
    pub idle_s: f64,
}

/// The agreement of two models' findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The reference model's source label.
    pub active: String,
    /// The compared model's source label.
    pub shadow: String,
    /// Windows both models have a finding for.
    pub pairs: usize,
    /// Windows only the active model has.
    pub only_active: usize,
    /// Windows only the shadow model has.
    pub only_shadow: usize,
    /// Pairs by (active status, shadow status).
    pub matrix: BTreeMap<String, usize>,
    /// Share of pairs with the same status.
    pub agreement: f64,
    /// Cohen's kappa over pairs both scored (present/absent); `None` without any.
    pub kappa: Option<f64>,
    /// Mean |score difference| over pairs both scored.
    pub mean_abs_score_diff: Option<f64>,
}

type WindowKey = (StreamId, Condition, DeviceTimeUs);

/// Compares the findings of two model sources (`ID@VERSION`, with or without the
/// `model:` prefix).
pub fn compare(findings: &[Finding], active: &str, shadow: &str) -> Comparison {
    let label = |s: &str| {
        if s.starts_with("model:") {
            s.to_owned()
        } else {
            format!("model:{s}")
        }
    };
    let (la, lb) = (label(active), label(shadow));
    let mut seen = HashSet::new();
    let mut a: HashMap<WindowKey, &Finding> = HashMap::new();
    let mut b: HashMap<WindowKey, &Finding> = HashMap::new();
    for f in findings {
        if !seen.insert(f.key.as_str()) {
            continue;
        }
        let k = (f.stream.clone(), f.condition, f.window_start);
        let src = f.source.label();
        if src == la {
            a.entry(k).or_insert(f);
        } else if src == lb {
            b.entry(k).or_insert(f);
        }
    }
    let mut matrix = BTreeMap::new();
    let (mut pairs, mut same) = (0usize, 0usize);
    // 2×2 counts over pairs both scored: [active present?][shadow present?].
    let mut scored = [[0usize; 2]; 2];
    let mut diff_sum = 0.0;
    let mut diff_n = 0usize;
    for (k, fa) in &a {
        let Some(fb) = b.get(k) else { continue };
        pairs += 1;
        same += usize::from(fa.status == fb.status);
        *matrix
            .entry(format!("{}/{}", fa.status.as_str(), fb.status.as_str()))
            .or_insert(0) += 1;
        let p = |s| match s {
            FindingStatus::Present => Some(1usize),
            FindingStatus::Absent => Some(0),
            FindingStatus::Indeterminate => None,
        };
        if let (Some(x), Some(y)) = (p(fa.status), p(fb.status)) {
            scored[x][y] += 1;
        }
        if let (Some(x), Some(y)) = (fa.score, fb.score) {
            diff_sum += f64::from((x - y).abs());
            diff_n += 1;
        }
    }
    let n = scored.iter().flatten().sum::<usize>() as f64;
    let kappa = (n > 0.0).then(|| {
        let po = (scored[0][0] + scored[1][1]) as f64 / n;
        let a1 = (scored[1][0] + scored[1][1]) as f64 / n;
        let b1 = (scored[0][1] + scored[1][1]) as f64 / n;
        let pe = a1 * b1 + (1.0 - a1) * (1.0 - b1);
        if (1.0 - pe).abs() < 1e-12 {
            1.0
        } else {
            (po - pe) / (1.0 - pe)
        }
    });
    Comparison {
        active: la,
        shadow: lb,
        pairs,
        only_active: a.len() - pairs,
        only_shadow: b.len() - pairs,
        matrix,
        agreement: if pairs == 0 {
            0.0
        } else {
            same as f64 / pairs as f64
        },
        kappa,
        mean_abs_score_diff: (diff_n > 0).then(|| diff_sum / diff_n as f64),
    }
}

/// Every finding on a topic, read from the beginning until `idle` passes without one
/// (the first may take up to 30 s: joining the group).
///
/// # Errors
/// If the consumer cannot be created or a message is not a finding.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    idle: Duration,
) -> anyhow::Result<Vec<Finding>> {
    let group = format!(
        "cardiostream-compare-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut cfg = kafka::consumer_config(&kafka::connection(bootstrap), &group);
    cfg.set("enable.auto.commit", "false");
    let consumer: StreamConsumer = cfg.create().context("creating the findings consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    let mut out = Vec::new();
    let first_wait = idle.max(Duration::from_secs(30));
    while let Ok(m) = tokio::time::timeout(
        if out.is_empty() { first_wait } else { idle },
        consumer.recv(),
    )
    .await
    {
        let m = m.context("reading findings")?;
        let f: Finding = serde_json::from_slice(m.payload().unwrap_or_default())
            .with_context(|| format!("offset {} of {topic} is not a finding", m.offset()))?;
        out.push(f);
    }
    Ok(out)
}

/// Runs `cardiostream model compare`: prints a report on stderr and the comparison
/// as JSON on stdout.
///
/// # Errors
/// If the findings cannot be read.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let findings = if let Some(path) = &args.findings_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{} line {} is not a finding", path.display(), i + 1))
            })
            .collect::<anyhow::Result<Vec<Finding>>>()?
    } else {
        let Some(bootstrap) = &args.bootstrap_servers else {
            anyhow::bail!("give --findings-file or --bootstrap-servers");
        };
        tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(read_topic(
                bootstrap,
                &args.topic,
                Duration::from_secs_f64(args.idle_s.max(0.1)),
            ))?
    };
    let c = compare(&findings, &args.active, &args.shadow);
    eprintln!(
        "{} findings read; {} vs {}: {} windows paired ({} only active, {} only shadow), \
         agreement {:.1} %, kappa {}, mean |score diff| {}",
        findings.len(),
        c.active,
        c.shadow,
        c.pairs,
        c.only_active,
        c.only_shadow,
        100.0 * c.agreement,
        c.kappa.map_or("n/a".into(), |k| format!("{k:.3}")),
        c.mean_abs_score_diff
            .map_or("n/a".into(), |d| format!("{d:.4}")),
    );
    for (cell, n) in &c.matrix {
        eprintln!("  active/shadow {cell}: {n}");
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &c)?;
    std::io::Write::write_all(&mut stdout, b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{FindingSource, PatientId};

    fn f(
        model: &str,
        version: &str,
        stream: &str,
        t: i64,
        status: FindingStatus,
        score: f32,
    ) -> Finding {
        let source = FindingSource::Model {
            id: model.into(),
            version: version.into(),
        };
        let stream = StreamId::new(stream).unwrap();
        Finding {
            key: Finding::make_key(
                &stream,
                &source,
                Condition::AtrialFibrillation,
                DeviceTimeUs(t),
            ),
            stream,
            patient: PatientId::new("p").unwrap(),
            source,
            condition: Condition::AtrialFibrillation,
            status,
            window_start: DeviceTimeUs(t),
            window_end: DeviceTimeUs(t + 30),
            score: Some(score),
            value: None,
            decision_support: true,
            shadow: version == "2",
            strip: None,
            reason: None,
            episode_start: None,
            episode_end: None,
        }
    }

    #[test]
    fn pairs_windows_and_counts_agreement() {
        use FindingStatus::{Absent as A, Present as P};
        let mut fs = vec![
            f("m", "1", "s", 0, P, 0.9),
            f("m", "2", "s", 0, P, 0.8),
            f("m", "1", "s", 10, A, 0.1),
            f("m", "2", "s", 10, P, 0.6),
            f("m", "1", "s", 20, A, 0.2),
            f("m", "2", "s", 20, A, 0.2),
            f("m", "1", "t", 0, P, 0.7),     // only active
            f("m", "2", "u", 0, A, 0.3),     // only shadow
            f("other", "1", "s", 0, P, 0.9), // neither
        ];
        fs.push(fs[0].clone()); // a replay counts once
        let c = compare(&fs, "m@1", "model:m@2");
        assert_eq!((c.pairs, c.only_active, c.only_shadow), (3, 1, 1));
        assert!((c.agreement - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(c.matrix.get("absent/present"), Some(&1));
        assert_eq!(c.matrix.get("present/present"), Some(&1));
        // po = 2/3, pa = 1/3, pb = 2/3, pe = 1/3·2/3 + 2/3·1/3 = 4/9 → κ = 0.4.
        assert!((c.kappa.unwrap() - 0.4).abs() < 1e-9, "{:?}", c.kappa);
        assert!((c.mean_abs_score_diff.unwrap() - (0.1 + 0.5 + 0.0) / 3.0).abs() < 1e-6);
        let same = compare(&fs, "m@1", "m@1");
        assert_eq!(same.pairs, 0, "a model is not paired with itself");
    }
}

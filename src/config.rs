//! Layered configuration of the deployables: the embedded `config/default.toml`, then
//! a file (`--config`), then environment variables `CARDIOSTREAM_SECTION__KEY`.
//! Everything is validated at start, with errors that name the setting.

use std::path::{Path, PathBuf};

use ecg_dsp::stream::DspConfig;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use rdkafka::ClientConfig;
use serde::Deserialize;

pub use ecg_alerts::server::HttpSettings;
pub use ecg_ingest::kafka::{KafkaSettings, SecurityProtocol};
use ecg_pipeline::episodes::EpisodeSettings;
use ecg_pipeline::{ScorerSettings, StreamSettings};

/// The embedded defaults.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// Topic names.
    pub topics: Topics,
    /// The pipeline deployable.
    pub pipeline: PipelineSettings,
    /// The alerts deployable (`[alerts]`: group, store, teams, routes, receivers, tokens).
    pub alerts: ecg_alerts::config::ServiceConfig,
    /// HTTP endpoints.
    pub http: HttpSettings,
}

/// Topic names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Device frames.
    pub frames: String,
    /// Findings.
    pub findings: String,
    /// Dead letters.
    pub dlq: String,
    /// Alerts.
    pub alerts: String,
}

/// The pipeline deployable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Consumer group.
    pub group_id: String,
    /// Most frames per processing batch.
    pub batch_max: usize,
    /// Longest wait to fill a batch, ms.
    pub batch_wait_ms: u64,
    /// Models directory (`DIR/*/*.toml`).
    pub models_dir: PathBuf,
    /// Seconds between model windows of one stream.
    pub model_hop_s: f32,
    /// ONNX Runtime intra-op threads per model.
    pub model_threads: usize,
    /// Most windows per ONNX Runtime run.
    pub model_max_batch: usize,
    /// Batches that may wait between stages (and be in flight to the broker)
    /// before consumption pauses.
    pub channel_batches: usize,
    /// Threads the analyzer stage's streams are split over.
    pub analyzer_threads: usize,
    /// DSP settings.
    #[serde(default)]
    pub dsp: DspConfig,
    /// Per-stream sequencing, warm-up, eviction and limits.
    #[serde(default)]
    pub streams: StreamSettings,
    /// Retries of failing model runs (`max_batch` is `model_max_batch`).
    #[serde(default)]
    pub scorer: ScorerSettings,
    /// Evidence and hysteresis of AF episodes (`pipeline/src/episodes.rs`).
    #[serde(default)]
    pub af_episodes: EpisodeSettings,
}

impl Config {
    /// Defaults, then `file`, then the environment.
    ///
    /// # Errors
    /// A message naming the setting (and where it came from) that is missing, unknown
    /// or of the wrong type, or that breaks a rule of [`Config::validate`].
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.is_file() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        Self::from_figment(fig.merge(env_provider()))
    }

    fn from_figment(fig: Figment) -> anyhow::Result<Config> {
        let mut cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe(&e)))?;
        cfg.kafka.read_password_file().map_err(anyhow::Error::msg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules that types alone do not.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka
            .validate(cfg!(feature = "tls"))
            .map_err(anyhow::Error::msg)?;
        for (name, topic) in [
            ("topics.frames", &self.topics.frames),
            ("topics.findings", &self.topics.findings),
            ("topics.dlq", &self.topics.dlq),
            ("topics.alerts", &self.topics.alerts),
        ] {
            let ok = !topic.is_empty()
                && topic.len() <= 249
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                anyhow::bail!("{name}: {topic:?} is not a valid Kafka topic name");
            }
        }
        let p = &self.pipeline;
        if p.group_id.is_empty() {
            anyhow::bail!("pipeline.group_id is empty");
        }
        if let Err(e) = self.alerts.validate() {
            anyhow::bail!("{e}");
        }
        if !(1..=100_000).contains(&p.batch_max) {
            anyhow::bail!("pipeline.batch_max {} is outside 1..=100000", p.batch_max);
        }
        if p.batch_wait_ms > 10_000 {
            anyhow::bail!("pipeline.batch_wait_ms {} is above 10000", p.batch_wait_ms);
        }
        if !(p.model_hop_s > 0.0 && p.model_hop_s <= 3600.0) {
            anyhow::bail!(
                "pipeline.model_hop_s {} is outside (0, 3600]",
                p.model_hop_s
            );
        }
        if !(1..=4096).contains(&p.model_max_batch) {
            anyhow::bail!(
                "pipeline.model_max_batch {} is outside 1..=4096",
                p.model_max_batch
            );
        }
        if !(1..=1024).contains(&p.channel_batches) {
            anyhow::bail!(
                "pipeline.channel_batches {} is outside 1..=1024",
                p.channel_batches
            );
        }
        let d = &p.dsp;
        if !(d.hop_s > 0.0 && d.window_s >= d.hop_s && d.window_s <= 600.0) {
            anyhow::bail!(
                "pipeline.dsp: window_s {} and hop_s {} need 0 < hop_s <= window_s <= 600",
                d.window_s,
                d.hop_s
            );
        }
        let (hop_us, model_hop_us) = (
            (f64::from(d.hop_s) * 1e6).round() as i64,
            (f64::from(p.model_hop_s) * 1e6).round() as i64,
        );
        if model_hop_us % hop_us != 0 {
            anyhow::bail!(
                "pipeline.model_hop_s {} is not a multiple of pipeline.dsp.hop_s {} (model windows end where rhythm windows do)",
                p.model_hop_s,
                d.hop_s
            );
        }
        p.streams.validate().map_err(anyhow::Error::msg)?;
        p.af_episodes.validate().map_err(anyhow::Error::msg)?;
        let sc = &p.scorer;
        if sc.retry_initial_ms == 0 || sc.retry_max_ms < sc.retry_initial_ms {
            anyhow::bail!(
                "pipeline.scorer: need 0 < retry_initial_ms ({}) <= retry_max_ms ({})",
                sc.retry_initial_ms,
                sc.retry_max_ms
            );
        }
        if !(sc.retry_budget_s >= 0.1 && sc.retry_budget_s <= 3600.0) {
            anyhow::bail!(
                "pipeline.scorer.retry_budget_s {} is outside 0.1..=3600",
                sc.retry_budget_s
            );
        }
        self.http.validate().map_err(anyhow::Error::msg)?;
        if !(1..=64).contains(&p.analyzer_threads) {
            anyhow::bail!(
                "pipeline.analyzer_threads {} is outside 1..=64",
                p.analyzer_threads
            );
        }
        if !(1..=64).contains(&p.model_threads) {
            anyhow::bail!(
                "pipeline.model_threads {} is outside 1..=64",
                p.model_threads
            );
        }
        Ok(())
    }

    /// librdkafka settings for this connection (security included), on top of `base`.
    pub fn kafka_client(&self, base: ClientConfig) -> ClientConfig {
        self.kafka.client(base)
    }
}

fn env_provider() -> Env {
    // Only nested keys (SECTION__KEY): CARDIOSTREAM_ORT_LIB and friends are not settings.
    Env::prefixed("CARDIOSTREAM_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

fn describe(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let src = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(s) => format!(" (from {s})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            if path.is_empty() {
                format!("{}{src}", e.kind)
            } else {
                format!("{path}: {}{src}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    fn err(toml: &str) -> String {
        let fig = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml));
        Config::from_figment(fig).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert_eq!(c.topics.frames, "ecg.frames.v1");
        assert_eq!(c.pipeline.dsp, DspConfig::default());
        assert_eq!(c.pipeline.streams, StreamSettings::default());
        assert_eq!(c.pipeline.af_episodes, EpisodeSettings::default());
        let k = c.kafka_client(ClientConfig::new());
        assert_eq!(k.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.http.limits(), ecg_alerts::server::HttpLimits::default());
    }

    #[test]
    fn errors_name_the_setting() {
        for (toml, expect) in [
            ("[kafka]\nbootstrap_servers = \"\"", "kafka.bootstrap_servers is empty"),
            ("[kafka]\nbootstrap_servers = \"broker\"", "kafka.bootstrap_servers: \"broker\" is not host:port"),
            ("[kafka]\nbootstrap_sever = \"b:1\"", "unknown field"),
            ("[kafka]\nsecurity_protocol = \"tls\"", "kafka.security_protocol"),
            ("[kafka]\nsecurity_protocol = \"sasl_plaintext\"", "kafka.sasl_mechanism is required"),
            (
                "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"",
                "kafka.sasl_password is required",
            ),
            ("[kafka]\nsasl_username = \"u\"", "does not use SASL"),
            ("[kafka]\nssl_ca_location = \"/nonexistent/ca.pem\"", "kafka.ssl_ca_location"),
            ("[topics]\nframes = \"a topic\"", "topics.frames"),
            ("[pipeline]\nbatch_max = 0", "pipeline.batch_max"),
            ("[pipeline]\nbatch_max = \"lots\"", "pipeline.batch_max"),
            ("[pipeline.dsp]\nbrady = 40", "unknown field"),
            ("[pipeline]\nmodel_hop_s = 7.0", "pipeline.model_hop_s 7 is not a multiple"),
            ("[pipeline]\nchannel_batches = 0", "pipeline.channel_batches"),
            ("[pipeline.streams]\nwarmup_s = -1.0", "pipeline.streams.warmup_s"),
            ("[pipeline.streams]\nclock_jump_ms = 0", "pipeline.streams.clock_jump_ms"),
            ("[pipeline.streams]\nreorder_ms = 5", "unknown field"),
            ("[pipeline.af_episodes]\nstay_probability = 1.5", "pipeline.af_episodes.stay_probability"),
            ("[pipeline.af_episodes]\nonset_windows = 0", "pipeline.af_episodes.onset_windows"),
            ("[pipeline.af_episodes.rr]\nmin_nmad = 0.1", "unknown field"),
            ("[http]\naddr = \"nowhere\"", "http.addr"),
            ("[http]\nheader_read_timeout_ms = 0", "http.header_read_timeout_ms"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            ("[http]\nshutdown_grace_ms = 120000", "http.shutdown_grace_ms"),
        ] {
            let e = err(toml);
            assert!(e.contains(expect), "{toml:?}: {e}");
        }
    }

    /// Issue 15, item 6: no secret of the configuration shows in `Debug` output (a
    /// log line, a panic message, an error chain).
    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let fig = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(
            "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\n\
             allow_plaintext_password = true\nsasl_username = \"cardiostream\"\nsasl_password = \"sasl-pw-s3cret\"\n\
             [kafka.client_properties]\n\"ssl.key.password\" = \"key-pw-s3cret\"\n\
             \"sasl.oauthbearer.client.secret\" = \"oauth-s3cret\"\n\"fetch.wait.max.ms\" = \"50\"\n\
             [alerts.store]\nurl = \"postgres://alerts:pg-s3cret@db:5432/cs\"\n",
        ));
        let c = Config::from_figment(fig).unwrap();
        let client = c.kafka_client(ClientConfig::new());
        assert_eq!(client.get("sasl.password"), Some("sasl-pw-s3cret"));
        let alerts = ecg_alerts::kafka::AlertsConfig::new(client);
        for shown in [
            format!("{c:?}"),
            format!("{:?}", c.kafka),
            format!("{:?}", c.alerts),
            format!("{alerts:?}"),
        ] {
            for secret in [
                "sasl-pw-s3cret",
                "key-pw-s3cret",
                "oauth-s3cret",
                "pg-s3cret",
            ] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(!shown.is_empty());
        }
        let kafka = format!("{:?}", c.kafka);
        assert!(
            kafka.contains("cardiostream") && kafka.contains("fetch.wait.max.ms"),
            "{kafka}"
        );
    }

    #[test]
    fn tls_needs_the_feature() {
        let e = err("[kafka]\nsecurity_protocol = \"ssl\"");
        if cfg!(feature = "tls") {
            assert!(!e.contains("--features tls"), "{e}");
        } else {
            assert!(e.contains("--features tls"), "{e}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn file_then_environment_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[pipeline]\nbatch_max = 64\n[kafka]\nbootstrap_servers = \"file:1\"",
            )?;
            jail.set_env(
                "CARDIOSTREAM_KAFKA__BOOTSTRAP_SERVERS",
                "env-a:9092,env-b:9092",
            );
            jail.set_env("CARDIOSTREAM_ORT_LIB", "/not/a/setting");
            let c = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.pipeline.batch_max, 64);
            assert_eq!(c.kafka.bootstrap_servers, "env-a:9092,env-b:9092");
            jail.set_env("CARDIOSTREAM_PIPELINE__BATCH_MAX", "0");
            let e = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("pipeline.batch_max"), "{e}");
            Ok(())
        });
    }
}

/// Kafka security settings (issue 15): SASL and TLS rules, secrets from files, and no
/// secret in what a refusal says.
#[cfg(test)]
mod kafka_security_tests {
    use super::*;

    fn load(toml: &str) -> anyhow::Result<Config> {
        Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    fn file(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cs-kafka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    const SECRET: &str = "hunter2-correct-horse";

    #[test]
    fn plain_password_over_plaintext_needs_an_explicit_allowance() {
        let base = format!(
            "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password = {SECRET:?}\n"
        );
        let e = load(&base).expect_err("refused").to_string();
        assert!(
            e.contains("clear text") && e.contains("allow_plaintext_password"),
            "{e}"
        );
        assert!(!e.contains(SECRET), "{e}");
        let c = load(&format!("{base}allow_plaintext_password = true\n")).expect("allowed");
        let k = c.kafka_client(ClientConfig::new());
        assert_eq!(k.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(k.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(k.get("sasl.password"), Some(SECRET));
    }

    #[test]
    fn scram_needs_the_tls_build_and_then_configures_librdkafka() {
        let ca = file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
        let toml = format!(
            "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"svc-pipeline\"\nsasl_password = {SECRET:?}\nssl_ca_location = {:?}\n",
            ca.display().to_string()
        );
        let tls_build = std::hint::black_box(cfg!(feature = "tls"));
        match load(&toml) {
            Ok(c) => {
                assert!(tls_build, "accepted without the tls build");
                let k = c.kafka_client(ClientConfig::new());
                assert_eq!(k.get("security.protocol"), Some("sasl_ssl"));
                assert_eq!(k.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
                assert_eq!(k.get("sasl.username"), Some("svc-pipeline"));
                assert_eq!(
                    k.get("ssl.ca.location"),
                    Some(ca.display().to_string().as_str())
                );
            }
            Err(e) => {
                assert!(!tls_build, "{e}");
                let e = e.to_string();
                assert!(e.contains("--features tls"), "{e}");
                assert!(!e.contains(SECRET), "{e}");
            }
        }
        for (mechanism, protocol) in [("SCRAM-SHA-1", "sasl_ssl"), ("GSSAPI", "sasl_plaintext")] {
            let e = load(&format!(
                "[kafka]\nsecurity_protocol = {protocol:?}\nsasl_mechanism = {mechanism:?}\nsasl_username = \"u\"\nsasl_password = {SECRET:?}\n"
            ))
            .expect_err("unknown mechanism")
            .to_string();
            assert!(
                e.contains("kafka.sasl_mechanism") && !e.contains(SECRET),
                "{e}"
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn password_from_a_file_and_never_in_errors() {
        let pw = file("password", &format!("{SECRET}\n"));
        let base = "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nallow_plaintext_password = true\nsasl_username = \"u\"\n";
        let c = load(&format!(
            "{base}sasl_password_file = {:?}\n",
            pw.display().to_string()
        ))
        .expect("password file");
        assert_eq!(c.kafka.sasl_password.as_deref(), Some(SECRET));
        assert_eq!(
            c.kafka_client(ClientConfig::new()).get("sasl.password"),
            Some(SECRET)
        );
        // Read from the file, it is redacted like any other: Debug names the file only.
        let shown = format!("{:?}", c.kafka);
        assert!(
            !shown.contains(SECRET) && shown.contains(&pw.display().to_string()),
            "{shown}"
        );
        // Both, or a file that is not there: refused, naming the setting, not the secret.
        let e = load(&format!(
            "{base}sasl_password = \"x\"\nsasl_password_file = {:?}\n",
            pw.display().to_string()
        ))
        .expect_err("both")
        .to_string();
        assert!(e.contains("both set") && !e.contains(SECRET), "{e}");
        let e = load(&format!("{base}sasl_password_file = \"/nonexistent/pw\"\n"))
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("kafka.sasl_password_file") && e.contains("/nonexistent/pw"),
            "{e}"
        );
        // An empty file is no password.
        let empty = file("empty", "\n");
        let e = load(&format!(
            "{base}sasl_password_file = {:?}\n",
            empty.display().to_string()
        ))
        .expect_err("empty")
        .to_string();
        assert!(e.contains("kafka.sasl_password is required"), "{e}");
        // The password from the environment, as figment reads it.
        figment::Jail::expect_with(|jail| {
            jail.set_env("CARDIOSTREAM_KAFKA__SECURITY_PROTOCOL", "sasl_plaintext");
            jail.set_env("CARDIOSTREAM_KAFKA__SASL_MECHANISM", "PLAIN");
            jail.set_env("CARDIOSTREAM_KAFKA__ALLOW_PLAINTEXT_PASSWORD", "true");
            jail.set_env("CARDIOSTREAM_KAFKA__SASL_USERNAME", "u");
            jail.set_env("CARDIOSTREAM_KAFKA__SASL_PASSWORD", SECRET);
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.sasl_password.as_deref(), Some(SECRET));
            Ok(())
        });
    }

    #[test]
    fn tls_files_must_fit_the_protocol_and_go_in_pairs() {
        let cert = file("client.pem", "cert");
        let key = file("client.key", "key");
        let cert_s = cert.display().to_string();
        let key_s = key.display().to_string();
        for (toml, want) in [
            // TLS files on a plaintext connection would be silently ignored.
            (
                format!("[kafka]\nssl_certificate_location = {cert_s:?}\nssl_key_location = {key_s:?}\n"),
                "does not use TLS",
            ),
            // A certificate without its key (or the reverse).
            (
                format!("[kafka]\nsecurity_protocol = \"ssl\"\nssl_certificate_location = {cert_s:?}\n"),
                if cfg!(feature = "tls") { "go together" } else { "--features tls" },
            ),
            // A directory is not a certificate file.
            (
                format!(
                    "[kafka]\nsecurity_protocol = \"ssl\"\nssl_ca_location = {:?}\n",
                    std::env::temp_dir().display().to_string()
                ),
                if cfg!(feature = "tls") { "does not exist" } else { "--features tls" },
            ),
            // A password without SASL would be silently ignored.
            (
                format!("[kafka]\nsasl_password = {SECRET:?}\n"),
                "does not use SASL",
            ),
        ] {
            let e = load(&toml).expect_err("refused").to_string();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }
}

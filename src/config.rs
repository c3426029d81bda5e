//! Layered configuration of the deployables: the embedded `config/default.toml`, then
//! a file (`--config`), then environment variables `CARDIOSTREAM_SECTION__KEY`.
//! Everything is validated at start, with errors that name the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ecg_dsp::stream::DspConfig;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use rdkafka::ClientConfig;
use serde::Deserialize;

use ecg_ingest::kafka::{Properties, REDACTED};
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

/// How to reach Kafka. `Debug` shows no secret: the SASL password and secret-looking
/// client properties ([`ecg_ingest::kafka::is_secret_property`]) are redacted.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Transport security.
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism (`SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN`).
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// SASL password (from a secret; never logged).
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// File holding the SASL password (a mounted Kubernetes secret, say): read at
    /// start, trailing newline dropped. Exclusive with `sasl_password`.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Allow SASL `PLAIN` over `sasl_plaintext`, which sends the password in clear
    /// text (off: such a configuration is refused).
    #[serde(default)]
    pub allow_plaintext_password: bool,
    /// CA certificate file for TLS.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate file for mutual TLS.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    /// Client key file for mutual TLS.
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// Other librdkafka properties, passed through.
    #[serde(default)]
    pub client_properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| REDACTED),
            )
            .field("sasl_password_file", &self.sasl_password_file)
            .field("allow_plaintext_password", &self.allow_plaintext_password)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field(
                "client_properties",
                &Properties(
                    self.client_properties
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                ),
            )
            .finish()
    }
}

/// Kafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
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
    /// DSP settings.
    #[serde(default)]
    pub dsp: DspConfig,
    /// Per-stream sequencing, warm-up, eviction and limits.
    #[serde(default)]
    pub streams: StreamSettings,
    /// Retries of failing model runs (`max_batch` is `model_max_batch`).
    #[serde(default)]
    pub scorer: ScorerSettings,
}

/// HTTP endpoints and the limits of their connections (`docs/operations.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// A request's line and headers must arrive within this (ms), counted from the
    /// connection's opening or its previous response (so it also closes kept-alive
    /// connections that send nothing).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A request must be read and answered within this (ms), else 408.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// A connection on which no byte moves for this long (ms) is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Open connections at most; more are refused with 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// On shutdown, how long (ms) open connections may take to finish.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    256
}
fn default_shutdown_grace_ms() -> u64 {
    5_000
}

impl HttpSettings {
    /// The limits [`ecg_alerts::server::serve_with`] takes.
    pub fn limits(&self) -> ecg_alerts::server::HttpLimits {
        use std::time::Duration;
        ecg_alerts::server::HttpLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }
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
        cfg.kafka.read_password_file()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules that types alone do not.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            anyhow::bail!("kafka.bootstrap_servers is empty");
        }
        for server in k.bootstrap_servers.split(',') {
            let server = server.trim();
            let port = server.rsplit_once(':').map(|(_, p)| p);
            if !port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
                anyhow::bail!("kafka.bootstrap_servers: {server:?} is not host:port");
            }
        }
        let sasl = matches!(
            k.security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        if sasl {
            match k.sasl_mechanism.as_deref() {
                Some("SCRAM-SHA-256" | "SCRAM-SHA-512" | "PLAIN") => {}
                Some(other) => anyhow::bail!(
                    "kafka.sasl_mechanism {other:?} is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"
                ),
                None => anyhow::bail!(
                    "kafka.sasl_mechanism is required with security_protocol = {}",
                    k.security_protocol.as_str()
                ),
            }
            if k.sasl_username.as_deref().is_none_or(str::is_empty) {
                anyhow::bail!("kafka.sasl_username is required with SASL");
            }
            if k.sasl_password.as_deref().is_none_or(str::is_empty) {
                anyhow::bail!("kafka.sasl_password is required with SASL");
            }
            if k.security_protocol == SecurityProtocol::SaslPlaintext
                && k.sasl_mechanism.as_deref() == Some("PLAIN")
                && !k.allow_plaintext_password
            {
                anyhow::bail!(
                    "kafka.sasl_mechanism = \"PLAIN\" over security_protocol = sasl_plaintext sends the password in clear text: use sasl_ssl, or SCRAM, or set kafka.allow_plaintext_password = true"
                );
            }
        } else if k.sasl_mechanism.is_some()
            || k.sasl_username.is_some()
            || k.sasl_password.is_some()
        {
            anyhow::bail!(
                "kafka.sasl_* is set but kafka.security_protocol = {} does not use SASL",
                k.security_protocol.as_str()
            );
        }
        let needs_openssl = matches!(
            k.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        ) || k
            .sasl_mechanism
            .as_deref()
            .is_some_and(|m| m.starts_with("SCRAM"));
        if needs_openssl && !cfg!(feature = "tls") {
            anyhow::bail!(
                "kafka.security_protocol = {} needs TLS/SCRAM support: build with `cargo build --release --features tls`",
                k.security_protocol.as_str()
            );
        }
        for (name, path) in [
            ("kafka.ssl_ca_location", &k.ssl_ca_location),
            (
                "kafka.ssl_certificate_location",
                &k.ssl_certificate_location,
            ),
            ("kafka.ssl_key_location", &k.ssl_key_location),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    anyhow::bail!("{name}: {} does not exist or is not a file", p.display());
                }
                if let Err(e) = std::fs::File::open(p) {
                    anyhow::bail!("{name}: {} cannot be read: {e}", p.display());
                }
            }
        }
        let tls = matches!(
            k.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        );
        if !tls
            && (k.ssl_ca_location.is_some()
                || k.ssl_certificate_location.is_some()
                || k.ssl_key_location.is_some())
        {
            anyhow::bail!(
                "kafka.ssl_* is set but kafka.security_protocol = {} does not use TLS",
                k.security_protocol.as_str()
            );
        }
        if k.ssl_certificate_location.is_some() != k.ssl_key_location.is_some() {
            anyhow::bail!(
                "kafka.ssl_certificate_location and kafka.ssl_key_location go together (mutual TLS)"
            );
        }
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
        let h = &self.http;
        for (name, v, max) in [
            (
                "http.header_read_timeout_ms",
                h.header_read_timeout_ms,
                600_000,
            ),
            ("http.request_timeout_ms", h.request_timeout_ms, 600_000),
            ("http.idle_timeout_ms", h.idle_timeout_ms, 3_600_000),
            ("http.shutdown_grace_ms", h.shutdown_grace_ms, 60_000),
        ] {
            if !(1..=max).contains(&v) {
                anyhow::bail!("{name} {v} is outside 1..={max}");
            }
        }
        if !(1..=65_536).contains(&h.max_connections) {
            anyhow::bail!(
                "http.max_connections {} is outside 1..=65536",
                h.max_connections
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
    pub fn kafka_client(&self, mut base: ClientConfig) -> ClientConfig {
        let k = &self.kafka;
        base.set("bootstrap.servers", &k.bootstrap_servers)
            .set("security.protocol", k.security_protocol.as_str());
        if let Some(m) = &k.sasl_mechanism {
            base.set("sasl.mechanism", m);
        }
        if let Some(u) = &k.sasl_username {
            base.set("sasl.username", u);
        }
        if let Some(p) = &k.sasl_password {
            base.set("sasl.password", p);
        }
        for (key, path) in [
            ("ssl.ca.location", &k.ssl_ca_location),
            ("ssl.certificate.location", &k.ssl_certificate_location),
            ("ssl.key.location", &k.ssl_key_location),
        ] {
            if let Some(p) = path {
                base.set(key, p.display().to_string());
            }
        }
        for (key, v) in &k.client_properties {
            base.set(key, v);
        }
        base
    }
}

impl KafkaSettings {
    /// Reads `sasl_password_file` into `sasl_password` (trailing newline dropped).
    ///
    /// # Errors
    /// Both set, or the file cannot be read; the message names the file, never its
    /// content.
    fn read_password_file(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.sasl_password_file else {
            return Ok(());
        };
        if self.sasl_password.is_some() {
            anyhow::bail!("kafka.sasl_password and kafka.sasl_password_file are both set");
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "kafka.sasl_password_file: {} cannot be read: {e}",
                path.display()
            )
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        self.sasl_password = Some(password.to_owned());
        Ok(())
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

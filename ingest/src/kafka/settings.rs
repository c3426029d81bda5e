//! A deployable's connection to Kafka as its configuration states it (`[kafka]`):
//! brokers, transport security and SASL, validated and turned into librdkafka
//! settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;

use super::{Properties, REDACTED};

/// How to reach Kafka. `Debug` shows no secret: the SASL password and secret-looking
/// client properties ([`super::is_secret_property`]) are redacted.
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
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

impl KafkaSettings {
    /// Checks the rules that types alone do not. `tls_built`: whether librdkafka was
    /// built with TLS and SCRAM (the binary's `tls` feature).
    ///
    /// # Errors
    /// A message naming the setting (`kafka.…`) that is wrong.
    pub fn validate(&self, tls_built: bool) -> Result<(), String> {
        let k = self;
        if k.bootstrap_servers.trim().is_empty() {
            return Err("kafka.bootstrap_servers is empty".into());
        }
        for server in k.bootstrap_servers.split(',') {
            let server = server.trim();
            let port = server.rsplit_once(':').map(|(_, p)| p);
            if !port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
                return Err(format!(
                    "kafka.bootstrap_servers: {server:?} is not host:port"
                ));
            }
        }
        let sasl = matches!(
            k.security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        if sasl {
            match k.sasl_mechanism.as_deref() {
                Some("SCRAM-SHA-256" | "SCRAM-SHA-512" | "PLAIN") => {}
                Some(other) => return Err(format!(
                    "kafka.sasl_mechanism {other:?} is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"
                )),
                None => return Err(format!(
                    "kafka.sasl_mechanism is required with security_protocol = {}",
                    k.security_protocol.as_str()
                )),
            }
            if k.sasl_username.as_deref().is_none_or(str::is_empty) {
                return Err("kafka.sasl_username is required with SASL".into());
            }
            if k.sasl_password.as_deref().is_none_or(str::is_empty) {
                return Err("kafka.sasl_password is required with SASL".into());
            }
            if k.security_protocol == SecurityProtocol::SaslPlaintext
                && k.sasl_mechanism.as_deref() == Some("PLAIN")
                && !k.allow_plaintext_password
            {
                return Err("kafka.sasl_mechanism = \"PLAIN\" over security_protocol = sasl_plaintext sends the password in clear text: use sasl_ssl, or SCRAM, or set kafka.allow_plaintext_password = true".into());
            }
        } else if k.sasl_mechanism.is_some()
            || k.sasl_username.is_some()
            || k.sasl_password.is_some()
        {
            return Err(format!(
                "kafka.sasl_* is set but kafka.security_protocol = {} does not use SASL",
                k.security_protocol.as_str()
            ));
        }
        let needs_openssl = matches!(
            k.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        ) || k
            .sasl_mechanism
            .as_deref()
            .is_some_and(|m| m.starts_with("SCRAM"));
        if needs_openssl && !tls_built {
            return Err(format!(
                "kafka.security_protocol = {} needs TLS/SCRAM support: build with `cargo build --release --features tls`",
                k.security_protocol.as_str()
            ));
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
                    return Err(format!(
                        "{name}: {} does not exist or is not a file",
                        p.display()
                    ));
                }
                if let Err(e) = std::fs::File::open(p) {
                    return Err(format!("{name}: {} cannot be read: {e}", p.display()));
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
            return Err(format!(
                "kafka.ssl_* is set but kafka.security_protocol = {} does not use TLS",
                k.security_protocol.as_str()
            ));
        }
        if k.ssl_certificate_location.is_some() != k.ssl_key_location.is_some() {
            return Err("kafka.ssl_certificate_location and kafka.ssl_key_location go together (mutual TLS)".into());
        }
        Ok(())
    }

    /// librdkafka settings for this connection (security included), on top of `base`.
    pub fn client(&self, mut base: ClientConfig) -> ClientConfig {
        let k = self;
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

    /// Reads `sasl_password_file` into `sasl_password` (trailing newline dropped).
    ///
    /// # Errors
    /// Both set, or the file cannot be read; the message names the file, never its
    /// content.
    pub fn read_password_file(&mut self) -> Result<(), String> {
        let Some(path) = &self.sasl_password_file else {
            return Ok(());
        };
        if self.sasl_password.is_some() {
            return Err("kafka.sasl_password and kafka.sasl_password_file are both set".into());
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protocol: SecurityProtocol) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "broker-1:9092,broker-2:9092".into(),
            security_protocol: protocol,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            allow_plaintext_password: false,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            client_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn scram_needs_the_tls_build_and_its_settings_reach_librdkafka() {
        let mut k = settings(SecurityProtocol::SaslSsl);
        k.sasl_mechanism = Some("SCRAM-SHA-512".into());
        k.sasl_username = Some("pipeline".into());
        k.sasl_password = Some("s3cret".into());
        let err = k.validate(false).expect_err("no TLS build");
        assert!(err.contains("--features tls"), "{err}");
        k.validate(true).expect("valid with TLS");
        let c = k.client(ClientConfig::new());
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert!(!format!("{k:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_setting() {
        let mut k = settings(SecurityProtocol::Plaintext);
        k.bootstrap_servers = "broker-1".into();
        assert!(k
            .validate(true)
            .expect_err("no port")
            .contains("kafka.bootstrap_servers"));
        let mut k = settings(SecurityProtocol::Plaintext);
        k.sasl_username = Some("u".into());
        assert!(k.validate(true).expect_err("sasl").contains("kafka.sasl_*"));
        let mut k = settings(SecurityProtocol::SaslPlaintext);
        k.sasl_mechanism = Some("PLAIN".into());
        k.sasl_username = Some("u".into());
        k.sasl_password = Some("p".into());
        assert!(k
            .validate(true)
            .expect_err("clear text")
            .contains("clear text"));
        k.allow_plaintext_password = true;
        k.validate(true).expect("allowed explicitly");
    }
}

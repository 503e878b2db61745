//! How every Kafka client of the shop connects: plaintext on a laptop, TLS and SASL (PLAIN or
//! SCRAM) on a real cluster, and any other librdkafka property a managed cluster needs, all
//! set by configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

use crate::secret::{self, Secret};

/// `security.protocol`: whether the connection is encrypted (SSL) and authenticated (SASL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecurityProtocol {
    #[default]
    #[value(name = "PLAINTEXT")]
    Plaintext,
    #[value(name = "SSL")]
    Ssl,
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// `sasl.mechanism`: how a SASL client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The connection settings every Kafka client reads: flatten into a service's or tool's
/// `clap` parser (global, so a tool's subcommands take them too).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS and SASL).
    #[arg(
        long,
        global = true,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "PLAINTEXT"
    )]
    pub kafka_security_protocol: SecurityProtocol,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol).
    #[arg(long, global = true, env = "KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user this client authenticates as.
    #[arg(long, global = true, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// The SASL user's password (prefer the environment, or the _FILE variant, to a flag).
    #[arg(
        long,
        global = true,
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_sasl_password: Option<Secret>,
    /// A file holding the SASL password, as Kubernetes and Docker mount secrets.
    #[arg(long, global = true, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign the brokers' (with an SSL protocol)
    /// [default: the system's].
    #[arg(long, global = true, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// A file of further librdkafka properties, one `name=value` a line (`#` comments), such
    /// as a managed cluster's client.properties: `ssl.endpoint.identification.algorithm`,
    /// `ssl.certificate.location` and `ssl.key.location` for mutual TLS, … The variables
    /// above override what it sets.
    #[arg(long, global = true, env = "KAFKA_CONFIG_FILE")]
    pub kafka_config_file: Option<PathBuf>,
}

/// Properties the shop sets itself because its guarantees depend on them: a configuration
/// file may not change them.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set KAFKA_BOOTSTRAP_SERVERS"),
    ("metadata.broker.list", "set KAFKA_BOOTSTRAP_SERVERS"),
    ("group.id", "set KAFKA_GROUP_ID"),
    ("client.id", "set INSTANCE_ID"),
    ("enable.auto.commit", "offsets are committed by the shop"),
    (
        "enable.auto.offset.store",
        "offsets are stored only after an event's effects committed",
    ),
    ("enable.idempotence", "the producer must be idempotent"),
    ("acks", "every send waits for all in-sync replicas"),
    ("message.timeout.ms", "set KAFKA_MESSAGE_TIMEOUT_MS"),
    ("delivery.timeout.ms", "set KAFKA_MESSAGE_TIMEOUT_MS"),
    ("session.timeout.ms", "set KAFKA_SESSION_TIMEOUT_MS"),
];

/// How a client connects, resolved and checked: the librdkafka properties to add to every
/// client's configuration. Its `Debug` output shows which properties are set, never a
/// secret's value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    properties: BTreeMap<String, String>,
}

impl KafkaSecurity {
    /// Plaintext, no authentication: a laptop's broker.
    pub fn plaintext() -> Self {
        KafkaSecurity::default()
    }

    /// Checks the settings together and reads the files they name. Every error names the
    /// variable to fix; none shows a secret.
    pub fn from_args(args: &KafkaSecurityArgs) -> Result<Self, String> {
        let mut properties = match &args.kafka_config_file {
            Some(path) => read_properties(path)?,
            None => BTreeMap::new(),
        };
        let protocol = args.kafka_security_protocol;
        let explicit_sasl = args.kafka_sasl_mechanism.is_some()
            || args.kafka_sasl_username.is_some()
            || args.kafka_sasl_password.is_some()
            || args.kafka_sasl_password_file.is_some();
        // The protocol from the file counts unless the variable says otherwise.
        if protocol != SecurityProtocol::Plaintext || !properties.contains_key("security.protocol")
        {
            properties.insert("security.protocol".into(), protocol.as_str().into());
        }
        let effective = properties["security.protocol"].to_ascii_uppercase();
        let sasl = effective.starts_with("SASL_");
        let tls = effective.ends_with("SSL");
        if explicit_sasl && !sasl {
            return Err(format!(
                "KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL is {effective}, which sends no \
                 credentials: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            ));
        }
        if let Some(mechanism) = args.kafka_sasl_mechanism {
            properties.remove("sasl.mechanisms");
            properties.insert("sasl.mechanism".into(), mechanism.as_str().into());
        }
        if let Some(username) = &args.kafka_sasl_username {
            properties.insert("sasl.username".into(), username.clone());
        }
        if let Some(password) = secret::resolve(
            "KAFKA_SASL_PASSWORD",
            args.kafka_sasl_password.clone(),
            args.kafka_sasl_password_file.as_deref(),
        )? {
            properties.insert("sasl.password".into(), password.expose().to_owned());
        }
        if sasl {
            let mechanism = properties
                .get("sasl.mechanism")
                .or_else(|| properties.get("sasl.mechanisms"))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "KAFKA_SECURITY_PROTOCOL={effective} needs KAFKA_SASL_MECHANISM \
                         (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                    )
                })?;
            let needs_password = matches!(
                mechanism.to_ascii_uppercase().as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            );
            if needs_password && !properties.contains_key("sasl.username") {
                return Err(format!(
                    "KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME"
                ));
            }
            if needs_password && !properties.contains_key("sasl.password") {
                return Err(format!(
                    "KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_PASSWORD or \
                     KAFKA_SASL_PASSWORD_FILE"
                ));
            }
        }
        if let Some(ca) = &args.kafka_ssl_ca_location {
            if !tls {
                return Err(format!(
                    "KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL is {effective}, \
                     which does not use TLS: set SSL or SASL_SSL"
                ));
            }
            readable("KAFKA_SSL_CA_LOCATION", ca)?;
            properties.insert("ssl.ca.location".into(), ca.display().to_string());
        } else if tls && !properties.contains_key("ssl.ca.location") {
            // librdkafka's OpenSSL is compiled in, and its default CA directory is not the
            // system's: look for the system's bundle where distributions keep it.
            properties.insert("ssl.ca.location".into(), "probe".into());
        }
        Ok(KafkaSecurity { properties })
    }

    /// Adds these properties to a client's configuration.
    pub fn apply(&self, config: &mut ClientConfig) {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
    }

    /// `security.protocol`, as the client will use it.
    pub fn protocol(&self) -> &str {
        self.properties
            .get("security.protocol")
            .map_or("PLAINTEXT", String::as_str)
    }

    /// The SASL user, if the client authenticates with one.
    pub fn username(&self) -> Option<&str> {
        self.properties.get("sasl.username").map(String::as_str)
    }

    /// The SASL mechanism, if any.
    pub fn mechanism(&self) -> Option<&str> {
        self.properties
            .get("sasl.mechanism")
            .or_else(|| self.properties.get("sasl.mechanisms"))
            .map(String::as_str)
    }

    /// Whether the connection is encrypted.
    pub fn uses_tls(&self) -> bool {
        self.protocol().to_ascii_uppercase().ends_with("SSL")
    }
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.properties {
            if is_sensitive(key) {
                map.entry(key, &"[redacted]");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Whether a librdkafka property holds a secret (passwords, private keys, OAuth secrets).
pub fn is_sensitive(key: &str) -> bool {
    [
        "password",
        "secret",
        "key.pem",
        "jaas",
        "oauthbearer.config",
    ]
    .iter()
    .any(|part| key.contains(part))
}

fn readable(variable: &str, path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|err| format!("cannot read {variable}={}: {err}", path.display()))
}

/// `name=value` lines, `#` or `!` comments, as Java's (and librdkafka's) property files.
fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read KAFKA_CONFIG_FILE={}: {err}", path.display()))?;
    let mut properties = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let where_ = format!("KAFKA_CONFIG_FILE={} line {}", path.display(), number + 1);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{where_}: expected name=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{where_}: expected name=value"));
        }
        if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| *reserved == key) {
            return Err(format!("{where_}: {key} cannot be set here ({why})"));
        }
        properties.insert(key.to_owned(), value.trim().to_owned());
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl() -> KafkaSecurityArgs {
        KafkaSecurityArgs {
            kafka_security_protocol: SecurityProtocol::SaslSsl,
            kafka_sasl_mechanism: Some(SaslMechanism::ScramSha512),
            kafka_sasl_username: Some("inventory-service".into()),
            kafka_sasl_password: Some(Secret::new("hunter2")),
            ..KafkaSecurityArgs::default()
        }
    }

    #[test]
    fn sasl_ssl_with_scram_sets_the_librdkafka_properties_and_debug_hides_the_password() {
        let security = KafkaSecurity::from_args(&sasl_ssl()).unwrap();
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("inventory-service"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        let shown = format!("{security:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }

    #[test]
    fn a_sasl_protocol_without_a_mechanism_user_or_password_is_refused_naming_the_variable() {
        let mut args = sasl_ssl();
        args.kafka_sasl_mechanism = None;
        let err = KafkaSecurity::from_args(&args).unwrap_err();
        assert!(err.contains("KAFKA_SASL_MECHANISM"), "{err}");
        let mut args = sasl_ssl();
        args.kafka_sasl_password = None;
        let err = KafkaSecurity::from_args(&args).unwrap_err();
        assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
    }

    #[test]
    fn credentials_on_a_protocol_that_sends_none_are_refused() {
        let mut args = sasl_ssl();
        args.kafka_security_protocol = SecurityProtocol::Ssl;
        let err = KafkaSecurity::from_args(&args).unwrap_err();
        assert!(err.contains("KAFKA_SECURITY_PROTOCOL=SASL_SSL"), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_is_an_error_naming_it() {
        let mut args = sasl_ssl();
        args.kafka_ssl_ca_location = Some("/nonexistent/ca.pem".into());
        let err = KafkaSecurity::from_args(&args).unwrap_err();
        assert!(
            err.contains("KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_client_properties_file_is_read_and_the_variables_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# a managed cluster's file\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n\
             sasl.username=key\nsasl.password=from-file\nssl.endpoint.identification.algorithm = https\n",
        )
        .unwrap();
        let args = KafkaSecurityArgs {
            kafka_config_file: Some(file.clone()),
            ..KafkaSecurityArgs::default()
        };
        let security = KafkaSecurity::from_args(&args).unwrap();
        assert_eq!(security.protocol(), "SASL_SSL");
        assert_eq!(security.mechanism(), Some("PLAIN"));
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert!(!format!("{security:?}").contains("from-file"));

        let args = KafkaSecurityArgs {
            kafka_config_file: Some(file),
            kafka_sasl_username: Some("other".into()),
            ..KafkaSecurityArgs::default()
        };
        let security = KafkaSecurity::from_args(&args).unwrap();
        assert_eq!(security.username(), Some("other"));
    }

    #[test]
    fn a_properties_file_may_not_change_what_the_guarantees_depend_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(&file, "enable.auto.commit=true\n").unwrap();
        let args = KafkaSecurityArgs {
            kafka_config_file: Some(file),
            ..KafkaSecurityArgs::default()
        };
        let err = KafkaSecurity::from_args(&args).unwrap_err();
        assert!(
            err.contains("line 1: enable.auto.commit cannot be set here"),
            "{err}"
        );
    }
}

//! Configuration every service reads from its environment, with defaults that work on a
//! developer's machine. Tests build [`ServiceSettings`] directly and override what they need.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::http::{InFlightLimits, ServerLimits, ServerLimitsArgs};
use crate::kafka::security::{KafkaSecurity, KafkaSecurityArgs};
use crate::secret::{self, Secret};
use crate::telemetry::LogFormat;

/// What makes one service different from another before any configuration is read.
#[derive(Debug, Clone, Copy)]
pub struct ServiceIdentity {
    /// Service name; also its consumer group.
    pub name: &'static str,
    /// Its own PostgreSQL database (database per service).
    pub database: &'static str,
    pub http_port: u16,
}

/// Environment variables shared by every service. Flatten into a service's own `clap` parser.
///
/// A duration's name says its unit (`_MS`, `_SECS`): a bare whole number is in that unit, and a
/// number with a unit of its own is read by humantime (`KAFKA_MESSAGE_TIMEOUT_MS=2m`); see
/// [`millis`] and [`secs`].
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Kafka brokers to bootstrap from, comma-separated.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    /// Create the shop's topics if they are missing (a laptop's broker). `false` on a cluster
    /// where an admin creates them: the service then only waits for the topics it uses.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,
    /// PostgreSQL URL, TLS options included (`?sslmode=verify-full&sslrootcert=/ca.crt`)
    /// [default: postgres://postgres@127.0.0.1:5432/<the service's database>].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// A file holding DATABASE_URL.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// The database password, replacing DATABASE_URL's (so the URL need hold none).
    #[arg(long, env = "DATABASE_PASSWORD", hide_env_values = true)]
    pub database_password: Option<Secret>,
    /// A file holding DATABASE_PASSWORD.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// Address the HTTP server binds [default: 0.0.0.0:<the service's port>].
    #[arg(long, env = "HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Consumer group [default: the service name].
    #[arg(long, env = "KAFKA_GROUP_ID")]
    pub kafka_group_id: Option<String>,
    /// Names this instance in logs, client ids and `/assignment` [default: service-$HOSTNAME, else service-pid].
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Replication factor for topics this service creates (3 on a real cluster).
    #[arg(long, env = "KAFKA_TOPIC_REPLICATION_FACTOR", default_value_t = 1)]
    pub kafka_topic_replication_factor: i32,
    /// `min.insync.replicas` for topics this service creates; unset keeps the broker default.
    #[arg(long, env = "KAFKA_TOPIC_MIN_INSYNC_REPLICAS")]
    pub kafka_topic_min_insync_replicas: Option<i32>,
    /// How long a consumer may be silent before the group hands its partitions to others
    /// (heartbeats go every third of it). 6 s is the least a Kafka broker accepts by default
    /// (`group.min.session.timeout.ms`): a crashed instance's partitions move within ~10 s.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value = "6000", value_parser = millis)]
    pub kafka_session_timeout_ms: Duration,
    /// Connections to the service's database. Every instance of every service takes this many
    /// from PostgreSQL's `max_connections` (100 by default); a request or an event holds one
    /// for a few milliseconds, so ten keep two cores busy.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 10)]
    pub database_pool_size: u32,
    /// Requests the HTTP API handles at once. Sized so the queue for the database pool stays
    /// a few milliseconds long (see docs/architecture.md).
    #[arg(long, env = "HTTP_MAX_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_in_flight: u32,
    /// Requests that may wait for a turn past HTTP_MAX_IN_FLIGHT; past that, a request is
    /// answered 503 with `Retry-After` at once.
    #[arg(long, env = "HTTP_MAX_QUEUED", default_value_t = 256)]
    pub http_max_queued: u32,
    /// How long a request waits for a turn before it is answered 503 with `Retry-After`.
    #[arg(long, env = "HTTP_QUEUE_TIMEOUT_MS", default_value = "1000", value_parser = millis)]
    pub http_queue_timeout_ms: Duration,
    #[command(flatten)]
    pub http_limits: ServerLimitsArgs,
    /// How often the outbox relay looks for unpublished events written by other instances
    /// (its own instance wakes it at once).
    #[arg(long, env = "OUTBOX_POLL_INTERVAL_MS", default_value = "500", value_parser = millis)]
    pub outbox_poll_interval_ms: Duration,
    /// How long the producer keeps retrying one event before the relay gives up on the batch
    /// and tries again (Kafka's `delivery.timeout.ms`). Keep it longer than a broker restart:
    /// a message that times out makes librdkafka bump the idempotent producer's epoch.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value = "120000", value_parser = millis)]
    pub kafka_message_timeout_ms: Duration,
    /// How long the consumer may spend on one batch, or the relay on one publish, before
    /// `/healthz` fails. Must be longer than KAFKA_MESSAGE_TIMEOUT_MS, which a publish may
    /// legitimately take while the broker is away.
    #[arg(long, env = "HEALTH_STUCK_AFTER_SECS", default_value = "300", value_parser = secs)]
    pub health_stuck_after_secs: Duration,
    /// How long to wait for Kafka and PostgreSQL at start-up before giving up.
    #[arg(long, env = "STARTUP_TIMEOUT_SECS", default_value = "30", value_parser = secs)]
    pub startup_timeout_secs: Duration,
    /// `text` for a terminal, `json` for containers.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// TLS, SASL and any further client properties.
    pub security: KafkaSecurity,
    /// Whether to create missing topics, or only wait for those in use to exist.
    pub create_topics: bool,
    pub group_id: String,
    pub client_id: String,
    pub topic_replication_factor: i32,
    pub topic_min_insync_replicas: Option<i32>,
    pub session_timeout: Duration,
    pub startup_timeout: Duration,
}

/// The resolved settings every service starts from.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub name: &'static str,
    pub instance_id: String,
    pub http_addr: SocketAddr,
    pub database_url: Secret,
    pub database_pool_size: u32,
    /// API requests handled at once, and how many may wait for a turn.
    pub http_in_flight: InFlightLimits,
    /// Time-outs and the connection bound that protect the HTTP server from slow clients.
    pub http_limits: ServerLimits,
    pub outbox_poll_interval: Duration,
    /// How long the relay's producer retries one event (`delivery.timeout.ms`).
    pub message_timeout: Duration,
    /// How long a loop may stay busy before `/healthz` fails.
    pub stuck_after: Duration,
    pub kafka: KafkaSettings,
    pub log_format: LogFormat,
}

impl ServiceSettings {
    /// Reads the common settings from the environment (and command line), for a service
    /// that needs nothing more. `--help` lists every variable.
    pub fn from_env(identity: ServiceIdentity) -> Self {
        use clap::{Args, Command, FromArgMatches};
        let command = CommonArgs::augment_args(Command::new(identity.name));
        let mut command = command;
        let args = CommonArgs::from_arg_matches(&command.get_matches_mut())
            .unwrap_or_else(|err| err.exit());
        match ServiceSettings::from_args(identity, args)
            .and_then(|settings| settings.validate().map(|()| settings))
        {
            Ok(settings) => settings,
            Err(problem) => command
                .error(clap::error::ErrorKind::ArgumentConflict, problem)
                .exit(),
        }
    }

    /// Refuses combinations that cannot work, naming the variables.
    pub fn validate(&self) -> Result<(), String> {
        if self.stuck_after <= self.message_timeout {
            return Err(format!(
                "HEALTH_STUCK_AFTER_SECS ({}) must be longer than KAFKA_MESSAGE_TIMEOUT_MS \
                 ({}): a publish may take that long while the broker is away, and the \
                 service would be restarted for waiting",
                humantime::format_duration(self.stuck_after),
                humantime::format_duration(self.message_timeout)
            ));
        }
        Ok(())
    }

    /// Resolves the arguments: reads the files they name (secrets, the Kafka properties
    /// file) and refuses settings that cannot work together, naming the variable.
    pub fn from_args(identity: ServiceIdentity, args: CommonArgs) -> Result<Self, String> {
        let security = KafkaSecurity::from_args(&args.kafka_security)?;
        let database_url = database_url(identity, &args)?;
        let instance_id = args.instance_id.unwrap_or_else(|| {
            // In a container the pid is always 1, but the hostname differs per replica.
            match std::env::var("HOSTNAME") {
                Ok(host) if !host.is_empty() => format!("{}-{host}", identity.name),
                _ => format!("{}-{}", identity.name, std::process::id()),
            }
        });
        Ok(ServiceSettings {
            name: identity.name,
            http_addr: args.http_addr.unwrap_or(SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                identity.http_port,
            ))),
            database_url,
            database_pool_size: args.database_pool_size,
            http_in_flight: InFlightLimits {
                max: args.http_max_in_flight as usize,
                max_queued: args.http_max_queued as usize,
                queue_timeout: args.http_queue_timeout_ms,
            },
            http_limits: args.http_limits.resolve(),
            outbox_poll_interval: args.outbox_poll_interval_ms,
            message_timeout: args.kafka_message_timeout_ms,
            stuck_after: args.health_stuck_after_secs,
            kafka: KafkaSettings {
                bootstrap_servers: args.kafka_bootstrap_servers,
                security,
                create_topics: args.kafka_create_topics,
                group_id: args
                    .kafka_group_id
                    .unwrap_or_else(|| identity.name.to_owned()),
                client_id: instance_id.clone(),
                topic_replication_factor: args.kafka_topic_replication_factor,
                topic_min_insync_replicas: args.kafka_topic_min_insync_replicas,
                session_timeout: args.kafka_session_timeout_ms,
                startup_timeout: args.startup_timeout_secs,
            },
            instance_id,
            log_format: args.log_format,
        })
    }

    /// Settings for a test: port 0, the given broker and database, short time-outs.
    pub fn for_test(
        identity: ServiceIdentity,
        bootstrap_servers: &str,
        database_url: &str,
        instance_id: &str,
    ) -> Self {
        ServiceSettings::from_args(
            identity,
            CommonArgs {
                kafka_bootstrap_servers: bootstrap_servers.to_owned(),
                kafka_security: KafkaSecurityArgs::default(),
                kafka_create_topics: true,
                database_url: Some(Secret::new(database_url)),
                database_url_file: None,
                database_password: None,
                database_password_file: None,
                http_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
                kafka_group_id: None,
                instance_id: Some(instance_id.to_owned()),
                kafka_topic_replication_factor: 1,
                kafka_topic_min_insync_replicas: None,
                kafka_session_timeout_ms: Duration::from_secs(6),
                database_pool_size: 10,
                http_max_in_flight: 64,
                http_max_queued: 256,
                http_queue_timeout_ms: Duration::from_secs(1),
                http_limits: ServerLimitsArgs::default(),
                outbox_poll_interval_ms: Duration::from_millis(200),
                kafka_message_timeout_ms: Duration::from_secs(60),
                health_stuck_after_secs: Duration::from_secs(300),
                startup_timeout_secs: Duration::from_secs(30),
                log_format: LogFormat::Text,
            },
        )
        .expect("test settings are valid")
    }
}

/// A duration setting named `*_MS`: a bare whole number of milliseconds, as these settings
/// always took, or a duration with its unit, read by humantime (`1500ms`, `30s`, `2m`).
pub fn millis(value: &str) -> Result<Duration, String> {
    duration(value, Duration::from_millis, "milliseconds")
}

/// A duration setting named `*_SECS`: a bare whole number of seconds, as these settings always
/// took, or a duration with its unit, read by humantime (`90s`, `2m`, `1h 30m`).
pub fn secs(value: &str) -> Result<Duration, String> {
    duration(value, Duration::from_secs, "seconds")
}

fn duration(value: &str, bare: fn(u64) -> Duration, unit: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(number) = value.parse::<u64>() {
        return Ok(bare(number));
    }
    humantime::parse_duration(value).map_err(|err| {
        format!("`{value}`: {err}; expected a whole number of {unit}, or a duration such as 1500ms, 30s or 2m")
    })
}

/// The settings, or else the configuration problem printed as `clap` prints its own errors,
/// and exit with status 2: a service's `main` resolves its settings through this.
pub fn or_exit<C: clap::CommandFactory, T>(resolved: Result<T, String>) -> T {
    resolved.unwrap_or_else(|problem| {
        C::command()
            .error(clap::error::ErrorKind::ArgumentConflict, problem)
            .exit()
    })
}

/// DATABASE_URL (or its file, or the default), with DATABASE_PASSWORD put in if given.
fn database_url(identity: ServiceIdentity, args: &CommonArgs) -> Result<Secret, String> {
    let url = secret::resolve(
        "DATABASE_URL",
        args.database_url.clone(),
        args.database_url_file.as_deref(),
    )?
    .unwrap_or_else(|| {
        Secret::new(format!(
            "postgres://postgres@127.0.0.1:5432/{}",
            identity.database
        ))
    });
    let Some(password) = secret::resolve(
        "DATABASE_PASSWORD",
        args.database_password.clone(),
        args.database_password_file.as_deref(),
    )?
    else {
        return Ok(url);
    };
    let mut parsed =
        url::Url::parse(url.expose()).map_err(|err| format!("DATABASE_URL is not a URL: {err}"))?;
    if parsed.username().is_empty() {
        return Err("DATABASE_PASSWORD is set but DATABASE_URL names no user".to_owned());
    }
    parsed
        .set_password(Some(password.expose()))
        .map_err(|()| "DATABASE_URL cannot take a password".to_owned())?;
    Ok(Secret::new(parsed.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> Result<CommonArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("service").chain(args.iter().copied()))
            .map(|cli| cli.common)
    }

    #[test]
    fn a_bare_number_keeps_the_unit_its_setting_is_named_for() {
        assert_eq!(millis("1500"), Ok(Duration::from_millis(1_500)));
        assert_eq!(secs("30"), Ok(Duration::from_secs(30)));
        assert_eq!(secs(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn a_duration_with_its_unit_is_read_by_humantime() {
        assert_eq!(millis("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(millis("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(secs("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(secs("1500ms"), Ok(Duration::from_millis(1_500)));
    }

    #[test]
    fn a_duration_that_is_neither_is_refused_saying_what_would_do() {
        for wrong in ["soon", "-5", "1.5", "5 parsecs", ""] {
            let err = secs(wrong).expect_err(wrong);
            assert!(err.contains("whole number of seconds"), "{err}");
        }
    }

    #[test]
    fn the_defaults_are_the_durations_they_always_were() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.kafka_session_timeout_ms, Duration::from_secs(6));
        assert_eq!(args.http_queue_timeout_ms, Duration::from_secs(1));
        assert_eq!(args.outbox_poll_interval_ms, Duration::from_millis(500));
        assert_eq!(args.kafka_message_timeout_ms, Duration::from_secs(120));
        assert_eq!(args.health_stuck_after_secs, Duration::from_secs(300));
        assert_eq!(args.startup_timeout_secs, Duration::from_secs(30));
        assert_eq!(
            args.http_limits.resolve(),
            crate::http::ServerLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 512,
            }
        );
    }

    #[test]
    fn every_duration_setting_takes_its_old_number_or_a_duration_with_a_unit() {
        let args = parse(&[
            "--kafka-session-timeout-ms",
            "10000",
            "--outbox-poll-interval-ms",
            "1s",
            "--kafka-message-timeout-ms",
            "3m",
            "--health-stuck-after-secs",
            "600",
            "--startup-timeout-secs",
            "2m",
            "--http-idle-timeout-secs",
            "90s",
        ])
        .unwrap();
        assert_eq!(args.kafka_session_timeout_ms, Duration::from_secs(10));
        assert_eq!(args.outbox_poll_interval_ms, Duration::from_secs(1));
        assert_eq!(args.kafka_message_timeout_ms, Duration::from_secs(180));
        assert_eq!(args.health_stuck_after_secs, Duration::from_secs(600));
        assert_eq!(args.startup_timeout_secs, Duration::from_secs(120));
        assert_eq!(
            args.http_limits.resolve().idle_timeout,
            Duration::from_secs(90)
        );
        let err = parse(&["--startup-timeout-secs", "soon"]).unwrap_err();
        assert!(err.to_string().contains("whole number of seconds"), "{err}");
    }
}

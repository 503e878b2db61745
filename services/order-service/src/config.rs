use std::time::Duration;

use shared_events::config::{CommonArgs, ServiceIdentity, ServiceSettings};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "order-service",
    database: "orders",
    http_port: 8080,
};

/// The Order Service's environment.
#[derive(Debug, clap::Parser)]
#[command(
    name = "order-service",
    about = "Takes orders and publishes order_placed events"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How often the outbox relay looks for unpublished events written by other instances.
    #[arg(long, env = "OUTBOX_POLL_INTERVAL_MS", default_value_t = 500)]
    pub outbox_poll_interval_ms: u64,
    /// How long the producer keeps retrying one event before the relay gives up on the batch
    /// and tries again (Kafka's `delivery.timeout.ms`). Keep it longer than a broker restart:
    /// a message that times out makes librdkafka bump the idempotent producer's epoch.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 120_000)]
    pub kafka_message_timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceSettings,
    pub outbox_poll_interval: Duration,
    pub message_timeout: Duration,
}

impl Config {
    pub fn into_settings(self) -> Settings {
        Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common),
            outbox_poll_interval: Duration::from_millis(self.outbox_poll_interval_ms),
            message_timeout: Duration::from_millis(self.kafka_message_timeout_ms),
        }
    }
}

impl Settings {
    /// Settings for a test: the given service settings and a quick relay.
    pub fn for_test(service: ServiceSettings) -> Self {
        Settings {
            service,
            outbox_poll_interval: Duration::from_millis(200),
            message_timeout: Duration::from_secs(60),
        }
    }
}

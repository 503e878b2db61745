//! Kafka plumbing, written once: topic creation, the idempotent producer, and the
//! at-least-once consumer with retries and a dead-letter topic.

mod admin;
mod assignment;
mod connect;
mod consumer;
pub mod dead_letters;
mod handler;
mod producer;
pub mod security;
mod tail;

pub use admin::ensure_topics;
pub use assignment::{AssignedPartition, Assignment, AssignmentSnapshot};
pub use connect::check_connection;
pub use consumer::{EventConsumer, dead_letter};
pub use handler::{Applied, Decision, Handler, HandlerError, OrderBatch};
pub use producer::{EventProducer, OutgoingRecord};
pub use tail::{is_refused_group_lookup, tail};

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;

/// Settings every client shares.
fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        // Shows up in broker logs and metrics, so an instance can be traced end to end.
        .set("client.id", &settings.client_id)
        // Reconnect within a second once a broker is back (librdkafka waits up to 10 s).
        .set("reconnect.backoff.max.ms", "1000")
        // Send each request at once (TCP_NODELAY). With Nagle's algorithm on, librdkafka's
        // default, a small request written while an earlier one is unacknowledged waits for
        // the peer's delayed ACK, up to 40 ms on Linux: a produce or fetch of a few hundred
        // bytes, every hop of the saga.
        .set("socket.nagle.disable", "true")
        // librdkafka logs through its own callback; surface only what needs attention.
        .set("log_level", "4");
    settings.security.apply(&mut config);
    config
}

/// Creates a client, with an error that names the property at fault but never shows a
/// secret's value (librdkafka's own message quotes the value it refused).
fn create<T: rdkafka::config::FromClientConfig>(
    config: &ClientConfig,
    what: &str,
) -> anyhow::Result<T> {
    config.create().map_err(|err| match err {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            let description = if security::is_sensitive(&key) && !value.is_empty() {
                description.replace(&value, "[redacted]")
            } else {
                description
            };
            anyhow::anyhow!("invalid Kafka {what} configuration: {key}: {description}")
        }
        other => anyhow::anyhow!("cannot create the Kafka {what}: {other}"),
    })
}

/// Runs a blocking librdkafka call (metadata, admin) off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking Kafka call panicked")
}

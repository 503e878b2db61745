use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaSettings;
use crate::topics;

/// Creates `orders` and its dead-letter topic if they do not exist yet.
///
/// Topics are created explicitly rather than relying on broker auto-creation, which would
/// pick the broker's default partition count and replication, and which Tansu lacks. Every
/// service calls this at start-up, so the order in which services start does not matter.
/// Retries until `startup_timeout`, so a service may start a little before its broker.
pub async fn ensure_topics(settings: &KafkaSettings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = super::base_config(settings)
        .create()
        .context("invalid Kafka admin client configuration")?;
    let dead_letters = topics::dead_letter_topic(topics::ORDERS);
    let min_insync = settings.topic_min_insync_replicas.map(|n| n.to_string());
    let wanted: Vec<NewTopic<'_>> = [topics::ORDERS, dead_letters.as_str()]
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                topics::ORDERS_PARTITIONS,
                TopicReplication::Fixed(settings.topic_replication_factor),
            );
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + settings.startup_timeout;
    loop {
        let attempt = admin.create_topics(&wanted, &options).await;
        let failure = match attempt {
            Ok(results) => {
                let failed: Vec<String> = results
                    .into_iter()
                    .filter_map(|result| match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                        Err((topic, code)) => Some(format!("{topic}: {code}")),
                    })
                    .collect();
                if failed.is_empty() {
                    tracing::info!(topics = ?[topics::ORDERS, &dead_letters], "topics ready");
                    return Ok(());
                }
                failed.join(", ")
            }
            Err(err) => err.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "cannot create topics on Kafka at {}: {failure} (is the broker running? \
                 set KAFKA_BOOTSTRAP_SERVERS)",
                settings.bootstrap_servers
            );
        }
        tracing::warn!(error = %failure, "topics not ready yet, retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

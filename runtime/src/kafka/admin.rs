use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::config::KafkaSettings;
use crate::retry::{self, Retryable};
use crate::topics;

/// How long the presence topic keeps heartbeats: one hour.
const PRESENCE_RETENTION_MS: &str = "3600000";

/// Connects to the cluster ([`super::check_connection`]), then makes sure the topics in
/// `uses` exist.
///
/// With `create_topics` (a laptop's broker) it creates every topic of the shop that is
/// missing ([`topics::EVERY`]), explicitly rather than through broker auto-creation, which
/// would pick the broker's default partition count and replication, and which Tansu lacks;
/// every service does this, so the order in which they start does not matter. Without it (a
/// cluster whose admin creates the topics, and where a service may not) it only waits for
/// the topics it uses to appear, and names those still missing when it gives up. Retries
/// ([`retry::startup`]) until `startup_timeout`, so a service may start a little before its
/// broker.
pub async fn ensure_topics(settings: &KafkaSettings, uses: &[&str]) -> anyhow::Result<()> {
    super::check_connection(settings).await?;
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(super::create(
        &super::base_config(settings),
        "admin client",
    )?);
    let names: Vec<String> = if settings.create_topics {
        topics::EVERY.iter().map(|t| (*t).to_owned()).collect()
    } else {
        uses.iter().map(|t| (*t).to_owned()).collect()
    };
    (|| create_missing(&admin, settings, &names))
        .retry(retry::startup(settings.startup_timeout))
        .notify(|failure, backoff| {
            tracing::warn!(error = %failure, ?backoff, "topics not ready yet, retrying");
        })
        .await
        .map_err(|failure| {
            anyhow::anyhow!(
                "topics not ready on Kafka at {}: {failure}",
                settings.bootstrap_servers
            )
        })
}

async fn create_missing(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    settings: &KafkaSettings,
    names: &[String],
) -> Result<(), String> {
    let client = Arc::clone(admin);
    let metadata = super::blocking(move || {
        client
            .inner()
            .fetch_metadata(None, Timeout::After(Duration::from_secs(5)))
    })
    .await
    .map_err(|err| err.to_string())?;
    let existing: HashSet<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let min_insync = settings.topic_min_insync_replicas.map(|n| n.to_string());
    let missing: Vec<NewTopic<'_>> = names
        .iter()
        .filter(|name| !existing.contains(name.as_str()))
        .map(|name| {
            let topic = NewTopic::new(
                name,
                topics::PARTITIONS,
                TopicReplication::Fixed(settings.topic_replication_factor),
            );
            let topic = match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            };
            // Heartbeats matter for seconds; an hour of them is plenty to look back on.
            if name == topics::PRESENCE {
                topic.set("retention.ms", PRESENCE_RETENTION_MS)
            } else {
                topic
            }
        })
        .collect();
    if missing.is_empty() {
        tracing::info!(topics = ?names, "topics ready");
        return Ok(());
    }
    if !settings.create_topics {
        let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
        return Err(format!(
            "missing {} (KAFKA_CREATE_TOPICS=false: the cluster's admin creates them; \
             or the principal may not describe them)",
            names.join(", ")
        ));
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&missing, &options)
        .await
        .map_err(|err| err.to_string())?;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|result| match result {
            Ok(topic) => {
                tracing::info!(topic, partitions = topics::PARTITIONS, "created topic");
                None
            }
            // Another service created it since the metadata was read.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
            Err((topic, code)) => Some(format!("{topic}: {code}")),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join(", "))
    }
}

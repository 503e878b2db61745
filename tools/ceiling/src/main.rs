//! `shop-ceiling`: how fast the broker alone can fan order events out to four consumer groups
//! on this machine. The services can only be as fast as this, so their end-to-end rate is
//! judged against it.
//!
//! ```text
//! shop-ceiling --records 100000                  # table
//! shop-ceiling --records 100000 --json
//! ```
//! One producer with the project's settings (the shared `EventProducer`: idempotent,
//! `acks=all`, `linger.ms` 5) writes real `order_placed` envelopes with their headers to a
//! fresh topic as fast as the broker acknowledges them, while one consumer per group reads
//! them, doing nothing else.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Parser;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Serialize;
use shared_events::config::KafkaSettings;
use shared_events::envelope::headers;
use shared_events::kafka::security::{KafkaSecurity, KafkaSecurityArgs};
use shared_events::kafka::{EventProducer, OutgoingRecord};
use shared_events::{Envelope, OrderLine, OrderPlaced, catalog};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "shop-ceiling",
    about = "Measures the broker's raw fan-out rate: one producer, four consumer groups, order-shaped records",
    long_about = "Measures the broker's raw fan-out rate on this machine: one producer with the \
        project's producer settings (idempotent, acks=all, linger.ms 5) writes N real \
        order_placed envelopes (with their event_type and event_id headers, keyed by order id) \
        to a fresh topic as fast as the broker acknowledges them, while one consumer in each \
        of four groups reads them and does nothing else. The fan-out rate is N divided by the \
        time until the slowest group has all N. The topic is deleted afterwards."
)]
struct Cli {
    /// Kafka brokers to bootstrap from.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// How to connect: TLS, SASL (run it as a principal that may create and delete topics
    /// and join groups: the admin).
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Records to produce.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Consumer groups, each of which must receive every record.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    groups: u32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = shared_events::topics::PARTITIONS)]
    partitions: i32,
    /// Replication factor of the topic (3 on a real cluster, as `orders` has).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Most records sent but not yet acknowledged. Far more than the broker takes in one
    /// request time-out makes requests time out and be resent.
    #[arg(long, default_value_t = 1_000)]
    in_flight: usize,
    /// Extra librdkafka settings for the consumers, e.g. `fetch.min.bytes=65536` (repeatable).
    /// Without any, they use librdkafka's defaults, as the services' consumers do.
    #[arg(long = "consumer-config", value_name = "KEY=VALUE", value_parser = parse_setting)]
    consumer_config: Vec<(String, String)>,
    /// Give up if the groups have not received every record after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    records: u64,
    /// The mean payload size.
    record_bytes: usize,
    partitions: i32,
    /// From the first send to the last acknowledgement.
    produce_seconds: f64,
    produce_per_second: f64,
    /// Sends the broker refused or timed out, and that were sent again.
    resent: u64,
    groups: Vec<GroupReport>,
    /// From the first send until the slowest group had every record.
    fan_out_seconds: f64,
    /// Records per second delivered to every group.
    fan_out_per_second: f64,
}

#[derive(Debug, Serialize)]
struct GroupReport {
    group: String,
    /// From the first send until this group had every record.
    seconds: f64,
    per_second: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let run = Uuid::new_v4().simple().to_string();
    let topic = format!("shop-ceiling-{}", &run[..12]);
    let security = KafkaSecurity::from_args(&cli.kafka_security).map_err(anyhow::Error::msg)?;
    let settings = KafkaSettings {
        bootstrap_servers: cli.bootstrap_servers.clone(),
        security,
        create_topics: false,
        group_id: format!("shop-ceiling-{}", &run[..12]),
        client_id: format!("shop-ceiling-{}", std::process::id()),
        topic_replication_factor: cli.replication_factor,
        topic_min_insync_replicas: None,
        session_timeout: Duration::from_secs(6),
        startup_timeout: Duration::from_secs(30),
    };
    // Connecting first checks the broker is there before anything is created on it.
    let producer = EventProducer::connect(&settings, Duration::from_secs(120)).await?;
    let mut admin_config = ClientConfig::new();
    admin_config.set("bootstrap.servers", &cli.bootstrap_servers);
    settings.security.apply(&mut admin_config);
    let admin: AdminClient<DefaultClientContext> = admin_config
        .create()
        .context("invalid Kafka admin client configuration")?;
    create_topic(&admin, &topic, cli.partitions, cli.replication_factor).await?;
    let result = measure(&cli, &settings, &producer, &topic).await;
    let deleted = admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| {
            r.into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), |(_, c)| Err(c.to_string()))
        });
    if let Err(err) = deleted {
        eprintln!("warning: could not delete topic {topic}: {err}");
    }
    let report = result?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics([&new], &options)
        .await
        .context("cannot create the topic")?
    {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create topic {topic}: {code}"))?;
    }
    Ok(())
}

async fn measure(
    cli: &Cli,
    settings: &KafkaSettings,
    producer: &EventProducer,
    topic: &str,
) -> anyhow::Result<Report> {
    let records: Vec<Record> = (0..cli.records).map(Record::new).collect();
    let record_bytes = records.iter().map(|r| r.payload.len()).sum::<usize>() / records.len();
    let n = cli.records;

    let mut consumers = Vec::new();
    for g in 0..cli.groups {
        let group = format!("{}-group-{}", settings.group_id, g + 1);
        let mut config = ClientConfig::new();
        settings.security.apply(&mut config);
        for (key, value) in &cli.consumer_config {
            config.set(key, value);
        }
        let consumer: StreamConsumer = config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("group.id", &group)
            .set("client.id", format!("{}-{}", settings.client_id, g + 1))
            // The records are written after the groups join; earliest makes sure none is
            // missed whatever the timing.
            .set("auto.offset.reset", "earliest")
            // Nothing resumes from these groups: committing would only add broker work.
            .set("enable.auto.commit", "false")
            .set("log_level", "4")
            .create()
            .context("invalid Kafka consumer configuration")?;
        consumer
            .subscribe(&[topic])
            .context("cannot subscribe to the topic")?;
        consumers.push((group, Arc::new(consumer)));
    }
    // The clock starts at the first send; until then the consumers only need to be polling
    // so that they join their groups.
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut readers = Vec::new();
    for (group, consumer) in &consumers {
        let consumer = Arc::clone(consumer);
        let group = group.clone();
        let mut start = start_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut stream = consumer.stream();
            // Distinct records: a resent record may arrive twice.
            let mut received = HashSet::new();
            while (received.len() as u64) < n {
                match stream.next().await {
                    Some(Ok(message)) => {
                        received.insert(message.key().unwrap_or_default().to_vec());
                    }
                    Some(Err(err)) => return Err(anyhow::anyhow!("{group}: {err}")),
                    None => bail!("{group}: the consumer stopped"),
                }
            }
            let done = Instant::now();
            let started = (*start.wait_for(Option::is_some).await?).expect("set");
            Ok((group, done - started))
        }));
    }
    wait_for_assignments(&consumers, cli.partitions, Duration::from_secs(60)).await?;

    let start = Instant::now();
    let _ = start_tx.send(Some(start));
    let mut pending: Vec<&Record> = records.iter().collect();
    let mut resent = 0u64;
    for attempt in 1..=SEND_ATTEMPTS {
        pending = send_all(producer, topic, &pending, cli.in_flight.max(1)).await;
        if pending.is_empty() {
            break;
        }
        if attempt == SEND_ATTEMPTS {
            bail!(
                "{} of {n} records were not acknowledged after {SEND_ATTEMPTS} attempts",
                pending.len()
            );
        }
        resent += pending.len() as u64;
    }
    let produced = start.elapsed();

    let deadline = Duration::from_secs(cli.timeout_secs);
    let mut groups = Vec::new();
    for reader in readers {
        let remaining = deadline.saturating_sub(start.elapsed());
        groups.push(
            tokio::time::timeout(remaining, reader)
                .await
                .with_context(|| {
                    format!("a group did not receive all {n} records within {deadline:?}")
                })?
                .context("a reader panicked")??,
        );
    }
    let mut report = summarise(n, record_bytes, cli.partitions, produced, groups);
    report.resent = resent;
    Ok(report)
}

/// Sends a record this many times at most, as the relay retries what the broker refused.
const SEND_ATTEMPTS: u32 = 5;

/// Sends `records` with at most `in_flight` awaiting acknowledgement; returns those that failed.
async fn send_all<'a>(
    producer: &EventProducer,
    topic: &str,
    records: &[&'a Record],
    in_flight: usize,
) -> Vec<&'a Record> {
    let sends = futures::stream::iter(records.iter().copied())
        .map(|record| async move {
            let headers: [(&str, &[u8]); 2] = [
                (headers::EVENT_TYPE, OrderPlaced::EVENT_TYPE.as_bytes()),
                (headers::EVENT_ID, record.event_id.as_bytes()),
            ];
            let result = producer
                .send(OutgoingRecord {
                    topic,
                    key: record.key.as_bytes(),
                    payload: &record.payload,
                    headers: &headers,
                })
                .await;
            (record, result)
        })
        .buffer_unordered(in_flight);
    sends
        .filter_map(|(record, result)| async move { result.is_err().then_some(record) })
        .collect()
        .await
}

fn summarise(
    records: u64,
    record_bytes: usize,
    partitions: i32,
    produced: Duration,
    groups: Vec<(String, Duration)>,
) -> Report {
    let rate = |took: Duration| records as f64 / took.as_secs_f64();
    let slowest = groups.iter().map(|g| g.1).max().unwrap_or_default();
    Report {
        records,
        record_bytes,
        partitions,
        produce_seconds: produced.as_secs_f64(),
        produce_per_second: rate(produced),
        resent: 0,
        groups: groups
            .into_iter()
            .map(|(group, took)| GroupReport {
                group,
                seconds: took.as_secs_f64(),
                per_second: rate(took),
            })
            .collect(),
        fan_out_seconds: slowest.as_secs_f64(),
        fan_out_per_second: rate(slowest),
    }
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

/// Waits until each group's consumer holds every partition, so that the measurement does not
/// include joining the group.
async fn wait_for_assignments(
    consumers: &[(String, Arc<StreamConsumer>)],
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for (group, consumer) in consumers {
        loop {
            let held = consumer.assignment().map_or(0, |a| a.count());
            if held >= partitions as usize {
                break;
            }
            if Instant::now() >= deadline {
                bail!("{group} holds {held} of {partitions} partitions after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// One record as the Order Service's relay writes it.
struct Record {
    key: String,
    event_id: String,
    payload: Vec<u8>,
}

impl Record {
    /// An `order_placed` envelope for an order of one or two catalog items, as orders from
    /// `shop-load` are.
    fn new(i: u64) -> Self {
        let products: Vec<_> = catalog::PRODUCTS
            .iter()
            .filter(|p| p.initial_stock >= 1_000)
            .collect();
        let lines = if i.is_multiple_of(2) { 1 } else { 2 };
        let items: Vec<OrderLine> = (0..lines)
            .map(|k| {
                let product = products[(i as usize + k) % products.len()];
                OrderLine {
                    sku: product.sku.to_owned(),
                    quantity: 1,
                    unit_price_cents: product.unit_price_cents,
                }
            })
            .collect();
        let order_id = Uuid::new_v4();
        let customer = i % 1_000;
        let order = OrderPlaced {
            order_id,
            customer_id: format!("load-{customer}"),
            customer_email: format!("load+{customer}@example.com"),
            total_cents: items.iter().map(|l| l.unit_price_cents).sum(),
            items,
            currency: catalog::CURRENCY.to_owned(),
        };
        let envelope = Envelope::order_placed(order, Utc::now());
        Record {
            key: order_id.to_string(),
            event_id: envelope.meta.event_id.to_string(),
            payload: envelope.to_json(),
        }
    }
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "broker fan-out ceiling: {} records of {} bytes, {} partitions, {} groups\n",
        r.records,
        r.record_bytes,
        r.partitions,
        r.groups.len()
    );
    out += &format!(
        "  {:<28} {:>9.2}s {:>12.0} records/s{}\n",
        "produce (all acknowledged)",
        r.produce_seconds,
        r.produce_per_second,
        if r.resent > 0 {
            format!(" ({} resent)", r.resent)
        } else {
            String::new()
        }
    );
    for g in &r.groups {
        out += &format!(
            "  {:<28} {:>9.2}s {:>12.0} records/s\n",
            g.group, g.seconds, g.per_second
        );
    }
    out += &format!(
        "  {:<28} {:>9.2}s {:>12.0} records/s to every group\n",
        "fan-out", r.fan_out_seconds, r.fan_out_per_second
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn consumer_settings_are_key_value_pairs() {
        assert_eq!(
            parse_setting("fetch.min.bytes=65536"),
            Ok(("fetch.min.bytes".into(), "65536".into()))
        );
        assert!(parse_setting("fetch.min.bytes").is_err());
        assert!(parse_setting("=1").is_err());
    }

    #[test]
    fn records_are_valid_order_placed_envelopes_of_a_real_orders_size() {
        for i in 0..4 {
            let record = Record::new(i);
            let decoded = Envelope::decode(Some(&record.payload)).expect("a valid event");
            assert_eq!(decoded.meta.order_id.to_string(), record.key);
            assert_eq!(decoded.meta.event_id.to_string(), record.event_id);
            assert!(
                (350..550).contains(&record.payload.len()),
                "{} bytes",
                record.payload.len()
            );
        }
    }

    #[test]
    fn every_second_record_orders_two_items_as_shop_load_does() {
        let items = |i| match Envelope::decode(Some(&Record::new(i).payload))
            .unwrap()
            .data
        {
            shared_events::Event::OrderPlaced(order) => order.items.len(),
            other => panic!("not an order_placed: {other:?}"),
        };
        assert_eq!((items(0), items(1)), (1, 2));
    }

    #[test]
    fn the_fan_out_rate_is_set_by_the_slowest_group() {
        let report = summarise(
            1_000,
            300,
            6,
            Duration::from_millis(500),
            vec![
                ("a".into(), Duration::from_secs(1)),
                ("b".into(), Duration::from_secs(2)),
            ],
        );
        assert_eq!(report.produce_per_second, 2_000.0);
        assert_eq!(report.groups[0].per_second, 1_000.0);
        assert_eq!(report.fan_out_seconds, 2.0);
        assert_eq!(report.fan_out_per_second, 500.0);
        let text = table(&report);
        assert!(text.contains("500 records/s to every group"), "{text}");
    }
}

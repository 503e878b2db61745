//! `shop-ceiling`: how fast the broker alone can carry the shop's traffic on this machine. The
//! services can only be as fast as this, so their end-to-end rate is judged against it.
//!
//! ```text
//! shop-ceiling --records 100000                  # fan-out: order_placed to four groups
//! shop-ceiling --shape saga --records 20000      # every record of 20,000 confirmed orders
//! shop-ceiling --records 100000 --json
//! ```
//! One producer with the project's settings (the shared `EventProducer`: idempotent,
//! `acks=all`) writes real envelopes with their headers to fresh topics as fast as the broker
//! acknowledges them, while one consumer per group reads them, doing nothing else.
//!
//! `--shape saga` sends, per order, what the services send for a confirmed order:
//! `order_placed` and `order_confirmed` on an orders topic read by four groups, `stock_reserved`
//! on an inventory topic, `payment_authorized` and `payment_captured` on a payments topic, those
//! three read by one more group (the Order Service's): 5 records produced and 11 delivered per
//! order. Its figure, orders per second, is the most the services could settle here.

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
use shop_runtime::config::KafkaSettings;
use shop_runtime::envelope::headers;
use shop_runtime::events::EventData;
use shop_runtime::kafka::security::{KafkaSecurity, KafkaSecurityArgs};
use shop_runtime::kafka::{EventProducer, OutgoingRecord};
use shop_runtime::retry::{self, Retryable};
use shop_runtime::{
    Envelope, OrderConfirmed, OrderLine, OrderPlaced, PaymentAuthorized, PaymentCaptured,
    StockReserved, catalog,
};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "shop-ceiling",
    about = "Measures the broker's raw rate for the shop's traffic: one producer, several consumer groups, real events",
    long_about = "Measures the broker's raw rate on this machine: one producer with the \
        project's producer settings (idempotent, acks=all) writes real envelopes (with their \
        event_type and event_id headers, keyed by order id) to fresh topics as fast as the \
        broker acknowledges them, while one consumer per group reads them and does nothing \
        else. --shape fan-out (the default): N order_placed to one topic read by four groups; \
        the rate is N divided by the time until the slowest group has all N. --shape saga: \
        for each of N orders, the five records of a confirmed order's saga on three topics, \
        read by the four groups of the orders topic and by the Order Service's group of the \
        other two; the rate is N orders divided by the time until the slowest group has all \
        its records. The topics are deleted afterwards."
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
    /// Records to produce (`--shape saga`: orders, of five records each).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// The traffic: `fan-out` (order_placed to one topic) or `saga` (every record of a
    /// confirmed order, on three topics).
    #[arg(long, value_enum, default_value_t = Shape::FanOut)]
    shape: Shape,
    /// Consumer groups reading the orders topic, each of which must receive every record.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    groups: u32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = shop_runtime::topics::PARTITIONS)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Shape {
    FanOut,
    Saga,
}

#[derive(Debug, Serialize)]
struct Report {
    shape: Shape,
    /// Records produced.
    records: u64,
    /// `--shape saga`: the orders whose records were produced.
    orders: Option<u64>,
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
    /// `--shape fan-out`: records per second delivered to every group.
    fan_out_per_second: Option<f64>,
    /// `--shape saga`: orders per second whose every record reached every group reading it.
    orders_per_second: Option<f64>,
}

#[derive(Debug, Serialize)]
struct GroupReport {
    group: String,
    /// The records this group had to receive.
    records: u64,
    /// From the first send until this group had every record.
    seconds: f64,
    per_second: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let run = Uuid::new_v4().simple().to_string();
    let topics: Vec<String> = match cli.shape {
        Shape::FanOut => vec![format!("shop-ceiling-{}", &run[..12])],
        Shape::Saga => ["orders", "inventory", "payments"]
            .iter()
            .map(|t| format!("shop-ceiling-{}-{t}", &run[..12]))
            .collect(),
    };
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
    for topic in &topics {
        create_topic(&admin, topic, cli.partitions, cli.replication_factor).await?;
    }
    let result = measure(&cli, &settings, &producer, &topics).await;
    // One at a time: Tansu answers a request to delete several with an error for all but
    // the first.
    for topic in &topics {
        let deleted = admin
            .delete_topics(&[topic.as_str()], &AdminOptions::new())
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

/// A consumer group of the run: the topics it reads and how many records it must receive.
struct Reader {
    group: String,
    topics: Vec<usize>,
    expected: u64,
}

/// The groups of a run: `groups` reading the orders topic and, for the saga, the Order
/// Service's group reading the answers.
fn readers(cli: &Cli, group_prefix: &str) -> Vec<Reader> {
    let per_order_on_orders = match cli.shape {
        Shape::FanOut => 1,
        Shape::Saga => 2,
    };
    let mut readers: Vec<Reader> = (0..cli.groups)
        .map(|g| Reader {
            group: format!("{group_prefix}-group-{}", g + 1),
            topics: vec![0],
            expected: cli.records * per_order_on_orders,
        })
        .collect();
    if cli.shape == Shape::Saga {
        readers.push(Reader {
            group: format!("{group_prefix}-answers"),
            topics: vec![1, 2],
            expected: cli.records * 3,
        });
    }
    readers
}

async fn measure(
    cli: &Cli,
    settings: &KafkaSettings,
    producer: &EventProducer,
    topics: &[String],
) -> anyhow::Result<Report> {
    let records: Vec<Record> = match cli.shape {
        Shape::FanOut => (0..cli.records).map(Record::placed).collect(),
        Shape::Saga => (0..cli.records).flat_map(Record::saga).collect(),
    };
    let record_bytes = records.iter().map(|r| r.payload.len()).sum::<usize>() / records.len();
    let plan = readers(cli, &settings.group_id);

    let mut consumers = Vec::new();
    for (g, reader) in plan.iter().enumerate() {
        let mut config = ClientConfig::new();
        settings.security.apply(&mut config);
        for (key, value) in &cli.consumer_config {
            config.set(key, value);
        }
        let consumer: StreamConsumer = config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("group.id", &reader.group)
            .set("client.id", format!("{}-{}", settings.client_id, g + 1))
            // The records are written after the groups join; earliest makes sure none is
            // missed whatever the timing.
            .set("auto.offset.reset", "earliest")
            // Nothing resumes from these groups: committing would only add broker work.
            .set("enable.auto.commit", "false")
            // As the services' clients: each request sent at once.
            .set("socket.nagle.disable", "true")
            .set("log_level", "4")
            .create()
            .context("invalid Kafka consumer configuration")?;
        let subscribed: Vec<&str> = reader.topics.iter().map(|&t| topics[t].as_str()).collect();
        consumer
            .subscribe(&subscribed)
            .context("cannot subscribe to the topics")?;
        consumers.push((
            reader.group.clone(),
            Arc::new(consumer),
            cli.partitions as usize * reader.topics.len(),
        ));
    }
    // The clock starts at the first send; until then the consumers only need to be polling
    // so that they join their groups.
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::new();
    for ((group, consumer, _), reader) in consumers.iter().zip(&plan) {
        let consumer = Arc::clone(consumer);
        let group = group.clone();
        let expected = reader.expected;
        let mut start = start_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = consumer.stream();
            // Distinct records (by event id): a resent record may arrive twice.
            let mut received = HashSet::new();
            while (received.len() as u64) < expected {
                match stream.next().await {
                    Some(Ok(message)) => {
                        received.insert(event_id_of(&message));
                    }
                    Some(Err(err)) => return Err(anyhow::anyhow!("{group}: {err}")),
                    None => bail!("{group}: the consumer stopped"),
                }
            }
            let done = Instant::now();
            let started = (*start.wait_for(Option::is_some).await?).expect("set");
            Ok((group, expected, done - started))
        }));
    }
    wait_for_assignments(&consumers, Duration::from_secs(60)).await?;

    let start = Instant::now();
    let _ = start_tx.send(Some(start));
    let mut pending: Vec<&Record> = records.iter().collect();
    let mut resent = 0u64;
    for attempt in 1..=SEND_ATTEMPTS {
        pending = send_all(producer, topics, &pending, cli.in_flight.max(1)).await;
        if pending.is_empty() {
            break;
        }
        if attempt == SEND_ATTEMPTS {
            bail!(
                "{} of {} records were not acknowledged after {SEND_ATTEMPTS} attempts",
                pending.len(),
                records.len()
            );
        }
        resent += pending.len() as u64;
    }
    let produced = start.elapsed();

    let deadline = Duration::from_secs(cli.timeout_secs);
    let mut groups = Vec::new();
    for task in tasks {
        let remaining = deadline.saturating_sub(start.elapsed());
        groups.push(
            tokio::time::timeout(remaining, task)
                .await
                .with_context(|| {
                    format!("a group did not receive all its records within {deadline:?}")
                })?
                .context("a reader panicked")??,
        );
    }
    let mut report = summarise(
        cli.shape,
        cli.records,
        records.len() as u64,
        record_bytes,
        cli.partitions,
        produced,
        groups,
    );
    report.resent = resent;
    Ok(report)
}

/// The record's `event_id` header: what tells a resent copy from another record.
fn event_id_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Vec<u8> {
    use rdkafka::message::Headers;
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == headers::EVENT_ID))
        .and_then(|h| h.value)
        .unwrap_or_default()
        .to_vec()
}

/// Sends a record this many times at most, as the relay retries what the broker refused.
const SEND_ATTEMPTS: u32 = 5;

/// Sends `records` with at most `in_flight` awaiting acknowledgement; returns those that failed.
async fn send_all<'a>(
    producer: &EventProducer,
    topics: &[String],
    records: &[&'a Record],
    in_flight: usize,
) -> Vec<&'a Record> {
    let sends = futures::stream::iter(records.iter().copied())
        .map(|record| async move {
            let headers: [(&str, &[u8]); 2] = [
                (headers::EVENT_TYPE, record.event_type.as_bytes()),
                (headers::EVENT_ID, record.event_id.as_bytes()),
            ];
            let result = producer
                .send(OutgoingRecord {
                    topic: &topics[record.topic],
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
    shape: Shape,
    orders: u64,
    records: u64,
    record_bytes: usize,
    partitions: i32,
    produced: Duration,
    groups: Vec<(String, u64, Duration)>,
) -> Report {
    let rate = |n: u64, took: Duration| n as f64 / took.as_secs_f64();
    let slowest = groups.iter().map(|g| g.2).max().unwrap_or_default();
    Report {
        shape,
        records,
        orders: (shape == Shape::Saga).then_some(orders),
        record_bytes,
        partitions,
        produce_seconds: produced.as_secs_f64(),
        produce_per_second: rate(records, produced),
        resent: 0,
        groups: groups
            .into_iter()
            .map(|(group, expected, took)| GroupReport {
                group,
                records: expected,
                seconds: took.as_secs_f64(),
                per_second: rate(expected, took),
            })
            .collect(),
        fan_out_seconds: slowest.as_secs_f64(),
        fan_out_per_second: (shape == Shape::FanOut).then(|| rate(records, slowest)),
        orders_per_second: (shape == Shape::Saga).then(|| rate(orders, slowest)),
    }
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

/// Waits until each group's consumer holds every partition, so that the measurement does not
/// include joining the group; polls as a service waits at start-up ([`retry::startup`]).
async fn wait_for_assignments(
    consumers: &[(String, Arc<StreamConsumer>, usize)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let all_held = || async {
        for (group, consumer, partitions) in consumers {
            let held = consumer.assignment().map_or(0, |a| a.count());
            if held < *partitions {
                return Err(format!("{group} holds {held} of {partitions} partitions"));
            }
        }
        Ok(())
    };
    all_held
        .retry(retry::startup(timeout))
        .await
        .map_err(|missing| anyhow::anyhow!("{missing} after {timeout:?}"))
}

/// One record as a service's relay writes it.
struct Record {
    /// Index into the run's topics: orders, inventory, payments.
    topic: usize,
    key: String,
    event_type: &'static str,
    event_id: String,
    payload: Vec<u8>,
}

impl Record {
    fn of<T: EventData>(topic: usize, envelope: &Envelope<T>) -> Self {
        Record {
            topic,
            key: envelope.meta.order_id.to_string(),
            event_type: T::EVENT_TYPE,
            event_id: envelope.meta.event_id.to_string(),
            payload: envelope.to_json(),
        }
    }

    /// An `order_placed` envelope for an order of one or two catalog items, as orders from
    /// `shop-load` are.
    fn placed(i: u64) -> Self {
        Record::of(0, &Envelope::order_placed(order(i), Utc::now()))
    }

    /// The five records of order `i`'s saga when it is confirmed, in the order the services
    /// send them.
    fn saga(i: u64) -> [Self; 5] {
        let order = order(i);
        let now = Utc::now();
        let order_id = order.order_id;
        let paid = |amount_cents, currency: &str| (amount_cents, currency.to_owned());
        let (amount_cents, currency) = paid(order.total_cents, &order.currency);
        let confirmed = OrderConfirmed {
            order_id,
            customer_id: order.customer_id.clone(),
            customer_email: order.customer_email.clone(),
            items: order.items.clone(),
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            placed_at: now,
        };
        [
            Record::of(0, &Envelope::order_placed(order, now)),
            Record::of(1, &Envelope::new(StockReserved { order_id }, now)),
            Record::of(
                2,
                &Envelope::new(
                    PaymentAuthorized {
                        order_id,
                        amount_cents,
                        currency: currency.clone(),
                    },
                    now,
                ),
            ),
            Record::of(0, &Envelope::new(confirmed, now)),
            Record::of(
                2,
                &Envelope::new(
                    PaymentCaptured {
                        order_id,
                        amount_cents,
                        currency,
                    },
                    now,
                ),
            ),
        ]
    }
}

/// Order `i`: one or two catalog items, every second order two, as `shop-load` orders.
fn order(i: u64) -> OrderPlaced {
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
    let customer = i % 1_000;
    OrderPlaced {
        order_id: Uuid::new_v4(),
        customer_id: format!("load-{customer}"),
        customer_email: format!("load+{customer}@example.com"),
        total_cents: items.iter().map(|l| l.unit_price_cents).sum(),
        items,
        currency: catalog::CURRENCY.to_owned(),
    }
}

fn table(r: &Report) -> String {
    let mut out = match r.orders {
        None => format!(
            "broker fan-out ceiling: {} records of {} bytes, {} partitions, {} groups\n",
            r.records,
            r.record_bytes,
            r.partitions,
            r.groups.len()
        ),
        Some(orders) => format!(
            "broker saga ceiling: {orders} orders, {} records of {} bytes on 3 topics of {} \
             partitions, {} groups\n",
            r.records,
            r.record_bytes,
            r.partitions,
            r.groups.len()
        ),
    };
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
    if let Some(rate) = r.fan_out_per_second {
        out += &format!(
            "  {:<28} {:>9.2}s {:>12.0} records/s to every group\n",
            "fan-out", r.fan_out_seconds, rate
        );
    }
    if let Some(rate) = r.orders_per_second {
        out += &format!(
            "  {:<28} {:>9.2}s {:>12.0} orders/s, every record to every group reading it\n",
            "saga", r.fan_out_seconds, rate
        );
    }
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
            let record = Record::placed(i);
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
        let items = |i| match Envelope::decode(Some(&Record::placed(i).payload))
            .unwrap()
            .data
        {
            shop_runtime::Event::OrderPlaced(order) => order.items.len(),
            other => panic!("not an order_placed: {other:?}"),
        };
        assert_eq!((items(0), items(1)), (1, 2));
    }

    #[test]
    fn the_fan_out_rate_is_set_by_the_slowest_group() {
        let report = summarise(
            Shape::FanOut,
            1_000,
            1_000,
            300,
            6,
            Duration::from_millis(500),
            vec![
                ("a".into(), 1_000, Duration::from_secs(1)),
                ("b".into(), 1_000, Duration::from_secs(2)),
            ],
        );
        assert_eq!(report.produce_per_second, 2_000.0);
        assert_eq!(report.groups[0].per_second, 1_000.0);
        assert_eq!(report.fan_out_seconds, 2.0);
        assert_eq!(report.fan_out_per_second, Some(500.0));
        assert_eq!(report.orders_per_second, None);
        let text = table(&report);
        assert!(text.contains("500 records/s to every group"), "{text}");
    }

    #[test]
    fn a_saga_sends_what_the_services_send_for_a_confirmed_order() {
        let records = Record::saga(1);
        let types: Vec<_> = records.iter().map(|r| (r.topic, r.event_type)).collect();
        assert_eq!(
            types,
            [
                (0, "order_placed"),
                (1, "stock_reserved"),
                (2, "payment_authorized"),
                (0, "order_confirmed"),
                (2, "payment_captured"),
            ]
        );
        for record in &records {
            let decoded = Envelope::decode(Some(&record.payload)).expect("a valid event");
            assert_eq!(decoded.meta.order_id.to_string(), records[0].key);
            assert_eq!(record.key, records[0].key, "keyed by the order");
        }
    }

    #[test]
    fn the_saga_rate_counts_orders_by_the_slowest_group_of_five() {
        let cli = Cli::parse_from(["shop-ceiling", "--shape", "saga", "--records", "1000"]);
        let plan = readers(&cli, "g");
        let expected: Vec<_> = plan
            .iter()
            .map(|r| (r.topics.clone(), r.expected))
            .collect();
        assert_eq!(
            expected,
            [
                (vec![0], 2_000),
                (vec![0], 2_000),
                (vec![0], 2_000),
                (vec![0], 2_000),
                (vec![1, 2], 3_000)
            ]
        );
        let report = summarise(
            Shape::Saga,
            1_000,
            5_000,
            300,
            6,
            Duration::from_secs(1),
            vec![
                ("a".into(), 2_000, Duration::from_secs(1)),
                ("answers".into(), 3_000, Duration::from_secs(4)),
            ],
        );
        assert_eq!(report.orders_per_second, Some(250.0));
        assert_eq!(report.fan_out_per_second, None);
        assert!(
            table(&report).contains("250 orders/s"),
            "{}",
            table(&report)
        );
    }
}

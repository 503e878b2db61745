//! `shop-dlt`: what is parked on the dead-letter topic, and putting it back after a fix.
//!
//! ```text
//! shop-dlt list                               # every parked message with its reason
//! shop-dlt replay 0:12 3:4                    # re-publish these (partition:offset on orders.dlt)
//! shop-dlt replay --all --service email-service
//! ```
//! A message that failed in several services is parked once per service; replay publishes
//! each original message once. Services that handled it already recognise its event id.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use shared_events::config::KafkaSettings;
use shared_events::kafka::dead_letters::{self, DeadLetter};
use shared_events::kafka::{EventProducer, dead_letter};
use shared_events::topics;

#[derive(Parser)]
#[command(
    name = "shop-dlt",
    about = "Lists and replays messages parked on a dead-letter topic"
)]
struct Cli {
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_servers: String,
    /// The dead-letter topic [default: orders.dlt].
    #[arg(long, global = true)]
    topic: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints every parked message: where it is, where it came from, who parked it and why.
    List,
    /// Re-publishes parked messages to their original topic.
    Replay {
        /// Messages to replay, as PARTITION:OFFSET on the dead-letter topic.
        #[arg(required_unless_present = "all")]
        messages: Vec<String>,
        /// Replay every parked message (narrowed by --service and --kind).
        #[arg(long, conflicts_with = "messages")]
        all: bool,
        /// Only messages parked by this service (consumer group).
        #[arg(long)]
        service: Option<String>,
        /// Only messages with this error kind, e.g. retries_exhausted.
        #[arg(long)]
        kind: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = KafkaSettings {
        bootstrap_servers: cli.bootstrap_servers,
        group_id: "shop-dlt".to_owned(),
        client_id: format!("shop-dlt-{}", std::process::id()),
        topic_replication_factor: 1,
        topic_min_insync_replicas: None,
        session_timeout: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(10),
    };
    let topic = cli
        .topic
        .unwrap_or_else(|| topics::dead_letter_topic(topics::ORDERS));
    let letters = dead_letters::read_all(&settings, &topic).await?;
    match cli.command {
        Command::List => list(&topic, &letters),
        Command::Replay {
            messages,
            all,
            service,
            kind,
        } => {
            let chosen = choose(
                &letters,
                &messages,
                all,
                service.as_deref(),
                kind.as_deref(),
            )?;
            let producer = EventProducer::connect(&settings, Duration::from_secs(30)).await?;
            for letter in &chosen {
                let (partition, offset) = dead_letters::replay(&producer, letter).await?;
                let (original, _, _) = letter.origin().context("no origin")?;
                println!(
                    "replayed {topic} {}:{} -> {original} {partition}:{offset}",
                    letter.partition, letter.offset
                );
            }
            producer.flush(Duration::from_secs(10)).await;
            println!("{} message(s) replayed", chosen.len());
        }
    }
    Ok(())
}

fn list(topic: &str, letters: &[DeadLetter]) {
    println!("{} message(s) parked on {topic}", letters.len());
    for letter in letters {
        let origin = letter
            .origin()
            .map(|(t, p, o)| format!("{t} {p}:{o}"))
            .unwrap_or_else(|| "unknown origin".to_owned());
        println!(
            "{}:{}  from {origin}  by {}  [{}] after {} attempt(s): {}",
            letter.partition,
            letter.offset,
            letter.header(dead_letter::SERVICE).unwrap_or("?"),
            letter.header(dead_letter::ERROR_KIND).unwrap_or("?"),
            letter.header(dead_letter::ATTEMPTS).unwrap_or("?"),
            letter.header(dead_letter::ERROR).unwrap_or("?"),
        );
    }
}

/// The letters to replay, each original message once.
fn choose<'a>(
    letters: &'a [DeadLetter],
    wanted: &[String],
    all: bool,
    service: Option<&str>,
    kind: Option<&str>,
) -> anyhow::Result<Vec<&'a DeadLetter>> {
    let mut positions = HashSet::new();
    for position in wanted {
        let (partition, offset) = position
            .split_once(':')
            .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)))
            .with_context(|| format!("{position}: expected PARTITION:OFFSET, e.g. 0:12"))?;
        if !letters
            .iter()
            .any(|l| (l.partition, l.offset) == (partition, offset))
        {
            bail!("{position}: no parked message there (see `shop-dlt list`)");
        }
        positions.insert((partition, offset));
    }
    let mut origins = HashSet::new();
    Ok(letters
        .iter()
        .filter(|l| all || positions.contains(&(l.partition, l.offset)))
        .filter(|l| service.is_none_or(|s| l.header(dead_letter::SERVICE) == Some(s)))
        .filter(|l| kind.is_none_or(|k| l.header(dead_letter::ERROR_KIND) == Some(k)))
        .filter(|l| origins.insert(l.origin()))
        .collect())
}

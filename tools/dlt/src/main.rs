//! `shop-dlt`: what is parked on the dead-letter topics, and putting it back after a fix.
//!
//! ```text
//! shop-dlt list                                 # every dead-letter topic: orders.dlt, inventory.dlt, payments.dlt
//! shop-dlt list --topic payments.dlt            # just one
//! shop-dlt replay orders.dlt:0:12 payments.dlt:3:4
//! shop-dlt replay --topic orders.dlt 0:12 3:4   # positions on the one topic named
//! shop-dlt replay --all --service email-service
//! ```
//! Each topic has its dead-letter topic, `<topic>.dlt`. A message that failed in several
//! services is parked once per service; replay publishes each original message once, to the
//! topic it came from. Services that handled it already recognise its event id.
//!
//! Each replay is recorded on the dead-letter topic (a marker naming the parked message and
//! where it went), so `list` shows what was replayed and a repeated `replay --all` replays
//! nothing; `--again` replays a message a second time on purpose.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use shop_runtime::config::KafkaSettings;
use shop_runtime::kafka::dead_letters::{self, DeadLetter};
use shop_runtime::kafka::security::{KafkaSecurity, KafkaSecurityArgs};
use shop_runtime::kafka::{EventProducer, dead_letter};
use shop_runtime::topics;

#[derive(Parser)]
#[command(
    name = "shop-dlt",
    about = "Lists and replays messages parked on the dead-letter topics",
    long_about = "Lists and replays messages parked on the dead-letter topics. Every topic has \
        one, named <topic>.dlt (orders.dlt, inventory.dlt, payments.dlt). Without --topic, \
        `list` shows them all and `replay --all` replays from them all; a message is named \
        TOPIC:PARTITION:OFFSET on its dead-letter topic, as `list` prints it."
)]
struct Cli {
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_servers: String,
    /// How to connect: TLS, SASL (as the shop-dlt principal, which may read the dead-letter
    /// topics and write their original topics).
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Only this dead-letter topic, e.g. payments.dlt [default: every one].
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
        /// Messages to replay, as TOPIC:PARTITION:OFFSET on the dead-letter topic (e.g.
        /// orders.dlt:0:12), or PARTITION:OFFSET on the one named by --topic.
        #[arg(required_unless_present = "all")]
        messages: Vec<String>,
        /// Replay every parked message (narrowed by --topic, --service and --kind).
        #[arg(long, conflicts_with = "messages")]
        all: bool,
        /// Only messages parked by this service (consumer group).
        #[arg(long)]
        service: Option<String>,
        /// Only messages with this error kind, e.g. retries_exhausted.
        #[arg(long)]
        kind: Option<String>,
        /// Replay messages that were replayed before, too [default: they are skipped by
        /// --all and refused when named].
        #[arg(long)]
        again: bool,
    },
}

/// A message as it sits on one dead-letter topic.
struct Parked {
    topic: String,
    letter: DeadLetter,
}

impl Parked {
    /// How `list` names it and `replay` takes it.
    fn position(&self) -> String {
        format!(
            "{}:{}:{}",
            self.topic, self.letter.partition, self.letter.offset
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let security = KafkaSecurity::from_args(&cli.kafka_security).map_err(anyhow::Error::msg)?;
    let settings = KafkaSettings {
        bootstrap_servers: cli.bootstrap_servers,
        security,
        create_topics: false,
        group_id: "shop-dlt".to_owned(),
        client_id: format!("shop-dlt-{}", std::process::id()),
        topic_replication_factor: 1,
        topic_min_insync_replicas: None,
        session_timeout: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(10),
    };
    // A wrong password or certificate is named here, not found later as a read timing out.
    shop_runtime::kafka::check_connection(&settings).await?;
    let wanted = match &cli.command {
        Command::Replay { messages, .. } => messages
            .iter()
            .map(|m| parse_position(m, cli.topic.as_deref()))
            .collect::<anyhow::Result<Vec<_>>>()?,
        Command::List => Vec::new(),
    };
    // Only the topics needed: those named, or else every one.
    let dead_letter_topics = match &cli.topic {
        Some(topic) => vec![checked_topic(topic)?],
        None if !wanted.is_empty() => {
            let mut named: Vec<String> = Vec::new();
            for (topic, _, _) in &wanted {
                if !named.contains(topic) {
                    named.push(checked_topic(topic)?);
                }
            }
            named
        }
        None => all_dead_letter_topics(),
    };
    let mut parked = Vec::new();
    for topic in &dead_letter_topics {
        let letters = dead_letters::read_all(&settings, topic)
            .await
            .with_context(|| format!("cannot read {topic}"))?;
        parked.extend(letters.into_iter().map(|letter| Parked {
            topic: topic.clone(),
            letter,
        }));
    }
    match cli.command {
        Command::List => {
            for topic in &dead_letter_topics {
                list(topic, &parked);
            }
        }
        Command::Replay {
            all,
            service,
            kind,
            again,
            ..
        } => {
            let filter = Filter {
                all,
                service: service.as_deref(),
                kind: kind.as_deref(),
                again,
            };
            let chosen = choose(&parked, &wanted, &filter)?;
            let producer = EventProducer::connect(&settings, Duration::from_secs(30)).await?;
            for one in &chosen {
                let (partition, offset) = dead_letters::replay(&producer, &one.letter).await?;
                let (original, _, _) = one.letter.origin().context("no origin")?;
                let to = format!("{original}:{partition}:{offset}");
                // Every parked copy of this message (one per service that parked it) was
                // just replayed with it.
                for copy in parked
                    .iter()
                    .filter(|p| p.letter.origin() == one.letter.origin())
                {
                    dead_letters::mark_replayed(&producer, &copy.topic, &copy.letter, &to).await?;
                }
                println!("replayed {} -> {to}", one.position());
            }
            producer.flush(Duration::from_secs(10)).await;
            println!("{} message(s) replayed", chosen.len());
            let skipped = parked
                .iter()
                .filter(|p| filter.matches(p) && p.letter.replayed_to.is_some())
                .count();
            if all && !again && skipped > 0 {
                println!("{skipped} replayed before and skipped (--again replays them)");
            }
        }
    }
    Ok(())
}

fn all_dead_letter_topics() -> Vec<String> {
    topics::ALL
        .iter()
        .map(|t| topics::dead_letter_topic(t))
        .collect()
}

/// A `--topic` must be a dead-letter topic: listing `orders` itself would read every order,
/// and nothing on it could be replayed.
fn checked_topic(topic: &str) -> anyhow::Result<String> {
    if topics::ALL.contains(&topic) {
        bail!(
            "{topic} is not a dead-letter topic; its dead letters are on {}",
            topics::dead_letter_topic(topic)
        );
    }
    Ok(topic.to_owned())
}

fn list(topic: &str, parked: &[Parked]) {
    let on_topic: Vec<&Parked> = parked.iter().filter(|p| p.topic == topic).collect();
    println!("{} message(s) parked on {topic}", on_topic.len());
    for one in on_topic {
        let letter = &one.letter;
        let origin = letter
            .origin()
            .map(|(t, p, o)| format!("{t} {p}:{o}"))
            .unwrap_or_else(|| "unknown origin".to_owned());
        let replayed = letter
            .replayed_to
            .as_ref()
            .map(|to| format!("  replayed -> {to}"))
            .unwrap_or_default();
        println!(
            "{}  from {origin}  by {}  [{}] after {} attempt(s): {}{replayed}",
            one.position(),
            letter.header(dead_letter::SERVICE).unwrap_or("?"),
            letter.header(dead_letter::ERROR_KIND).unwrap_or("?"),
            letter.header(dead_letter::ATTEMPTS).unwrap_or("?"),
            letter.header(dead_letter::ERROR).unwrap_or("?"),
        );
    }
}

/// `TOPIC:PARTITION:OFFSET`, or `PARTITION:OFFSET` on `--topic`.
fn parse_position(position: &str, topic: Option<&str>) -> anyhow::Result<(String, i32, i64)> {
    let mut parts = position.rsplitn(3, ':');
    let (offset, partition, named) = (parts.next(), parts.next(), parts.next());
    let numbers = partition
        .zip(offset)
        .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)));
    let Some((partition, offset)) = numbers else {
        bail!("{position}: expected TOPIC:PARTITION:OFFSET, e.g. orders.dlt:0:12");
    };
    let topic = match (named, topic) {
        (Some(named), Some(topic)) if named != topic => {
            bail!("{position}: not on {topic}, the topic named by --topic")
        }
        (Some(named), _) => named,
        (None, Some(topic)) => topic,
        (None, None) => bail!(
            "{position}: on which dead-letter topic? Write it as TOPIC:PARTITION:OFFSET \
             (e.g. orders.dlt:{position}), or name the topic with --topic"
        ),
    };
    Ok((topic.to_owned(), partition, offset))
}

/// Which parked messages `replay` takes besides those named.
struct Filter<'a> {
    all: bool,
    service: Option<&'a str>,
    kind: Option<&'a str>,
    again: bool,
}

impl Filter<'_> {
    /// Whether `--service` and `--kind` let `parked` through.
    fn matches(&self, parked: &Parked) -> bool {
        let header = |name| parked.letter.header(name);
        self.service
            .is_none_or(|s| header(dead_letter::SERVICE) == Some(s))
            && self
                .kind
                .is_none_or(|k| header(dead_letter::ERROR_KIND) == Some(k))
    }
}

/// The messages to replay, each original message once: those named, or with `--all` every
/// one not replayed before (all of them with `--again`).
fn choose<'a>(
    parked: &'a [Parked],
    wanted: &[(String, i32, i64)],
    filter: &Filter,
) -> anyhow::Result<Vec<&'a Parked>> {
    let at = |p: &Parked| (p.topic.clone(), p.letter.partition, p.letter.offset);
    let mut positions = HashSet::new();
    for position in wanted {
        let (topic, partition, offset) = position;
        let Some(found) = parked.iter().find(|p| at(p) == *position) else {
            bail!("{topic}:{partition}:{offset}: no parked message there (see `shop-dlt list`)");
        };
        if let (Some(to), false) = (&found.letter.replayed_to, filter.again) {
            bail!(
                "{topic}:{partition}:{offset}: already replayed (to {to}); \
                 add --again to replay it once more"
            );
        }
        positions.insert(position.clone());
    }
    let mut origins = HashSet::new();
    Ok(parked
        .iter()
        .filter(|p| {
            positions.contains(&at(p))
                || (filter.all && (filter.again || p.letter.replayed_to.is_none()))
        })
        .filter(|p| filter.matches(p))
        .filter(|p| origins.insert(p.letter.origin()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parked(topic: &str, partition: i32, offset: i64, service: &str, origin: i64) -> Parked {
        let original = topic.trim_end_matches(".dlt");
        let headers = [
            (dead_letter::ORIGINAL_TOPIC, original.to_owned()),
            (dead_letter::ORIGINAL_PARTITION, "0".to_owned()),
            (dead_letter::ORIGINAL_OFFSET, origin.to_string()),
            (dead_letter::SERVICE, service.to_owned()),
            (dead_letter::ERROR_KIND, "rejected".to_owned()),
        ];
        Parked {
            topic: topic.to_owned(),
            letter: DeadLetter {
                partition,
                offset,
                key: Vec::new(),
                payload: Vec::new(),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                    .collect(),
                replayed_to: None,
            },
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn without_a_topic_every_dead_letter_topic_is_read() {
        assert_eq!(
            all_dead_letter_topics(),
            ["orders.dlt", "inventory.dlt", "payments.dlt"]
        );
    }

    #[test]
    fn a_source_topic_is_refused_with_its_dead_letter_topic_named() {
        let err = checked_topic("payments").unwrap_err().to_string();
        assert!(err.contains("payments.dlt"), "{err}");
        assert_eq!(checked_topic("payments.dlt").unwrap(), "payments.dlt");
    }

    #[test]
    fn a_position_names_its_topic_or_takes_the_one_given_with_topic() {
        let at = |t: &str, p, o| (t.to_owned(), p, o);
        assert_eq!(
            parse_position("inventory.dlt:3:41", None).unwrap(),
            at("inventory.dlt", 3, 41)
        );
        assert_eq!(
            parse_position("0:12", Some("orders.dlt")).unwrap(),
            at("orders.dlt", 0, 12)
        );
        let err = parse_position("0:12", None).unwrap_err().to_string();
        assert!(err.contains("on which dead-letter topic"), "{err}");
        assert!(parse_position("orders.dlt:0:12", Some("payments.dlt")).is_err());
        assert!(parse_position("orders.dlt:x:12", None).is_err());
        assert!(parse_position("12", Some("orders.dlt")).is_err());
    }

    #[test]
    fn replay_takes_positions_on_any_dead_letter_topic_and_each_original_once() {
        let letters = [
            parked("orders.dlt", 0, 12, "email-service", 5),
            // The same original message, parked by a second service.
            parked("orders.dlt", 0, 13, "analytics-service", 5),
            parked("payments.dlt", 0, 12, "order-service", 7),
        ];
        let wanted = [
            ("orders.dlt".to_owned(), 0, 12),
            ("orders.dlt".to_owned(), 0, 13),
            ("payments.dlt".to_owned(), 0, 12),
        ];
        let chosen = choose(&letters, &wanted, &named()).unwrap();
        let positions: Vec<String> = chosen.iter().map(|p| p.position()).collect();
        assert_eq!(positions, ["orders.dlt:0:12", "payments.dlt:0:12"]);

        let missing = [("inventory.dlt".to_owned(), 0, 12)];
        assert!(choose(&letters, &missing, &named()).is_err());
    }

    #[test]
    fn replaying_all_can_be_narrowed_to_one_service() {
        let letters = [
            parked("orders.dlt", 0, 12, "email-service", 5),
            parked("payments.dlt", 1, 0, "order-service", 7),
            parked("inventory.dlt", 2, 0, "order-service", 9),
        ];
        let one_service = Filter {
            service: Some("order-service"),
            ..all()
        };
        let chosen = choose(&letters, &[], &one_service).unwrap();
        let positions: Vec<String> = chosen.iter().map(|p| p.position()).collect();
        assert_eq!(positions, ["payments.dlt:1:0", "inventory.dlt:2:0"]);
        assert_eq!(choose(&letters, &[], &all()).unwrap().len(), 3);
    }

    #[test]
    fn a_message_replayed_before_is_skipped_by_all_and_refused_by_name_unless_again() {
        let mut replayed = parked("orders.dlt", 0, 12, "email-service", 5);
        replayed.letter.replayed_to = Some("orders:0:40".to_owned());
        let letters = [replayed, parked("payments.dlt", 1, 0, "order-service", 7)];

        let chosen = choose(&letters, &[], &all()).unwrap();
        let positions: Vec<String> = chosen.iter().map(|p| p.position()).collect();
        assert_eq!(positions, ["payments.dlt:1:0"]);
        let again = Filter {
            again: true,
            ..all()
        };
        assert_eq!(choose(&letters, &[], &again).unwrap().len(), 2);

        let named = [("orders.dlt".to_owned(), 0, 12)];
        let Err(err) = choose(&letters, &named, &self::named()) else {
            panic!("a message replayed before was replayed again without --again");
        };
        let err = err.to_string();
        assert!(err.contains("already replayed (to orders:0:40)"), "{err}");
        assert!(err.contains("--again"), "{err}");
        let again = Filter {
            again: true,
            ..self::named()
        };
        assert_eq!(choose(&letters, &named, &again).unwrap().len(), 1);
    }

    fn named() -> Filter<'static> {
        Filter {
            all: false,
            service: None,
            kind: None,
            again: false,
        }
    }

    fn all() -> Filter<'static> {
        Filter {
            all: true,
            ..named()
        }
    }
}

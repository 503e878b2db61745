//! The dashboard: a live page of shop's consumer groups, the partitions each instance holds,
//! their lag and events per second, and recent orders moving through the services.
//!
//! It reads Kafka only, as an observer in no group: the instances' heartbeats on the
//! `presence` topic and the events on `orders`, `inventory` and `payments`. The page gets a
//! [`board::Snapshot`] a second over server-sent events. Orders it places, one at a time or
//! in bursts, go through the Order Service's API.

pub mod board;
pub mod config;
pub mod load;
pub mod routes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use shop_runtime::app::App;
use shop_runtime::metrics::HttpMetrics;
use shop_runtime::presence::Heartbeat;
use shop_runtime::{Envelope, http, kafka, topics};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Settings};

use crate::board::Board;
use crate::load::{LoadRunner, Orders};

/// How often the page is sent a fresh snapshot.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What the HTTP handlers share: [`routes::router`]'s state.
#[derive(Clone)]
pub struct State {
    board: Arc<Mutex<Board>>,
    load: LoadRunner,
    /// The latest snapshot as JSON, for every open event stream.
    snapshots: watch::Receiver<Arc<str>>,
    kafka: Arc<StreamConsumer>,
    registry: Arc<prometheus_client::registry::Registry>,
    http_metrics: HttpMetrics,
}

impl State {
    /// An empty board and no burst: orders go to `order_service_url`, `/readyz` asks `kafka`.
    /// What is sent on the returned sender reaches every open `/api/events` stream; once it
    /// is dropped, the streams end.
    pub fn new(
        order_service_url: &str,
        kafka: Arc<StreamConsumer>,
    ) -> (Self, watch::Sender<Arc<str>>) {
        let mut registry = shop_runtime::metrics::service_registry("dashboard");
        let http_metrics = HttpMetrics::register(
            registry.sub_registry_with_prefix(shop_runtime::metrics::NAMESPACE),
        );
        let (publish, snapshots) = watch::channel(Arc::<str>::from("{}"));
        let state = State {
            board: Arc::default(),
            load: LoadRunner::new(Orders::new(order_service_url)),
            snapshots,
            kafka,
            registry: Arc::new(registry),
            http_metrics,
        };
        (state, publish)
    }

    fn snapshot_json(&self) -> String {
        let snapshot = self
            .board
            .lock()
            .expect("board lock poisoned")
            .snapshot(Instant::now(), self.load.status());
        serde_json::to_string(&snapshot).expect("a snapshot always serializes")
    }
}

/// The dashboard, run as every service is (`shop_runtime::app::App`): its HTTP server, the
/// feed from Kafka and the snapshot publisher.
pub type Dashboard = App;

/// Creates the topics if needed, starts reading them from their end and binds the port.
pub async fn build(settings: Settings) -> anyhow::Result<Dashboard> {
    let watched = shop_runtime::access::DASHBOARD.reads;
    kafka::ensure_topics(&settings.kafka, watched).await?;
    let consumer = kafka::tail(&settings.kafka, watched, rdkafka::Offset::End).await?;
    let partitions = partition_counts(&consumer, &topics::ALL).await?;
    let (state, publisher) = State::new(&settings.order_service_url, consumer);
    state
        .board
        .lock()
        .expect("board lock poisoned")
        .set_topics(partitions);
    let listener = http::bind(settings.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "dashboard listening");
    let (fed, published, load) = (state.clone(), state.clone(), state.load.clone());
    Ok(
        App::new(listener, routes::router(state), settings.http_limits)
            .task(|stop| follow(fed, stop))
            .task(|stop| publish(published, publisher, stop))
            // A burst in progress stops with the dashboard.
            .task(|stop| async move {
                stop.cancelled().await;
                load.stop();
                Ok(())
            }),
    )
}

/// Feeds every heartbeat and event into the board.
async fn follow(state: State, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = state.kafka.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(err) if kafka::is_refused_group_lookup(&err) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read Kafka; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (topic, partition) = (message.topic(), message.partition());
        let mut board = state.board.lock().expect("board lock poisoned");
        if topic == topics::PRESENCE {
            match message.payload().map(serde_json::from_slice::<Heartbeat>) {
                Some(Ok(heartbeat)) => board.heartbeat(heartbeat, Instant::now()),
                Some(Err(err)) => tracing::debug!(error = %err, "not a heartbeat; skipped"),
                None => {}
            }
        } else if let Ok(event) = Envelope::decode(message.payload()) {
            // What does not decode is the consumers' business (they park it); here it is
            // simply not drawn.
            board.event(&event, topic, partition);
        }
    }
}

/// Sends a snapshot to every open page each [`PUBLISH_EVERY`].
async fn publish(
    state: State,
    publish: watch::Sender<Arc<str>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        publish.send_replace(Arc::from(state.snapshot_json()));
    }
}

async fn partition_counts(
    consumer: &Arc<StreamConsumer>,
    names: &[&str],
) -> anyhow::Result<Vec<(String, i32)>> {
    let client = consumer.clone();
    let metadata =
        tokio::task::spawn_blocking(move || client.fetch_metadata(None, Duration::from_secs(10)))
            .await
            .context("metadata task panicked")?
            .context("cannot read the topics' metadata")?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|topic| names.contains(&topic.name()))
        .map(|topic| (topic.name().to_owned(), topic.partitions().len() as i32))
        .collect())
}

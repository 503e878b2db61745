//! The application every consumer service is: an [`EventConsumer`], the [`OutboxRelay`] that
//! publishes its replies, its [`Presence`] heartbeat, and an HTTP server for its read
//! endpoints and the operational ones, started and stopped together.

use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceSettings;
use crate::health::Liveness;
use crate::http::{self, ConsumerInfo, OpsState};
use crate::kafka::{self, EventConsumer, Handler};
use crate::metrics::{ConsumerMetrics, HttpMetrics};
use crate::outbox::{OutboxRelay, RelayMetrics};
use crate::presence::Presence;

pub struct ConsumerApp<H> {
    listener: TcpListener,
    router: Router,
    limits: http::ServerLimits,
    consumer: EventConsumer<H>,
    relay: OutboxRelay,
    presence: Presence,
}

impl<H: Handler> ConsumerApp<H> {
    /// Creates the topics if needed, connects to Kafka and binds the HTTP port. `routes`
    /// are the service's own read endpoints; `retry` is how a transient failure of an event
    /// is retried before it is parked (every service: [`crate::retry::transient`]).
    pub async fn build(
        settings: &ServiceSettings,
        pool: PgPool,
        handler: H,
        routes: Router,
        retry: crate::retry::Policy,
    ) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        kafka::ensure_topics(&settings.kafka, &H::PRINCIPAL.topics()).await?;
        let mut registry = crate::metrics::service_registry(settings.name);
        let shop = registry.sub_registry_with_prefix(crate::metrics::NAMESPACE);
        let metrics = ConsumerMetrics::register(shop);
        let shed = prometheus_client::metrics::counter::Counter::default();
        shop.register(
            "http_requests_shed",
            "Requests answered 503 because HTTP_MAX_IN_FLIGHT were already being handled",
            shed.clone(),
        );
        let relay_metrics = RelayMetrics::register(shop);
        let http_metrics = HttpMetrics::register(shop);
        let liveness = Liveness::new(settings.stuck_after);
        let producer =
            kafka::EventProducer::connect(&settings.kafka, settings.message_timeout).await?;
        let outbox_wake = Arc::new(Notify::new());
        let relay = OutboxRelay {
            pool: pool.clone(),
            producer: producer.clone(),
            wake: outbox_wake.clone(),
            poll_interval: settings.outbox_poll_interval,
            metrics: relay_metrics.clone(),
            beat: Some(liveness.register("relay")),
        };
        let consumer = EventConsumer::connect(
            &settings.kafka,
            pool.clone(),
            handler,
            retry,
            metrics.clone(),
            outbox_wake,
        )
        .await?
        .with_liveness(liveness.register("consumer"));
        let presence = Presence::of(&consumer, producer.clone(), settings, metrics);
        let ops = OpsState {
            pool,
            registry: Arc::new(registry),
            consumer: Some(ConsumerInfo {
                group: settings.kafka.group_id.clone(),
                instance_id: settings.instance_id.clone(),
                assignment: consumer.assignment(),
            }),
            kafka: producer,
            liveness,
            outbox: relay_metrics,
        };
        let listener = http::bind(settings.http_addr).await?;
        tracing::info!(service = settings.name, addr = %listener.local_addr()?, "listening");
        let api = http::limit_in_flight(routes, settings.http_in_flight, shed);
        Ok(ConsumerApp {
            listener,
            limits: settings.http_limits,
            router: http::observe(
                http::with_problem_fallbacks(api.merge(http::ops_router(ops))),
                http_metrics,
            ),
            consumer,
            relay,
            presence,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// Runs until `shutdown` is cancelled or any part fails; a failure stops the others.
    /// The relay stops last, so replies to the events handled before shutdown still go out;
    /// the heartbeat says `stopping` once the consumer has left its group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let relay_stop = CancellationToken::new();
        let server = stop_on_exit(
            &stop,
            http::serve(self.listener, self.router, self.limits, stop.clone()),
        );
        let consumer = async {
            let result = stop_on_exit(&stop, self.consumer.run(stop.clone())).await;
            relay_stop.cancel();
            result
        };
        let presence = self.presence.run(relay_stop.clone());
        let relay = async {
            let result = self.relay.run(relay_stop.clone()).await;
            stop.cancel();
            result
        };
        let (server, consumer, presence, relay) = tokio::join!(server, consumer, presence, relay);
        server.and(consumer).and(presence).and(relay)
    }
}

/// Runs `task`, then cancels `stop` however it ended, so its siblings wind down too.
pub async fn stop_on_exit<T>(stop: &CancellationToken, task: impl Future<Output = T>) -> T {
    let result = task.await;
    stop.cancel();
    result
}

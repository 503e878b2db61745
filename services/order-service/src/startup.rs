use std::sync::Arc;

use axum::Router;
use prometheus_client::metrics::counter::Counter;
use shop_runtime::app::stop_on_exit;
use shop_runtime::health::Liveness;
use shop_runtime::http::{self, ConsumerInfo, OpsState};
use shop_runtime::kafka::EventConsumer;
use shop_runtime::metrics::{self, ConsumerMetrics, HttpMetrics};
use shop_runtime::outbox::{OutboxRelay, RelayMetrics};
use shop_runtime::presence::Presence;
use shop_runtime::retry;
use shop_runtime::{db as shared_db, kafka};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::db;
use crate::routes::{self, AppState};
use crate::saga::{self, DecideOrders};

/// The Order Service: its HTTP API, the outbox relay that publishes its events, and the
/// saga's consumer of Inventory's and Payment's answers, with its time-out sweep and its
/// presence heartbeat.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: http::ServerLimits,
    relay: OutboxRelay,
    consumer: EventConsumer<DecideOrders>,
    presence: Presence,
    saga: SagaTimeout,
}

struct SagaTimeout {
    pool: sqlx::PgPool,
    timeout: std::time::Duration,
    relay_wake: Arc<Notify>,
    timed_out: Counter,
}

impl Application {
    /// Migrates and seeds the database, creates the topics, connects to Kafka and binds the
    /// HTTP port. Fails fast, naming what is unreachable.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let service = &settings.service;
        service.validate().map_err(anyhow::Error::msg)?;
        let pool = shared_db::connect(service, &db::MIGRATOR).await?;
        db::seed_catalog(&pool).await?;
        kafka::ensure_topics(
            &service.kafka,
            &shop_runtime::access::ORDER_SERVICE.topics(),
        )
        .await?;
        let producer =
            kafka::EventProducer::connect(&service.kafka, service.message_timeout).await?;

        let mut registry = metrics::service_registry(service.name);
        let shop = registry.sub_registry_with_prefix(metrics::NAMESPACE);
        let orders_placed = Counter::default();
        let timed_out = Counter::default();
        let shed = Counter::default();
        shop.register(
            "orders_placed",
            "Orders accepted with 201",
            orders_placed.clone(),
        );
        shop.register(
            "saga_timeouts",
            "Orders cancelled because Inventory or Payment did not answer within SAGA_TIMEOUT_SECS",
            timed_out.clone(),
        );
        shop.register(
            "http_requests_shed",
            "Requests answered 503 because HTTP_MAX_IN_FLIGHT were already being handled",
            shed.clone(),
        );
        let relay_metrics = RelayMetrics::register(shop);
        let consumer_metrics = ConsumerMetrics::register(shop);
        let http_metrics = HttpMetrics::register(shop);
        let liveness = Liveness::new(service.stuck_after);

        let relay_wake = Arc::new(Notify::new());
        let consumer = EventConsumer::connect(
            &service.kafka,
            pool.clone(),
            DecideOrders,
            retry::transient(),
            consumer_metrics.clone(),
            relay_wake.clone(),
        )
        .await?
        .with_liveness(liveness.register("consumer"));
        let presence = Presence::of(&consumer, producer.clone(), service, consumer_metrics);
        let state = AppState {
            pool: pool.clone(),
            relay_wake: relay_wake.clone(),
            orders_placed,
        };
        let ops = OpsState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            consumer: Some(ConsumerInfo {
                group: service.kafka.group_id.clone(),
                instance_id: service.instance_id.clone(),
                assignment: consumer.assignment(),
            }),
            kafka: producer.clone(),
            liveness: liveness.clone(),
            outbox: relay_metrics.clone(),
        };
        let api = http::limit_in_flight(routes::router(state), service.http_in_flight, shed);
        let router = http::observe(
            http::with_problem_fallbacks(api.merge(http::ops_router(ops))),
            http_metrics,
        );
        let relay = OutboxRelay {
            pool: pool.clone(),
            producer,
            wake: relay_wake.clone(),
            poll_interval: service.outbox_poll_interval,
            metrics: relay_metrics,
            beat: Some(liveness.register("relay")),
        };
        let listener = http::bind(service.http_addr).await?;
        tracing::info!(service = service.name, addr = %listener.local_addr()?, "listening");
        Ok(Application {
            listener,
            router,
            limits: service.http_limits,
            relay,
            consumer,
            presence,
            saga: SagaTimeout {
                pool,
                timeout: settings.saga_timeout,
                relay_wake,
                timed_out,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// Serves, consumes and relays until `shutdown`; a failure of any part stops them all.
    /// The relay stops last, so the decisions taken before shutdown still go out.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let relay_stop = CancellationToken::new();
        let server = stop_on_exit(
            &stop,
            http::serve(self.listener, self.router, self.limits, stop.clone()),
        );
        let consumer = stop_on_exit(&stop, self.consumer.run(stop.clone()));
        let sweep = stop_on_exit(
            &stop,
            saga::expire_until_stopped(
                self.saga.pool,
                self.saga.timeout,
                self.saga.relay_wake,
                self.saga.timed_out,
                stop.clone(),
            ),
        );
        let parts = async {
            let (server, consumer, sweep) = tokio::join!(server, consumer, sweep);
            relay_stop.cancel();
            server.and(consumer).and(sweep)
        };
        let presence = self.presence.run(relay_stop.clone());
        let relay = async {
            let result = self.relay.run(relay_stop.clone()).await;
            stop.cancel();
            result
        };
        let (parts, presence, relay) = tokio::join!(parts, presence, relay);
        parts.and(presence).and(relay)
    }
}

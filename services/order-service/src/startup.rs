use std::sync::Arc;

use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use shared_events::app::stop_on_exit;
use shared_events::http::{self, OpsState};
use shared_events::{db as shared_db, kafka};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::db;
use crate::outbox::OutboxRelay;
use crate::routes::{self, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    relay: OutboxRelay,
}

impl Application {
    /// Migrates and seeds the database, creates the topics, connects the producer and binds
    /// the HTTP port. Fails fast, naming what is unreachable.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let service = &settings.service;
        let pool = shared_db::connect(service, &db::MIGRATOR).await?;
        db::seed_catalog(&pool).await?;
        kafka::ensure_topics(&service.kafka).await?;
        let producer =
            kafka::EventProducer::connect(&service.kafka, settings.message_timeout).await?;

        let mut registry = Registry::with_prefix("order_service");
        let orders_placed = Counter::default();
        let published = Counter::default();
        let failures = Counter::default();
        let shed = Counter::default();
        registry.register(
            "orders_placed",
            "Orders accepted with 201",
            orders_placed.clone(),
        );
        registry.register(
            "outbox_published",
            "Events the broker acknowledged",
            published.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests answered 503 because HTTP_MAX_IN_FLIGHT were already being handled",
            shed.clone(),
        );
        registry.register(
            "outbox_failures",
            "Relay batches that left events unpublished",
            failures.clone(),
        );

        let relay_wake = Arc::new(Notify::new());
        let state = AppState {
            pool: pool.clone(),
            relay_wake: relay_wake.clone(),
            orders_placed,
        };
        let ops = OpsState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            consumer: None,
        };
        let api = http::limit_in_flight(routes::router(state), service.http_max_in_flight, shed);
        let router = http::with_problem_fallbacks(api.merge(http::ops_router(ops)));
        let relay = OutboxRelay {
            pool,
            producer,
            wake: relay_wake,
            poll_interval: settings.outbox_poll_interval,
            published,
            failures,
        };
        let listener = http::bind(service.http_addr).await?;
        tracing::info!(service = service.name, addr = %listener.local_addr()?, "listening");
        Ok(Application {
            listener,
            router,
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// Serves and relays until `shutdown`; a failure of either stops both.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let server = stop_on_exit(&stop, http::serve(self.listener, self.router, stop.clone()));
        let relay = stop_on_exit(&stop, self.relay.run(stop.clone()));
        let (server, relay) = tokio::join!(server, relay);
        server.and(relay)
    }
}

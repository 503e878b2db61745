//! The Order Service, assembled by the runtime's [`ServiceBuilder`] like every consumer: its
//! HTTP API, the outbox relay that publishes its events, the saga's consumer of Inventory's
//! and Payment's answers and its presence heartbeat; and, of its own, the saga's time-out
//! sweep and two counters.

use prometheus_client::metrics::counter::Counter;
use shop_runtime::app::{App, ServiceBuilder};

use crate::config::Settings;
use crate::db;
use crate::routes::{self, AppState};
use crate::saga::{self, DecideOrders};

pub type Application = App;

/// Migrates and seeds the database, creates the topics, connects to Kafka and binds the
/// HTTP port. Fails fast, naming what is unreachable.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let service = &settings.service;
    let pool = shop_runtime::db::connect(service, &db::MIGRATOR).await?;
    db::seed_catalog(&pool).await?;
    let orders_placed = Counter::default();
    let timed_out = Counter::default();
    let (placed, expired) = (orders_placed.clone(), timed_out.clone());
    let (timeout, version) = (settings.saga_timeout, settings.order_cancelled_version);
    ServiceBuilder::new(service, pool, DecideOrders(version))
        .metrics(|shop| {
            shop.register("orders_placed", "Orders accepted with 201", placed);
            shop.register(
                "saga_timeouts",
                "Orders cancelled because Inventory or Payment did not answer within \
                 SAGA_TIMEOUT_SECS",
                expired,
            );
        })
        .routes(|wiring| {
            routes::router(AppState {
                pool: wiring.pool.clone(),
                relay_wake: wiring.relay_wake.clone(),
                orders_placed,
            })
        })
        .task(move |wiring, stop| {
            saga::expire_until_stopped(
                wiring.pool,
                timeout,
                version,
                wiring.relay_wake,
                timed_out,
                stop,
            )
        })
        .build()
        .await
}

//! The Inventory Service, the saga's stock step. For every `order_placed` it reserves the
//! order's stock, all items or none, and answers `stock_reserved`, or `stock_rejected` with
//! the shortfall when the stock is not there; the Order Service decides the order from that
//! answer and Payment's. On `order_cancelled` it compensates: a reservation's stock is put
//! back and it answers `stock_released`. On `order_confirmed` the stock stays taken. Stock
//! never goes negative, and answers leave through the outbox, in the decision's transaction.
//!
//! `GET /stock` shows what is left, `GET /reservations` and `GET /reservations/{order_id}`
//! each order's reservation: its status (`reserved`, `rejected`, `released`), reason and
//! items.

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::{Config, IDENTITY, Settings};
pub use handler::ReserveStock;

use shop_runtime::app::ConsumerApp;
use shop_runtime::retry;

pub type Application = ConsumerApp<ReserveStock>;

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let pool = shop_runtime::db::connect(&settings.service, &db::MIGRATOR).await?;
    db::seed_stock(&pool, settings.initial_stock).await?;
    let routes = routes::router(pool.clone());
    ConsumerApp::build(
        &settings.service,
        pool.clone(),
        ReserveStock,
        routes,
        retry::transient(),
    )
    .await
}

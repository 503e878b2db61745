//! The Analytics Service: live aggregates over the orders and how they ended. It counts every
//! order once as placed (`order_placed`) and once as confirmed (`order_confirmed`) or
//! cancelled (`order_cancelled`); revenue per currency and item sales come from confirmed
//! orders only, so a cancelled order never adds money that was not taken.
//!
//! `GET /stats` shows the counts, the revenue and the best sellers.

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::IDENTITY;
pub use handler::CountOrders;

use shop_runtime::app::{App, ServiceBuilder};
use shop_runtime::config::ServiceSettings;

pub type Application = App;

pub async fn build(settings: ServiceSettings) -> anyhow::Result<Application> {
    let pool = shop_runtime::db::connect(&settings, &db::MIGRATOR).await?;
    ServiceBuilder::new(&settings, pool, CountOrders)
        .routes(|wiring| routes::router(wiring.pool.clone()))
        .build()
        .await
}

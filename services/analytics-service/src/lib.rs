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

use shop_runtime::app::ConsumerApp;
use shop_runtime::config::ServiceSettings;
use shop_runtime::retry;

pub type Application = ConsumerApp<CountOrders>;

pub async fn build(settings: ServiceSettings) -> anyhow::Result<Application> {
    let pool = shop_runtime::db::connect(&settings, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    ConsumerApp::build(
        &settings,
        pool.clone(),
        CountOrders,
        routes,
        retry::transient(),
    )
    .await
}

//! The Inventory Service: reserves stock for every placed order, or rejects the order when
//! the stock is not there. Stock never goes negative.

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::IDENTITY;
pub use handler::ReserveStock;

use shared_events::app::ConsumerApp;
use shared_events::config::ServiceSettings;
use shared_events::kafka::RetryPolicy;

pub type Application = ConsumerApp<ReserveStock>;

pub async fn build(settings: ServiceSettings) -> anyhow::Result<Application> {
    let pool = shared_events::db::connect(&settings, &db::MIGRATOR).await?;
    db::seed_stock(&pool).await?;
    let routes = routes::router(pool.clone());
    ConsumerApp::build(
        &settings,
        pool.clone(),
        ReserveStock,
        routes,
        RetryPolicy::default(),
    )
    .await
}

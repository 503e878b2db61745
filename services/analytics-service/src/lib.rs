//! The Analytics Service: live aggregates over every placed order (count, revenue, top items).

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::IDENTITY;
pub use handler::CountOrder;

use shared_events::app::ConsumerApp;
use shared_events::config::ServiceSettings;
use shared_events::kafka::RetryPolicy;

pub type Application = ConsumerApp<CountOrder>;

pub async fn build(settings: ServiceSettings) -> anyhow::Result<Application> {
    let pool = shared_events::db::connect(&settings, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    ConsumerApp::build(
        &settings,
        pool.clone(),
        CountOrder,
        routes,
        RetryPolicy::default(),
    )
    .await
}

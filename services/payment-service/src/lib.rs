//! The Payment Service (Billing): charges every placed order its total, once.

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::IDENTITY;
pub use handler::ChargeOrder;

use shared_events::app::ConsumerApp;
use shared_events::config::ServiceSettings;
use shared_events::kafka::RetryPolicy;

pub type Application = ConsumerApp<ChargeOrder>;

pub async fn build(settings: ServiceSettings) -> anyhow::Result<Application> {
    let pool = shared_events::db::connect(&settings, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    ConsumerApp::build(
        &settings,
        pool.clone(),
        ChargeOrder,
        routes,
        RetryPolicy::default(),
    )
    .await
}

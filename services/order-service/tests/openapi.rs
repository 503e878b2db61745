//! The OpenAPI document and the router agree: every operation `/openapi.json` lists is
//! routed and answers as documented (the documented example places an order), and `/docs`
//! needs nothing from outside.

use std::sync::Arc;

use order_service::db::{self, TEST_MIGRATOR};
use order_service::routes::{self, AppState};
use prometheus_client::metrics::counter::Counter;
use shop_runtime::openapi::testing;
use sqlx::PgPool;
use tokio::sync::Notify;

fn api(pool: &PgPool) -> axum::Router {
    routes::router(AppState {
        pool: pool.clone(),
        relay_wake: Arc::new(Notify::new()),
        orders_placed: Counter::default(),
    })
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn every_operation_in_the_spec_is_routed_and_answers_as_documented(pool: PgPool) {
    db::seed_catalog(&pool).await.unwrap();
    testing::assert_router_serves_its_spec(api(&pool), pool.clone()).await;
    let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(placed, 1, "the documented example is a valid order");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_docs_page_loads_only_assets_the_service_serves(pool: PgPool) {
    testing::assert_docs_load_only_local_assets(api(&pool)).await;
}

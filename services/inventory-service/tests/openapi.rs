//! The OpenAPI document and the router agree: every operation `/openapi.json` lists is
//! routed and answers as documented, and `/docs` needs nothing from outside.

use inventory_service::db::{self, TEST_MIGRATOR};
use inventory_service::routes;
use shop_runtime::openapi::testing;
use sqlx::PgPool;

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn every_operation_in_the_spec_is_routed_and_answers_as_documented(pool: PgPool) {
    db::seed_stock(&pool, None).await.unwrap();
    testing::assert_router_serves_its_spec(routes::router(pool.clone()), pool).await;
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_docs_page_loads_only_assets_the_service_serves(pool: PgPool) {
    testing::assert_docs_load_only_local_assets(routes::router(pool)).await;
}

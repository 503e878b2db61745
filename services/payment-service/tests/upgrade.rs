//! A database the current release made upgrades in place: the outbox and processed_events
//! moved from this service's migrations to shop-runtime's, and nothing else changed.

use std::path::Path;

use payment_service::db::{self, TEST_MIGRATOR};
use shop_runtime::testing::upgrade;
use sqlx::PgPool;

/// This service's migrations as release 2026-12 shipped them, frozen.
const RELEASE_2026_12: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/release-2026-12"
);

#[sqlx::test(migrations = false)]
async fn a_release_2026_12_database_upgrades_in_place_to_the_schema_of_a_new_one(pool: PgPool) {
    upgrade::assert_upgrades_in_place(&pool, Path::new(RELEASE_2026_12), ROWS, &db::MIGRATOR).await;
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn test_databases_have_the_tables_of_a_real_one(pool: PgPool) {
    let real = upgrade::schema_of_a_new_database(&pool, &db::MIGRATOR).await;
    assert_eq!(upgrade::schema(&pool).await.tables, real.tables);
}

/// A captured payment, in release 2026-12's tables.
const ROWS: &str = "
INSERT INTO payments (order_id, event_id, customer_id, amount_cents, currency, status)
VALUES ('6a3b5f2e-2a4c-4b8e-9a51-0c1d2e3f4a5b', gen_random_uuid(), 'c-1', 8999, 'EUR', 'captured');
";

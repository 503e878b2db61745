//! A database the current release made upgrades in place: the outbox and processed_events
//! moved from this service's migrations to shop-runtime's, and nothing else changed.

use std::path::Path;

use analytics_service::db::{self, TEST_MIGRATOR};
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

/// An order counted as placed and confirmed, with its revenue and items, in release 2026-12's tables.
const ROWS: &str = "
INSERT INTO counted_orders (order_id, kind, total_cents, currency, occurred_at)
VALUES ('6a3b5f2e-2a4c-4b8e-9a51-0c1d2e3f4a5b', 'placed', 8999, 'EUR', now()),
       ('6a3b5f2e-2a4c-4b8e-9a51-0c1d2e3f4a5b', 'confirmed', 8999, 'EUR', now());
UPDATE order_counts SET orders = 1 WHERE kind IN ('placed', 'confirmed');
INSERT INTO revenue VALUES ('EUR', 1, 8999);
INSERT INTO item_sales VALUES ('KB-001', 1, 8999, 1);
";

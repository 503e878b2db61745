//! The tables this crate writes to in every service's database, `outbox` ([`crate::outbox`])
//! and `processed_events` ([`crate::db::claim_events`]), created and changed by this crate's
//! own migrations (`runtime/migrations/`), beside the service's migrations of its own tables.
//!
//! The two histories are kept apart, as sqlx intends for migrations from two sources: this
//! crate's in `_shop_runtime_migrations`, the service's in sqlx's default `_sqlx_migrations`.
//! Neither sees the other's versions, so they can never collide and neither needs
//! `set_ignore_missing`, which would also hide a service migration deleted by mistake.
//!
//! Up to release 2026-12 each service created these tables in its own migrations. Those
//! statements moved here, so a database of that release upgrades in place: this crate's first
//! migration finds the tables there and leaves them be, and [`run`] then takes the moved
//! statements out of the service's history, which sqlx would otherwise refuse as edited
//! (changed checksum) or missing (a deleted file).

use std::collections::HashSet;
use std::sync::LazyLock;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Where this crate records its migrations in each database.
pub const HISTORY_TABLE: &str = "_shop_runtime_migrations";

/// This crate's migrations.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!();
    // "dangerous" only when a database already has migrations recorded under another name;
    // this history has only ever had this one.
    migrator.dangerous_set_table_name(HISTORY_TABLE);
    migrator
});

/// Brings a service's database up to date: this crate's tables first, then the service's own.
/// Several instances may run it at once; each migrator takes sqlx's advisory lock in turn.
pub async fn run(pool: &PgPool, service: &Migrator) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("migrating the outbox and processed_events (shop-runtime)")?;
    take_over_release_2026_12(pool, service)
        .await
        .context("taking the outbox and processed_events out of the service's history")?;
    service
        .run(pool)
        .await
        .context("migrating the service's own tables")
}

/// This crate's migrations and `service`'s in one history, version order, for
/// `#[sqlx::test(migrator = ...)]`, which runs a single migrator on each test's new database:
/// the same tables as [`run`] makes, recorded in one table instead of two.
///
/// # Panics
/// If a version is in both, which the two separate histories of [`run`] would allow but one
/// history cannot hold.
pub fn for_tests(service: &Migrator) -> Migrator {
    let ours: HashSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    if let Some(clash) = service.iter().find(|m| ours.contains(&m.version)) {
        panic!(
            "migration {} is both shop-runtime's and the service's: give the service's file another version",
            clash.version
        );
    }
    Migrator::with_migrations(MIGRATOR.iter().chain(service.iter()).cloned().collect())
}

/// What became of a service migration of release 2026-12 that created or changed the shared
/// tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// The file stays, without its statements about the shared tables: the database already
    /// ran all of it, so its record takes the new file's checksum.
    Statements,
    /// The file is gone (it was only about the shared tables): its record goes too.
    File,
}

/// The service migrations of release 2026-12 whose statements about the shared tables moved
/// to this crate: version, what moved, and the SHA-384 that sqlx recorded for the file as the
/// release shipped it (`services/*/tests/fixtures/release-2026-12/`). A record is only changed
/// if its checksum is exactly this one, so any other edit is still refused, as sqlx would.
const RELEASE_2026_12: &[(i64, Moved, &str)] = &[
    // order-service 20261122000001_orders.sql: the outbox.
    (
        20261122000001,
        Moved::Statements,
        "18bade837515e8590757adf94c81d824c5600eea6f34ac59f90f912d3251fdd1324fa3a921e3c049b60b57a668cad25e",
    ),
    // order-service 20261123000005_saga.sql: processed_events.
    (
        20261123000005,
        Moved::Statements,
        "4f42fba5bcc7b61f30c8797084a5a9c15b1d4dd63c750ab8e5ee9f77766c72d12bb7f09d456955496defe983484a2cbb",
    ),
    // inventory-service 20261122000001_inventory.sql: processed_events.
    (
        20261122000001,
        Moved::Statements,
        "d77df2e75176d6de9b2bd7a4b11b434633ab94e19ba86a18d1e29b0647f828803685b71d9264b5a39d9e7f669c338cd0",
    ),
    // inventory-service 20261123000002_saga.sql: the outbox.
    (
        20261123000002,
        Moved::Statements,
        "74bc9851f4872d90cf40027c7b66f21589b03d683c37e7b5acdbd3eb4ee7fb22b0d87bf4a1e1c3c1914776911e6b210f",
    ),
    // payment-service 20261122000001_payments.sql: processed_events.
    (
        20261122000001,
        Moved::Statements,
        "9a35907be15976177d5407daa8439f21d0210382f01292e3ea9f7ae7d75fe6d485cecd8038193e7bd39c7bbe80a6e262",
    ),
    // payment-service 20261123000002_saga.sql: the outbox.
    (
        20261123000002,
        Moved::Statements,
        "08e2e22fff4caf9a3a11f70168cf00c0a398093e94f5ac8cd558f6a8ae233a5b53f5ab72dac068bd30afbea07aee739f",
    ),
    // email-service 20261122000001_email.sql: processed_events.
    (
        20261122000001,
        Moved::Statements,
        "b0e37e36c9ddda4d4eddf64591ce2dd3569fd20fe44d74466552c3d1fca908ec435c339e3c86d1a6b005e62e8b992719",
    ),
    // email-service 20261123000002_saga.sql: the outbox.
    (
        20261123000002,
        Moved::Statements,
        "8fb73d6bb41a1afb2b3f895b0cafb4dcc77a9ef85c1b34348cb99ff0ec56e77695290bb7005dadb90bb596cd9364ace3",
    ),
    // analytics-service 20261122000001_analytics.sql: processed_events.
    (
        20261122000001,
        Moved::Statements,
        "206ad39f5934c16e6b9d5fcaf72d32b35f77faf26381f91555b0647fafb5f4a954e766a4ff3b5f3c322703b39d3c1469",
    ),
    // analytics-service 20261123000002_saga.sql: the outbox.
    (
        20261123000002,
        Moved::Statements,
        "f533fcff506a1f34d7027216706147b0dea1783dd8bca4d58f0af7738e5105fd6e4733f69408811cc7f49293bb3fb3d0",
    ),
    // 20261204000001_outbox_traceparent.sql, the same file in all five services.
    (
        20261204000001,
        Moved::File,
        "d82786f20a3d530e026b602fbf871c6d351b708c38f04dc514bb2be355d5e86b1b4dcce90e5749b116b92679f39fc247",
    ),
];

/// Rewrites the service's records of [`RELEASE_2026_12`] to match its files now. Does nothing
/// on a new database, or on one already taken over; safe to race with another instance (an
/// update matches the old checksum, so only one of them changes a record).
async fn take_over_release_2026_12(pool: &PgPool, service: &Migrator) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    // Where a service's `sqlx::migrate!()` records its migrations.
    let history: Option<String> =
        sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations')::text AS "history?""#)
            .fetch_one(&mut *tx)
            .await?;
    if history.is_none() {
        return Ok(());
    }
    for &(version, moved, released) in RELEASE_2026_12 {
        let now = service
            .iter()
            .find(|m| m.version == version && !m.migration_type.is_down_migration());
        // Runtime-checked: `_sqlx_migrations` is created by the service's migrator at run time,
        // not by any migration, so the macros' scratch database has no such table to check against.
        let changed = match (moved, now) {
            (Moved::Statements, Some(now)) => {
                sqlx::query(
                    "UPDATE _sqlx_migrations SET checksum = $3
                     WHERE version = $1 AND checksum = decode($2, 'hex')",
                )
                .bind(version)
                .bind(released)
                .bind(&*now.checksum)
                .execute(&mut *tx)
                .await?
            }
            (Moved::File, None) => sqlx::query(
                "DELETE FROM _sqlx_migrations WHERE version = $1 AND checksum = decode($2, 'hex')",
            )
            .bind(version)
            .bind(released)
            .execute(&mut *tx)
            .await?,
            // Not how this release left the service's files: leave the record to sqlx's checks.
            _ => continue,
        };
        if changed.rows_affected() > 0 {
            tracing::info!(
                version,
                ?moved,
                "migration's shared-table statements now belong to shop-runtime"
            );
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_migrations_have_a_history_of_their_own() {
        assert_eq!(&*MIGRATOR.table_name, HISTORY_TABLE);
        assert!(MIGRATOR.iter().count() > 0);
    }
}

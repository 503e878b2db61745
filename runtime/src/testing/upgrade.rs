//! Test support for proving that a database of an earlier release upgrades in place: build it
//! from that release's migrations, read its rows and its schema from the catalog, and compare
//! with the schema a new database gets from [`crate::migrations::run`].

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

use crate::migrations::HISTORY_TABLE;

/// The two migration histories: kept out of [`Schema::tables`] and [`rows`], compared on
/// their own in [`Schema::history`].
const HISTORIES: [&str; 2] = ["_sqlx_migrations", HISTORY_TABLE];

/// A database's schema as `pg_dump --schema-only` would tell it apart, one line per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Every column (in table order, with type, nullability and default), constraint, index
    /// and sequence of the tables in `public`.
    pub tables: Vec<String>,
    /// Every migration recorded in either history: table, version, description, checksum.
    pub history: Vec<String>,
}

/// Builds `pool`'s database as the release whose migrations are in `dir` did, puts
/// `service_rows` (SQL) in the service's tables and a row in each shared table, upgrades it with
/// [`crate::migrations::run`] and `service`, twice (a restart changes nothing), and checks that
/// every row is still there and that the tables and both histories are a new database's.
pub async fn assert_upgrades_in_place(
    pool: &PgPool,
    dir: &Path,
    service_rows: &str,
    service: &Migrator,
) {
    migrate_as_released(pool, dir).await;
    sqlx::raw_sql(AssertSqlSafe(service_rows.to_owned()))
        .execute(pool)
        .await
        .expect("filling the service's tables");
    sqlx::raw_sql(
        r"INSERT INTO outbox (event_id, topic, message_key, event_type, payload, traceparent,
                              published_at, attempts, last_error)
          VALUES (gen_random_uuid(), 'orders', 'k', 'order_placed', '\x7b7d',
                  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', now(), 1, 'once');
          INSERT INTO outbox (event_id, topic, message_key, event_type, payload)
          VALUES (gen_random_uuid(), 'orders', 'k', 'order_confirmed', '\x7b7d');
          INSERT INTO processed_events (event_id) VALUES (gen_random_uuid());",
    )
    .execute(pool)
    .await
    .expect("filling the shared tables");
    let before = rows(pool).await;
    assert!(
        before.values().filter(|rows| !rows.is_empty()).count() >= 3,
        "the service's rows went in: {before:#?}"
    );

    for start in ["the upgrade", "a restart after it"] {
        crate::migrations::run(pool, service)
            .await
            .unwrap_or_else(|err| panic!("{start}: {err:#}"));
    }

    assert_same("rows", &lines(&before), &lines(&rows(pool).await));
    let upgraded = schema(pool).await;
    let new = schema_of_a_new_database(pool, service).await;
    assert_same("tables", &new.tables, &upgraded.tables);
    assert_same("history", &new.history, &upgraded.history);
}

/// Equal, or a panic naming what only one side has.
fn assert_same(what: &str, expected: &[String], found: &[String]) {
    if expected == found {
        return;
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !found.contains(e)).collect();
    let extra: Vec<&String> = found.iter().filter(|f| !expected.contains(f)).collect();
    panic!(
        "{what} differ (the same, in another order, if nothing is missing or extra)\n\
         missing: {missing:#?}\nextra: {extra:#?}"
    );
}

/// [`rows`] as lines, table first.
fn lines(rows: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    rows.iter()
        .flat_map(|(table, rows)| rows.iter().map(move |row| format!("{table} {row}")))
        .collect()
}

/// Migrates `pool`'s database with the migration files in `dir`, as the release they were
/// frozen from did: into `_sqlx_migrations`, the runtime's tables among the service's own.
pub async fn migrate_as_released(pool: &PgPool, dir: &Path) {
    let release = Migrator::new(dir)
        .await
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    release
        .run(pool)
        .await
        .unwrap_or_else(|err| panic!("migrating as {}: {err}", dir.display()));
}

/// Every row of every table in `public`, as JSON, by table.
pub async fn rows(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = 'public' AND tablename <> ALL($1) ORDER BY tablename",
    )
    .bind(&HISTORIES[..])
    .fetch_all(pool)
    .await
    .expect("listing the tables");
    let mut rows = BTreeMap::new();
    for table in tables {
        let sql = format!(
            r#"SELECT coalesce(array_agg(to_jsonb(t)::text ORDER BY to_jsonb(t)::text), '{{}}')
               FROM "{}" t"#,
            table.replace('"', "\"\"")
        );
        let found: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|err| panic!("reading {table}: {err}"));
        rows.insert(table, found);
    }
    rows
}

/// The schema of `pool`'s database.
pub async fn schema(pool: &PgPool) -> Schema {
    let mut tables = Vec::new();
    for sql in [
        "SELECT format('column %s.%s %s%s%s', c.relname, a.attname,
                       format_type(a.atttypid, a.atttypmod),
                       CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                       coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''))
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
           AND c.relname <> ALL($1) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum",
        "SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
         WHERE k.connamespace = 'public'::regnamespace AND c.relname <> ALL($1)
         ORDER BY c.relname, k.conname",
        "SELECT format('index %s.%s %s', tablename, indexname, indexdef) FROM pg_indexes
         WHERE schemaname = 'public' AND tablename <> ALL($1)
         ORDER BY tablename, indexname",
        "SELECT format('sequence %s %s start %s by %s from %s to %s cycle %s owned by %s.%s',
                       s.sequencename, s.data_type, s.start_value, s.increment_by, s.min_value,
                       s.max_value, s.cycle, t.relname, a.attname)
         FROM pg_sequences s
         JOIN pg_class q ON q.relname = s.sequencename AND q.relnamespace = 'public'::regnamespace
         LEFT JOIN pg_depend d ON d.objid = q.oid AND d.deptype = 'a'
         LEFT JOIN pg_class t ON t.oid = d.refobjid
         LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE s.schemaname = 'public' AND coalesce(t.relname <> ALL($1), true)
         ORDER BY s.sequencename",
    ] {
        let found: Vec<String> = sqlx::query_scalar(sql)
            .bind(&HISTORIES[..])
            .fetch_all(pool)
            .await
            .expect("reading the catalog");
        tables.extend(found);
    }
    let mut history = Vec::new();
    for table in HISTORIES {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(pool)
            .await
            .expect("looking for a history");
        if exists.is_none() {
            continue;
        }
        let sql = format!(
            "SELECT format('%s %s %s %s', '{table}', version, description, encode(checksum, 'hex'))
             FROM {table} WHERE success ORDER BY version"
        );
        let found: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|err| panic!("reading {table}: {err}"));
        history.extend(found);
    }
    Schema { tables, history }
}

/// The schema a new database gets from [`crate::migrations::run`] with `service`: made on the
/// server `pool` is connected to, read, and dropped.
pub async fn schema_of_a_new_database(pool: &PgPool, service: &Migrator) -> Schema {
    // Named after the test's own database (whose name is at PostgreSQL's 63-byte limit, so
    // a suffix would be cut off), so a test that failed half-way leaves one to drop next time.
    let name: String = sqlx::query_scalar("SELECT '_shop_new_' || md5(current_database())")
        .fetch_one(pool)
        .await
        .expect("naming a database");
    let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
    sqlx::raw_sql(AssertSqlSafe(drop.clone()))
        .execute(pool)
        .await
        .expect("dropping a database left by an earlier run");
    sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(pool)
        .await
        .expect("creating a database");
    let options = (*pool.connect_options()).clone().database(&name);
    let new = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("connecting to the new database");
    crate::migrations::run(&new, service)
        .await
        .expect("migrating a new database");
    let schema = schema(&new).await;
    new.close().await;
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(pool)
        .await
        .expect("dropping the new database");
    schema
}

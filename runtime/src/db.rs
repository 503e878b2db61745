//! PostgreSQL bootstrapping and the processed-events ledger that makes effects idempotent.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::config::ServiceSettings;
use crate::retry::{self, Retryable};

/// Creates the service's database if it is missing, connects, and migrates it: the tables
/// this crate owns, then the service's own (`migrator`), as [`crate::migrations::run`] does.
///
/// A server that is not up yet (refused or dropped connections, "the database system is
/// starting up") is waited for, with [`retry::startup`], for `STARTUP_TIMEOUT_SECS`: a
/// service started beside its database (compose, Kubernetes) does not crash-loop while it
/// boots. A server that answers and refuses (a wrong password, TLS that does not verify, a
/// bad URL) fails at once, naming why.
///
/// Creating the database here keeps "database per service" a one-command affair locally;
/// several instances racing to create it is harmless.
pub async fn connect(settings: &ServiceSettings, migrator: &Migrator) -> anyhow::Result<PgPool> {
    let url = settings.database_url.expose();
    let timeout = settings.kafka.startup_timeout;
    let shown = crate::secret::redact_url(url);
    let reachable = (|| Postgres::database_exists(url))
        .retry(retry::startup(timeout))
        .when(not_up_yet)
        .notify(|error, backoff| {
            tracing::warn!(database = %shown, %error, ?backoff, "PostgreSQL not reachable yet, retrying");
        });
    // An attempt that hangs (a server that never answers) is bounded by the same deadline.
    let exists = tokio::time::timeout(timeout + Duration::from_secs(1), reachable)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {shown}: start PostgreSQL (e.g. `apt-get install postgresql`) \
                 or set DATABASE_URL to a server this service can reach"
            )
        })?;
    if !exists {
        if let Err(err) = Postgres::create_database(url).await {
            // Another instance may have created it between our check and our create.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(err).with_context(|| format!("cannot create database {shown}"));
            }
        }
        tracing::info!(database = %shown, "created database");
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.database_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {shown}"))?;
    crate::migrations::run(&pool, migrator)
        .await
        .with_context(|| format!("cannot migrate {shown}"))?;
    Ok(pool)
}

/// Whether waiting may help: the server is not (yet) accepting connections, as opposed to
/// answering and refusing this client.
fn not_up_yet(error: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        // Only the network saying "nobody there (yet)": sqlx also reports a certificate that
        // does not verify as an I/O error (InvalidData), and that must fail at once.
        sqlx::Error::Io(error) => matches!(
            error.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
                | ErrorKind::TimedOut
        ),
        sqlx::Error::PoolTimedOut => true,
        // 57P03 cannot_connect_now: "the database system is starting up" (or shutting down).
        sqlx::Error::Database(error) => error.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Records that this service handled `event_ids`, inside the caller's transaction, and
/// returns those it had not handled before: the caller applies the effects of those only.
///
/// Because the record commits with the effects or not at all, a redelivered event changes
/// nothing. Ids are inserted in sorted order so that two instances claiming overlapping
/// batches (briefly, around a rebalance) lock them in the same order and cannot deadlock.
/// The table is this crate's ([`crate::migrations`]), in every service's database.
pub async fn claim_events(
    conn: &mut PgConnection,
    event_ids: &[Uuid],
) -> sqlx::Result<HashSet<Uuid>> {
    let mut sorted = event_ids.to_vec();
    sorted.sort_unstable();
    let claimed: Vec<Uuid> = sqlx::query_scalar!(
        "INSERT INTO processed_events (event_id) SELECT * FROM UNNEST($1::uuid[])
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        &sorted,
    )
    .fetch_all(conn)
    .await?;
    Ok(claimed.into_iter().collect())
}

#[cfg(test)]
mod start_up_tests {
    use super::*;

    #[test]
    fn a_server_not_up_yet_is_waited_for_and_one_that_refuses_this_client_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(not_up_yet(&sqlx::Error::Io(refused)));
        assert!(not_up_yet(&sqlx::Error::PoolTimedOut));
        assert!(!not_up_yet(&sqlx::Error::Configuration(
            "invalid port number".into()
        )));
        assert!(!not_up_yet(&sqlx::Error::Tls(
            "certificate not trusted".into()
        )));
        // What sqlx reports for a server certificate from an unknown CA.
        let untrusted = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        assert!(!not_up_yet(&sqlx::Error::Io(untrusted)));
    }
}

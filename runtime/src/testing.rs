//! Test support for a service's [`Handler`]: golden events with fresh ids, applied the way
//! the consumer applies them, and what the handler left in its outbox. Enabled by the
//! `testing` feature, for dev-dependencies only.
//!
//! [`upgrade`] proves that a database of an earlier release upgrades in place.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::envelope::{Envelope, Event};
use crate::kafka::{Handler, HandlerError};

pub mod upgrade;

/// The golden `event_type` event of its current version (`shop_contract::GOLDEN_DIR`) about
/// `order_id`, with a new event id and `occurred_at` now; `tweak` may change the JSON before
/// it is decoded.
pub fn golden_event(
    event_type: &str,
    order_id: Uuid,
    tweak: impl FnOnce(&mut Value),
) -> Envelope<Event> {
    let newest = (1..)
        .map(|version| golden_path(event_type, version))
        .take_while(|path| std::path::Path::new(path).exists())
        .last();
    golden_event_at(
        &newest.unwrap_or_else(|| panic!("no golden file for {event_type}")),
        order_id,
        tweak,
    )
}

/// The golden file of `event_type` at `version`.
pub fn golden_path(event_type: &str, version: u32) -> String {
    format!("{}/{event_type}.v{version}.json", shop_contract::GOLDEN_DIR)
}

/// Like [`golden_event`], from one golden file (an older version, say).
pub fn golden_event_at(
    path: &str,
    order_id: Uuid,
    tweak: impl FnOnce(&mut Value),
) -> Envelope<Event> {
    let event_type = path.rsplit('/').next().unwrap_or(path);
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    let mut value: Value = serde_json::from_str(&text).expect("golden files are JSON");
    value["event_id"] = json!(Uuid::new_v4());
    value["occurred_at"] = json!(chrono::Utc::now());
    value["order_id"] = json!(order_id);
    value["data"]["order_id"] = json!(order_id);
    tweak(&mut value);
    let bytes = serde_json::to_vec(&value).expect("JSON serialises");
    Envelope::decode(Some(&bytes)).unwrap_or_else(|err| panic!("{event_type}: {err}"))
}

/// Applies `events` in one committed transaction, as the consumer does with a batch of new
/// events; returns the repeats the handler counted.
pub async fn apply<H: Handler>(
    handler: &H,
    pool: &PgPool,
    events: &[Envelope<Event>],
) -> Result<usize, HandlerError> {
    let mut tx = pool.begin().await.expect("a transaction");
    let refs: Vec<&Envelope<Event>> = events.iter().collect();
    let applied = handler.apply(&mut tx, &refs).await?;
    tx.commit().await.expect("the transaction commits");
    Ok(applied.repeated_orders)
}

/// Every event in the service's outbox, in order: (topic, key, event type, data). Checks
/// that each row's envelope agrees with its columns.
pub async fn outbox(pool: &PgPool) -> Vec<(String, String, String, Value)> {
    let rows: Vec<(String, String, String, Vec<u8>)> =
        sqlx::query_as("SELECT topic, message_key, event_type, payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("reading the outbox");
    rows.into_iter()
        .map(|(topic, key, event_type, payload)| {
            let envelope: Value = serde_json::from_slice(&payload).expect("an outbox payload");
            assert_eq!(envelope["event_type"], event_type.as_str());
            assert_eq!(envelope["order_id"], key.as_str());
            (topic, key, event_type, envelope["data"].clone())
        })
        .collect()
}

/// A TCP link between a service and a server (its database) that a test can cut and
/// restore: while cut, every open connection through it is closed and new ones are closed as
/// soon as they are accepted, so the service sees exactly what a lost network path looks
/// like, while every other client of the server is undisturbed.
pub struct CuttableLink {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableLink {
    /// Listens on a free local port and forwards each connection to `target`.
    pub async fn to(target: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, watch) = tokio::sync::watch::channel(false);
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    if *watch.borrow_and_update() {
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(CuttableLink {
            addr,
            cut,
            accepted,
            task,
        })
    }

    /// Where the service connects instead of the server.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Closes every connection through the link, and every new one until [`Self::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// How many connections the link has accepted so far, cut or not.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CuttableLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

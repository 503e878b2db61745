//! Inventory's part in the saga, on topic `orders`:
//! - `order_placed`: reserve the order's stock, all its items or none, and answer
//!   `stock_reserved`, or `stock_rejected` with the shortfall;
//! - `order_cancelled`: compensate, putting a reservation's stock back, and answer
//!   `stock_released`;
//! - `order_confirmed`: nothing; the reserved stock stays taken.
//!
//! Each order is decided once. A cancellation that arrives before its placement (parked on
//! the dead-letter topic and replayed later) leaves a tombstone, a `released` reservation
//! without items, so that the late placement finds its order decided and takes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::Utc;
use shop_runtime::kafka::{self, Applied, Handler, HandlerError, OrderBatch};
use shop_runtime::outbox::{self, OutboxMessage};
use shop_runtime::{
    Envelope, Event, OrderCancelled, OrderPlaced, StockRejected, StockReleased, StockReserved,
};
use sqlx::PgConnection;
use uuid::Uuid;

/// Why a tombstone was written instead of a reservation.
pub const CANCELLED_BEFORE_PLACED: &str = "cancelled before inventory saw the order";

/// Reserves the stock each order needs in the order the orders came, and releases it when
/// the order is cancelled.
pub struct ReserveStock;

impl Handler for ReserveStock {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::INVENTORY_SERVICE;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let batch = OrderBatch::of(events);
        // A confirmed order keeps its stock: only cancellations concern this service.
        let cancellations: Vec<(Uuid, &OrderCancelled)> = batch
            .decisions
            .iter()
            .filter_map(|(event_id, decision)| match decision {
                kafka::Decision::Cancelled(order) => Some((*event_id, *order)),
                kafka::Decision::Confirmed(_) => None,
            })
            .collect();
        let mut replies = Vec::new();
        // Every stock row the batch may touch, locked once in SKU order, so that concurrent
        // batches for overlapping SKUs cannot deadlock.
        let mut stock = lock_stock(tx, skus(&batch.placements, &cancellations)).await?;
        let placed_repeats = place(tx, &batch.placements, &mut stock, &mut replies).await?;
        let cancelled_repeats = cancel(tx, &cancellations, &mut replies).await?;
        outbox::enqueue(tx, &replies).await?;
        Ok(Applied {
            repeated_orders: batch.late_placements + placed_repeats + cancelled_repeats,
        })
    }
}

/// Every SKU the batch's orders name, sorted.
fn skus<'a>(
    placements: &[(Uuid, &'a OrderPlaced)],
    cancellations: &[(Uuid, &'a OrderCancelled)],
) -> Vec<&'a str> {
    let placed = placements.iter().flat_map(|(_, o)| &o.items);
    let cancelled = cancellations.iter().flat_map(|(_, o)| &o.items);
    placed
        .chain(cancelled)
        .map(|line| line.sku.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Decides every order placed for the first time; returns how many placements were repeats.
async fn place(
    tx: &mut PgConnection,
    placements: &[(Uuid, &OrderPlaced)],
    stock: &mut HashMap<String, Level>,
    replies: &mut Vec<OutboxMessage>,
) -> Result<usize, HandlerError> {
    if placements.is_empty() {
        return Ok(0);
    }
    // An order decided before, by an earlier event (or a tombstone), is left as it was.
    let ids: Vec<Uuid> = placements.iter().map(|(_, o)| o.order_id).collect();
    let mut decided: HashSet<Uuid> = sqlx::query_scalar!(
        "SELECT order_id FROM reservations WHERE order_id = ANY($1)",
        &ids
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let orders: Vec<(Uuid, &OrderPlaced)> = placements
        .iter()
        .copied()
        .filter(|(_, order)| decided.insert(order.order_id))
        .collect();
    let repeated = placements.len() - orders.len();
    if orders.is_empty() {
        return Ok(repeated);
    }

    let decisions: Vec<Decision> = orders
        .iter()
        .map(|(_, order)| decide(stock, order))
        .collect();
    let taken: BTreeMap<&str, i32> = stock
        .iter()
        .filter(|(_, level)| level.taken > 0)
        .map(|(sku, level)| (sku.as_str(), level.taken))
        .collect();
    // `as &[&str]`: the macro's check would want `String`s, which encode alike.
    sqlx::query!(
        "UPDATE stock SET available = available - taken.quantity, updated_at = now()
         FROM UNNEST($1::text[], $2::int[]) AS taken (sku, quantity)
         WHERE stock.sku = taken.sku",
        &taken.keys().copied().collect::<Vec<_>>() as &[&str],
        &taken.values().copied().collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    record(tx, &orders, &decisions).await?;

    let now = Utc::now();
    for ((_, order), decision) in orders.iter().zip(&decisions) {
        let order_id = order.order_id;
        replies.push(match &decision.rejected {
            None => {
                tracing::info!(%order_id, "stock reserved");
                OutboxMessage::of(&Envelope::new(StockReserved { order_id }, now))
            }
            Some(reason) => {
                tracing::warn!(%order_id, %reason, "order rejected");
                let reason = reason.clone();
                OutboxMessage::of(&Envelope::new(StockRejected { order_id, reason }, now))
            }
        });
    }
    Ok(repeated)
}

/// One SKU's stock while a batch is decided: what was there, and what the batch takes.
struct Level {
    available: i32,
    taken: i32,
}

struct Decision {
    /// Units wanted per SKU, lines for the same SKU added up.
    wanted: BTreeMap<String, i32>,
    /// Why the order could not be covered; `None` when its stock was reserved.
    rejected: Option<String>,
}

/// Locks the stock rows of `skus` (sorted) in that order.
async fn lock_stock(
    tx: &mut PgConnection,
    skus: Vec<&str>,
) -> sqlx::Result<HashMap<String, Level>> {
    if skus.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
        &skus as &[&str],
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.sku,
                Level {
                    available: row.available,
                    taken: 0,
                },
            )
        })
        .collect())
}

/// Takes the order's stock if every SKU has enough left; otherwise takes nothing and says why.
fn decide(stock: &mut HashMap<String, Level>, order: &OrderPlaced) -> Decision {
    let mut wanted = BTreeMap::new();
    for line in &order.items {
        *wanted.entry(line.sku.clone()).or_insert(0) += line.quantity;
    }
    let shortfalls: Vec<String> = wanted
        .iter()
        .filter_map(|(sku, quantity)| match stock.get(sku) {
            None => Some(format!("{sku} is not stocked")),
            Some(level) if level.available - level.taken < *quantity => Some(format!(
                "{sku}: {quantity} wanted, {} available",
                level.available - level.taken
            )),
            Some(_) => None,
        })
        .collect();
    if !shortfalls.is_empty() {
        return Decision {
            wanted,
            rejected: Some(format!("insufficient stock: {}", shortfalls.join("; "))),
        };
    }
    for (sku, quantity) in &wanted {
        stock.get_mut(sku).expect("checked above").taken += quantity;
    }
    Decision {
        wanted,
        rejected: None,
    }
}

/// Stores each order's decision and the items it concerned.
async fn record(
    tx: &mut PgConnection,
    orders: &[(Uuid, &OrderPlaced)],
    decisions: &[Decision],
) -> sqlx::Result<()> {
    let status = |d: &Decision| {
        if d.rejected.is_none() {
            "reserved"
        } else {
            "rejected"
        }
    };
    sqlx::query!(
        "INSERT INTO reservations (order_id, event_id, status, reason)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[])",
        &orders.iter().map(|(_, o)| o.order_id).collect::<Vec<_>>(),
        &orders
            .iter()
            .map(|(event_id, _)| *event_id)
            .collect::<Vec<_>>(),
        &decisions.iter().map(status).collect::<Vec<_>>() as &[&str],
        &decisions
            .iter()
            .map(|d| d.rejected.as_deref())
            .collect::<Vec<_>>() as &[Option<&str>],
    )
    .execute(&mut *tx)
    .await?;
    let (mut order_ids, mut skus, mut quantities) = (Vec::new(), Vec::new(), Vec::new());
    for ((_, order), decision) in orders.iter().zip(decisions) {
        for (sku, quantity) in &decision.wanted {
            order_ids.push(order.order_id);
            skus.push(sku.as_str());
            quantities.push(*quantity);
        }
    }
    sqlx::query!(
        "INSERT INTO reservation_items (order_id, sku, quantity)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[])",
        &order_ids,
        &skus as &[&str],
        &quantities,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Compensates every cancelled order, after the batch's placements; returns how many
/// cancellations were repeats.
async fn cancel(
    tx: &mut PgConnection,
    cancellations: &[(Uuid, &OrderCancelled)],
    replies: &mut Vec<OutboxMessage>,
) -> Result<usize, HandlerError> {
    if cancellations.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = cancellations.iter().map(|(_, o)| o.order_id).collect();
    let mut status: HashMap<Uuid, String> = sqlx::query!(
        "SELECT order_id, status FROM reservations WHERE order_id = ANY($1)
         ORDER BY order_id FOR UPDATE",
        &ids,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (row.order_id, row.status))
    .collect();

    let mut repeated = 0;
    let mut released: Vec<(Uuid, String)> = Vec::new();
    let mut tombstones: Vec<(Uuid, Uuid)> = Vec::new();
    for (event_id, order) in cancellations {
        let order_id = order.order_id;
        match status.get(&order_id).map(String::as_str) {
            Some("reserved") => {
                released.push((order_id, format!("order cancelled: {}", order.reason)));
                status.insert(order_id, "released".to_owned());
            }
            // Nothing was taken, so there is nothing to give back.
            Some("rejected") => {}
            Some(_) => repeated += 1,
            None => {
                tombstones.push((order_id, *event_id));
                status.insert(order_id, "released".to_owned());
            }
        }
    }
    release(tx, &released).await?;
    sqlx::query!(
        "INSERT INTO reservations (order_id, event_id, status, reason)
         SELECT order_id, event_id, 'released', $3
         FROM UNNEST($1::uuid[], $2::uuid[]) AS t (order_id, event_id)",
        &tombstones.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        &tombstones
            .iter()
            .map(|(_, event)| *event)
            .collect::<Vec<_>>(),
        CANCELLED_BEFORE_PLACED,
    )
    .execute(&mut *tx)
    .await?;

    let now = Utc::now();
    for (order_id, _) in &released {
        tracing::info!(%order_id, "stock released");
        replies.push(OutboxMessage::of(&Envelope::new(
            StockReleased {
                order_id: *order_id,
            },
            now,
        )));
    }
    for (order_id, _) in &tombstones {
        tracing::warn!(%order_id, "order cancelled before its placement arrived; nothing to release");
    }
    Ok(repeated)
}

/// Puts the stock of the `released` reservations back and marks them released, with why.
async fn release(tx: &mut PgConnection, released: &[(Uuid, String)]) -> sqlx::Result<()> {
    if released.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = released.iter().map(|(id, _)| *id).collect();
    let back = sqlx::query!(
        r#"SELECT sku, SUM(quantity)::int AS "quantity!" FROM reservation_items
         WHERE order_id = ANY($1)
         GROUP BY sku ORDER BY sku"#,
        &ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (skus, quantities): (Vec<String>, Vec<i32>) =
        back.into_iter().map(|row| (row.sku, row.quantity)).unzip();
    // Already locked from the cancellations' items; in SKU order again in case the
    // reservation's items differ from what the event says.
    sqlx::query!(
        "SELECT 1 AS locked FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
        &skus,
    )
    .fetch_all(&mut *tx) // the macro's `Map` has no `execute`; the rows are few and dropped
    .await?;
    sqlx::query!(
        "UPDATE stock SET available = available + back.quantity, updated_at = now()
         FROM UNNEST($1::text[], $2::int[]) AS back (sku, quantity)
         WHERE stock.sku = back.sku",
        &skus,
        &quantities,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE reservations SET status = 'released', reason = r.reason, updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[]) AS r (order_id, reason)
         WHERE reservations.order_id = r.order_id",
        &ids,
        &released
            .iter()
            .map(|(_, reason)| reason.as_str())
            .collect::<Vec<_>>() as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

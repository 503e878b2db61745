use std::collections::{BTreeMap, HashMap, HashSet};

use shared_events::kafka::{Applied, Handler, HandlerError};
use shared_events::{Envelope, Event, OrderPlaced};
use sqlx::PgConnection;
use uuid::Uuid;

/// Reserves the stock each order needs, all its items or none, in the order the orders came.
pub struct ReserveStock;

impl Handler for ReserveStock {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let orders: Vec<(Uuid, &OrderPlaced)> = events
            .iter()
            .map(|event| {
                let Event::OrderPlaced(order) = &event.data;
                (event.meta.event_id, order)
            })
            .collect();
        // An order decided before, by an earlier event, is left as it was.
        let ids: Vec<Uuid> = orders.iter().map(|(_, o)| o.order_id).collect();
        let mut decided: HashSet<Uuid> =
            sqlx::query_scalar("SELECT order_id FROM reservations WHERE order_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let orders: Vec<(Uuid, &OrderPlaced)> = orders
            .into_iter()
            .filter(|(_, order)| decided.insert(order.order_id))
            .collect();
        let repeated_orders = events.len() - orders.len();
        if orders.is_empty() {
            return Ok(Applied { repeated_orders });
        }

        let mut stock = lock_stock(tx, &orders).await?;
        let decisions: Vec<Decision> = orders
            .iter()
            .map(|(_, order)| decide(&mut stock, order))
            .collect();
        let taken: BTreeMap<&str, i32> = stock
            .iter()
            .filter(|(_, level)| level.taken > 0)
            .map(|(sku, level)| (sku.as_str(), level.taken))
            .collect();
        sqlx::query(
            "UPDATE stock SET available = available - taken.quantity, updated_at = now()
             FROM UNNEST($1::text[], $2::int[]) AS taken (sku, quantity)
             WHERE stock.sku = taken.sku",
        )
        .bind(taken.keys().collect::<Vec<_>>())
        .bind(taken.values().collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        record(tx, &orders, &decisions).await?;

        for ((_, order), decision) in orders.iter().zip(&decisions) {
            match &decision.rejected {
                None => tracing::info!(order_id = %order.order_id, "stock reserved"),
                Some(reason) => {
                    tracing::warn!(order_id = %order.order_id, %reason, "order rejected")
                }
            }
        }
        Ok(Applied { repeated_orders })
    }
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

/// Locks the stock rows of every SKU in the batch, in SKU order, so that concurrent
/// batches for overlapping SKUs cannot deadlock.
async fn lock_stock(
    tx: &mut PgConnection,
    orders: &[(Uuid, &OrderPlaced)],
) -> sqlx::Result<HashMap<String, Level>> {
    let skus: Vec<&str> = orders
        .iter()
        .flat_map(|(_, order)| order.items.iter().map(|line| line.sku.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sku, available)| {
            (
                sku,
                Level {
                    available,
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
    sqlx::query(
        "INSERT INTO reservations (order_id, event_id, status, reason)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[])",
    )
    .bind(orders.iter().map(|(_, o)| o.order_id).collect::<Vec<_>>())
    .bind(
        orders
            .iter()
            .map(|(event_id, _)| *event_id)
            .collect::<Vec<_>>(),
    )
    .bind(decisions.iter().map(status).collect::<Vec<_>>())
    .bind(
        decisions
            .iter()
            .map(|d| d.rejected.as_deref())
            .collect::<Vec<_>>(),
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
    sqlx::query(
        "INSERT INTO reservation_items (order_id, sku, quantity)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[])",
    )
    .bind(&order_ids)
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

use std::collections::{BTreeMap, HashMap};

use shared_events::db::begin_first_delivery;
use shared_events::kafka::{Handled, Handler, HandlerError};
use shared_events::{Envelope, Event, OrderPlaced};
use sqlx::{PgConnection, PgPool};

/// Reserves the stock an order needs, all items or none.
pub struct ReserveStock {
    pub pool: PgPool,
}

impl Handler for ReserveStock {
    async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
        let Event::OrderPlaced(order) = &event.data;
        let Some(mut tx) = begin_first_delivery(&self.pool, event.meta.event_id).await? else {
            return Ok(Handled::Duplicate);
        };
        let decision = reserve(&mut tx, order).await?;
        sqlx::query(
            "INSERT INTO reservations (order_id, event_id, status, reason) VALUES ($1, $2, $3, $4)",
        )
        .bind(order.order_id)
        .bind(event.meta.event_id)
        .bind(if decision.is_ok() {
            "reserved"
        } else {
            "rejected"
        })
        .bind(decision.as_ref().err())
        .execute(&mut *tx)
        .await?;
        let (skus, quantities): (Vec<&str>, Vec<i32>) = wanted(order).into_iter().unzip();
        sqlx::query(
            "INSERT INTO reservation_items (order_id, sku, quantity)
             SELECT $1, * FROM UNNEST($2::text[], $3::int[])",
        )
        .bind(order.order_id)
        .bind(&skus)
        .bind(&quantities)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        match decision {
            Ok(()) => tracing::info!(order_id = %order.order_id, "stock reserved"),
            Err(reason) => tracing::warn!(order_id = %order.order_id, %reason, "order rejected"),
        }
        Ok(Handled::Applied)
    }
}

/// Units wanted per SKU, lines for the same SKU added up.
fn wanted(order: &OrderPlaced) -> BTreeMap<&str, i32> {
    let mut wanted = BTreeMap::new();
    for line in &order.items {
        *wanted.entry(line.sku.as_str()).or_insert(0) += line.quantity;
    }
    wanted
}

/// Takes the stock if every SKU has enough; otherwise takes nothing and says why.
async fn reserve(tx: &mut PgConnection, order: &OrderPlaced) -> sqlx::Result<Result<(), String>> {
    let wanted = wanted(order);
    let skus: Vec<&str> = wanted.keys().copied().collect();
    // Locked in SKU order, so concurrent orders for overlapping SKUs cannot deadlock.
    let available: HashMap<String, i32> = sqlx::query_as(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let shortfalls: Vec<String> = wanted
        .iter()
        .filter_map(|(sku, quantity)| match available.get(*sku) {
            None => Some(format!("{sku} is not stocked")),
            Some(have) if have < quantity => {
                Some(format!("{sku}: {quantity} wanted, {have} available"))
            }
            Some(_) => None,
        })
        .collect();
    if !shortfalls.is_empty() {
        return Ok(Err(format!(
            "insufficient stock: {}",
            shortfalls.join("; ")
        )));
    }
    let quantities: Vec<i32> = wanted.values().copied().collect();
    sqlx::query(
        "UPDATE stock SET available = available - wanted.quantity, updated_at = now()
         FROM UNNEST($1::text[], $2::int[]) AS wanted (sku, quantity)
         WHERE stock.sku = wanted.sku",
    )
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    Ok(Ok(()))
}

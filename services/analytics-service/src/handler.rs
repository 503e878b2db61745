//! The Analytics Service's part in the saga, on topic `orders`:
//! - `order_placed`: one more order placed;
//! - `order_confirmed`: one more confirmed, and its total and items added to the revenue and
//!   item sales, which count confirmed orders only;
//! - `order_cancelled`: one more cancelled, and one more for its cause (`unknown` for a
//!   version 1 event, which did not say).
//!
//! Each order counts once per kind. A placement replayed from the dead-letter topic after its
//! order was cancelled still counts as placed: it was.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use shop_runtime::kafka::{Applied, Handler, HandlerError};
use shop_runtime::{Envelope, Event, OrderLine};
use sqlx::PgConnection;
use uuid::Uuid;

/// Adds each order to the running totals as it is placed and as it is decided.
pub struct CountOrders;

/// What an event counts an order as; stored in `counted_orders.kind` and `order_counts.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Placed,
    Confirmed,
    Cancelled,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Placed => "placed",
            Kind::Confirmed => "confirmed",
            Kind::Cancelled => "cancelled",
        }
    }
}

/// One event's contribution, whatever its type.
struct Count<'a> {
    order_id: Uuid,
    kind: Kind,
    total_cents: i64,
    currency: &'a str,
    items: &'a [OrderLine],
    occurred_at: DateTime<Utc>,
    /// A cancellation's cause, as `cancellation_causes.cause` stores it.
    cause: Option<&'static str>,
}

impl<'a> Count<'a> {
    fn of(event: &'a Envelope<Event>) -> Option<Self> {
        let mut cause = None;
        let (kind, order_id, total_cents, currency, items) = match &event.data {
            Event::OrderPlaced(o) => (
                Kind::Placed,
                o.order_id,
                o.total_cents,
                &o.currency,
                &o.items,
            ),
            Event::OrderConfirmed(o) => (
                Kind::Confirmed,
                o.order_id,
                o.total_cents,
                &o.currency,
                &o.items,
            ),
            Event::OrderCancelled(o) => {
                cause = Some(o.cause.map_or("unknown", |cause| cause.as_str()));
                (
                    Kind::Cancelled,
                    o.order_id,
                    o.total_cents,
                    &o.currency,
                    &o.items,
                )
            }
            // The other services' answers are steps along the way, not counted.
            _ => return None,
        };
        Some(Count {
            order_id,
            kind,
            total_cents,
            currency,
            items,
            occurred_at: event.meta.occurred_at,
            cause,
        })
    }
}

impl Handler for CountOrders {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::ANALYTICS_SERVICE;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let counts: Vec<Count<'_>> = events.iter().filter_map(|e| Count::of(e)).collect();
        if counts.is_empty() {
            return Ok(Applied::default());
        }
        let mut new = claim(tx, &counts).await?;

        // Kinds are independent of each other, so the batch's order among them does not
        // matter. Summed per key first: each row is updated once, in key order, so two
        // instances updating the same rows cannot deadlock.
        let mut orders: BTreeMap<&str, i64> = BTreeMap::new();
        let mut revenue: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut items: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        let mut causes: BTreeMap<&str, i64> = BTreeMap::new();
        let mut repeated_orders = 0;
        for count in &counts {
            if !new.remove(&(count.order_id, count.kind.as_str().to_owned())) {
                repeated_orders += 1;
                continue;
            }
            *orders.entry(count.kind.as_str()).or_default() += 1;
            if let Some(cause) = count.cause {
                *causes.entry(cause).or_default() += 1;
            }
            if count.kind == Kind::Confirmed {
                let totals = revenue.entry(count.currency).or_default();
                totals.0 += 1;
                totals.1 += count.total_cents;
                for line in count.items {
                    let sold = items.entry(&line.sku).or_default();
                    sold.0 += i64::from(line.quantity);
                    sold.1 += i64::from(line.quantity) * line.unit_price_cents;
                    sold.2 += 1;
                }
            }
            tracing::info!(order_id = %count.order_id, kind = count.kind.as_str(), "order counted");
        }
        if repeated_orders > 0 {
            tracing::warn!(repeated_orders, "these orders were counted before");
        }
        add(tx, &orders, &revenue, &items, &causes).await?;
        Ok(Applied { repeated_orders })
    }
}

/// Records each (order, kind) of `counts` not counted before; returns those, which are the
/// only ones that reach the totals. `counted_orders` is the source of truth.
async fn claim(
    tx: &mut PgConnection,
    counts: &[Count<'_>],
) -> sqlx::Result<HashSet<(Uuid, String)>> {
    // The first event of each (order, kind) in the batch, in key order.
    let mut first: BTreeMap<(Uuid, Kind), &Count<'_>> = BTreeMap::new();
    for count in counts {
        first.entry((count.order_id, count.kind)).or_insert(count);
    }
    // `as &[&str]` here and below: the macro's check wants `String`s, which encode alike.
    let rows = sqlx::query!(
        "INSERT INTO counted_orders (order_id, kind, total_cents, currency, occurred_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[])
         ON CONFLICT (order_id, kind) DO NOTHING
         RETURNING order_id, kind",
        &first.values().map(|c| c.order_id).collect::<Vec<_>>(),
        &first.values().map(|c| c.kind.as_str()).collect::<Vec<_>>() as &[&str],
        &first.values().map(|c| c.total_cents).collect::<Vec<_>>(),
        &first.values().map(|c| c.currency).collect::<Vec<_>>() as &[&str],
        &first.values().map(|c| c.occurred_at).collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.order_id, row.kind))
        .collect())
}

/// Adds the new counts to the running totals, each table in key order.
async fn add(
    tx: &mut PgConnection,
    orders: &BTreeMap<&str, i64>,
    revenue: &BTreeMap<&str, (i64, i64)>,
    items: &BTreeMap<&str, (i64, i64, i64)>,
    causes: &BTreeMap<&str, i64>,
) -> sqlx::Result<()> {
    if !causes.is_empty() {
        sqlx::query!(
            "INSERT INTO cancellation_causes (cause, orders)
             SELECT * FROM UNNEST($1::text[], $2::bigint[])
             ON CONFLICT (cause) DO UPDATE
             SET orders = cancellation_causes.orders + EXCLUDED.orders",
            &causes.keys().copied().collect::<Vec<_>>() as &[&str],
            &causes.values().copied().collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    if !orders.is_empty() {
        sqlx::query!(
            "INSERT INTO order_counts (kind, orders)
             SELECT * FROM UNNEST($1::text[], $2::bigint[])
             ON CONFLICT (kind) DO UPDATE SET orders = order_counts.orders + EXCLUDED.orders",
            &orders.keys().copied().collect::<Vec<_>>() as &[&str],
            &orders.values().copied().collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    if !revenue.is_empty() {
        sqlx::query!(
            "INSERT INTO revenue (currency, orders, revenue_cents)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (currency) DO UPDATE
             SET orders = revenue.orders + EXCLUDED.orders,
                 revenue_cents = revenue.revenue_cents + EXCLUDED.revenue_cents",
            &revenue.keys().copied().collect::<Vec<_>>() as &[&str],
            &revenue.values().map(|t| t.0).collect::<Vec<_>>(),
            &revenue.values().map(|t| t.1).collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    if !items.is_empty() {
        sqlx::query!(
            "INSERT INTO item_sales (sku, quantity, revenue_cents, orders)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
             ON CONFLICT (sku) DO UPDATE
             SET quantity = item_sales.quantity + EXCLUDED.quantity,
                 revenue_cents = item_sales.revenue_cents + EXCLUDED.revenue_cents,
                 orders = item_sales.orders + EXCLUDED.orders",
            &items.keys().copied().collect::<Vec<_>>() as &[&str],
            &items.values().map(|s| s.0).collect::<Vec<_>>(),
            &items.values().map(|s| s.1).collect::<Vec<_>>(),
            &items.values().map(|s| s.2).collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

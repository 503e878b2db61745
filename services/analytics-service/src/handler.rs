use std::collections::{BTreeMap, HashSet};

use shared_events::kafka::{Applied, Handler, HandlerError};
use shared_events::{Envelope, Event, OrderPlaced};
use sqlx::PgConnection;
use uuid::Uuid;

/// Adds each order to the running totals.
pub struct CountOrder;

impl Handler for CountOrder {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let orders: Vec<(&Envelope<Event>, &OrderPlaced)> = events
            .iter()
            .map(|event| {
                let Event::OrderPlaced(order) = &event.data;
                (*event, order)
            })
            .collect();
        // `counted_orders` is the source of truth; only orders new to it reach the totals.
        let counted: HashSet<Uuid> = sqlx::query_scalar(
            "INSERT INTO counted_orders (order_id, total_cents, currency, occurred_at)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[])
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
        )
        .bind(orders.iter().map(|(_, o)| o.order_id).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|(_, o)| o.total_cents)
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|(_, o)| o.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|(e, _)| e.meta.occurred_at)
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

        // Summed per currency and SKU first: each row is updated once, in key order, so two
        // instances updating the same rows cannot deadlock.
        let mut revenue: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut items: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        let mut new = counted.clone();
        for (_, order) in &orders {
            if !new.remove(&order.order_id) {
                continue;
            }
            let totals = revenue.entry(&order.currency).or_default();
            totals.0 += 1;
            totals.1 += order.total_cents;
            for line in &order.items {
                let sold = items.entry(&line.sku).or_default();
                sold.0 += i64::from(line.quantity);
                sold.1 += i64::from(line.quantity) * line.unit_price_cents;
                sold.2 += 1;
            }
            tracing::info!(order_id = %order.order_id, "order counted");
        }
        if !revenue.is_empty() {
            sqlx::query(
                "INSERT INTO revenue (currency, orders, revenue_cents)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (currency) DO UPDATE
                 SET orders = revenue.orders + EXCLUDED.orders,
                     revenue_cents = revenue.revenue_cents + EXCLUDED.revenue_cents",
            )
            .bind(revenue.keys().collect::<Vec<_>>())
            .bind(revenue.values().map(|t| t.0).collect::<Vec<_>>())
            .bind(revenue.values().map(|t| t.1).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO item_sales (sku, quantity, revenue_cents, orders)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (sku) DO UPDATE
                 SET quantity = item_sales.quantity + EXCLUDED.quantity,
                     revenue_cents = item_sales.revenue_cents + EXCLUDED.revenue_cents,
                     orders = item_sales.orders + EXCLUDED.orders",
            )
            .bind(items.keys().collect::<Vec<_>>())
            .bind(items.values().map(|s| s.0).collect::<Vec<_>>())
            .bind(items.values().map(|s| s.1).collect::<Vec<_>>())
            .bind(items.values().map(|s| s.2).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        Ok(Applied {
            repeated_orders: events.len() - counted.len(),
        })
    }
}

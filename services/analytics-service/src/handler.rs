use shared_events::db::begin_first_delivery;
use shared_events::kafka::{Handled, Handler, HandlerError};
use shared_events::{Envelope, Event};
use sqlx::PgPool;

/// Adds the order to the running totals.
pub struct CountOrder {
    pub pool: PgPool,
}

impl Handler for CountOrder {
    async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
        let Event::OrderPlaced(order) = &event.data;
        let Some(mut tx) = begin_first_delivery(&self.pool, event.meta.event_id).await? else {
            return Ok(Handled::Duplicate);
        };
        let counted = sqlx::query(
            "INSERT INTO counted_orders (order_id, total_cents, currency, occurred_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order.order_id)
        .bind(order.total_cents)
        .bind(&order.currency)
        .bind(event.meta.occurred_at)
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() == 0 {
            tracing::warn!(order_id = %order.order_id, "order was already counted by an earlier event");
            tx.commit().await?;
            return Ok(Handled::Duplicate);
        }
        sqlx::query(
            "INSERT INTO revenue (currency, orders, revenue_cents) VALUES ($1, 1, $2)
             ON CONFLICT (currency) DO UPDATE
             SET orders = revenue.orders + 1, revenue_cents = revenue.revenue_cents + EXCLUDED.revenue_cents",
        )
        .bind(&order.currency)
        .bind(order.total_cents)
        .execute(&mut *tx)
        .await?;
        for line in &order.items {
            sqlx::query(
                "INSERT INTO item_sales (sku, quantity, revenue_cents, orders) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (sku) DO UPDATE
                 SET quantity = item_sales.quantity + EXCLUDED.quantity,
                     revenue_cents = item_sales.revenue_cents + EXCLUDED.revenue_cents,
                     orders = item_sales.orders + 1",
            )
            .bind(&line.sku)
            .bind(i64::from(line.quantity))
            .bind(i64::from(line.quantity) * line.unit_price_cents)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(order_id = %order.order_id, "order counted");
        Ok(Handled::Applied)
    }
}

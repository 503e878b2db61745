use shared_events::db::begin_first_delivery;
use shared_events::kafka::{Handled, Handler, HandlerError};
use shared_events::{Envelope, Event};
use sqlx::PgPool;

/// Records a charge of the order's total. The payment gateway is simulated: every charge
/// succeeds. A real one would be called with the order id as its idempotency key.
pub struct ChargeOrder {
    pub pool: PgPool,
}

impl Handler for ChargeOrder {
    async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
        let Event::OrderPlaced(order) = &event.data;
        let Some(mut tx) = begin_first_delivery(&self.pool, event.meta.event_id).await? else {
            return Ok(Handled::Duplicate);
        };
        let charged = sqlx::query(
            "INSERT INTO charges (order_id, event_id, customer_id, amount_cents, currency, status)
             VALUES ($1, $2, $3, $4, $5, 'charged') ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order.order_id)
        .bind(event.meta.event_id)
        .bind(&order.customer_id)
        .bind(order.total_cents)
        .bind(&order.currency)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if charged.rows_affected() == 0 {
            tracing::warn!(order_id = %order.order_id, "order was already charged by an earlier event");
            return Ok(Handled::Duplicate);
        }
        tracing::info!(order_id = %order.order_id, amount_cents = order.total_cents, "order charged");
        Ok(Handled::Applied)
    }
}

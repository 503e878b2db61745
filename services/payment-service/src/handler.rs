use shared_events::kafka::{Applied, Handler, HandlerError};
use shared_events::{Envelope, Event};
use sqlx::PgConnection;

/// Records a charge of each order's total. The payment gateway is simulated: every charge
/// succeeds. A real one would be called with the order id as its idempotency key.
pub struct ChargeOrder;

impl Handler for ChargeOrder {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let mut charges = Charges::default();
        for event in events {
            let Event::OrderPlaced(order) = &event.data;
            charges.order_ids.push(order.order_id);
            charges.event_ids.push(event.meta.event_id);
            charges.customer_ids.push(&order.customer_id);
            charges.amounts.push(order.total_cents);
            charges.currencies.push(&order.currency);
        }
        // One charge per order: an order charged before (or twice in this batch) is skipped.
        let charged: Vec<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO charges (order_id, event_id, customer_id, amount_cents, currency, status)
             SELECT *, 'charged' FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[])
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
        )
        .bind(&charges.order_ids)
        .bind(&charges.event_ids)
        .bind(&charges.customer_ids)
        .bind(&charges.amounts)
        .bind(&charges.currencies)
        .fetch_all(&mut *tx)
        .await?;
        for order_id in &charged {
            tracing::info!(%order_id, "order charged");
        }
        Ok(Applied {
            repeated_orders: events.len() - charged.len(),
        })
    }
}

/// The batch's charges, column by column, as `UNNEST` takes them.
#[derive(Default)]
struct Charges<'a> {
    order_ids: Vec<uuid::Uuid>,
    event_ids: Vec<uuid::Uuid>,
    customer_ids: Vec<&'a str>,
    amounts: Vec<i64>,
    currencies: Vec<&'a str>,
}

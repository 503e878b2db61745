use std::fmt::Write;

use anyhow::Context;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use shared_events::db::begin_first_delivery;
use shared_events::kafka::{Handled, Handler, HandlerError};
use shared_events::{Envelope, Event, OrderPlaced};
use sqlx::PgPool;

use crate::mailer::Mailer;

/// Sends the order confirmation and records it.
///
/// Mail cannot be part of a database transaction, so this is the one effect that is
/// at-least-once rather than exactly-once: a crash after sending but before committing
/// sends the mail again on redelivery. The Message-ID is derived from the event id, so
/// mail clients and the mail directory (one file per order) see the repeat as the same mail.
pub struct SendConfirmation {
    pub pool: PgPool,
    pub mailer: Mailer,
    pub from: Mailbox,
}

impl Handler for SendConfirmation {
    async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
        let Event::OrderPlaced(order) = &event.data;
        let Some(mut tx) = begin_first_delivery(&self.pool, event.meta.event_id).await? else {
            return Ok(Handled::Duplicate);
        };
        let already_sent: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM emails WHERE order_id = $1)")
                .bind(order.order_id)
                .fetch_one(&mut *tx)
                .await?;
        if already_sent {
            tracing::warn!(order_id = %order.order_id, "confirmation already sent for this order");
            tx.commit().await?;
            return Ok(Handled::Duplicate);
        }
        let to: Mailbox = order
            .customer_email
            .parse()
            .with_context(|| format!("customer email {:?} is not a mailbox", order.customer_email))
            .map_err(HandlerError::Permanent)?;
        let subject = format!("Your order {} is confirmed", short(&order.order_id));
        let message_id = format!("<{}@shop.local>", event.meta.event_id);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(&subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body(order))
            .context("cannot build the confirmation")
            .map_err(HandlerError::Permanent)?;
        self.mailer
            .send(order.order_id, message)
            .await
            .map_err(HandlerError::Transient)?;
        sqlx::query(
            "INSERT INTO emails (order_id, event_id, recipient, subject, message_id, transport)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(order.order_id)
        .bind(event.meta.event_id)
        .bind(to.email.to_string())
        .bind(&subject)
        .bind(&message_id)
        .bind(self.mailer.transport())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.order_id, recipient = %to.email, "confirmation sent");
        Ok(Handled::Applied)
    }
}

fn short(id: &uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_uppercase()
}

fn cents(amount: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", amount / 100, amount % 100)
}

fn body(order: &OrderPlaced) -> String {
    let mut text = format!("Thank you for your order {}.\n\n", order.order_id);
    for line in &order.items {
        let line_total = i64::from(line.quantity) * line.unit_price_cents;
        let _ = writeln!(
            text,
            "  {} x {:<8} {:>14}",
            line.quantity,
            line.sku,
            cents(line_total, &order.currency)
        );
    }
    let _ = writeln!(
        text,
        "\n  Total: {}",
        cents(order.total_cents, &order.currency)
    );
    text.push_str("\nWe will let you know when it ships.\n");
    text
}

use std::collections::HashSet;
use std::fmt::Write;

use anyhow::Context;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use shared_events::kafka::{Applied, Handler, HandlerError};
use shared_events::{Envelope, Event, OrderPlaced};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::mailer::Mailer;

/// Sends each order's confirmation and records it.
///
/// Mail cannot be part of a database transaction, so this is the one effect that is
/// at-least-once rather than exactly-once: a crash (or a failed batch) after sending but
/// before committing sends the mail again on redelivery. The Message-ID is derived from the
/// event id, so mail clients and the mail directory (one file per order) see the repeat as
/// the same mail.
pub struct SendConfirmation {
    pub mailer: Mailer,
    pub from: Mailbox,
}

/// A confirmation ready to go.
struct Confirmation {
    order_id: Uuid,
    event_id: Uuid,
    to: Mailbox,
    subject: String,
    message_id: String,
    message: Message,
}

impl Handler for SendConfirmation {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.meta.order_id).collect();
        let mut sent: HashSet<Uuid> =
            sqlx::query_scalar("SELECT order_id FROM emails WHERE order_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        // Every message is built before any is sent: an address that cannot be mailed fails
        // the batch before it has mailed anyone.
        let mut confirmations = Vec::new();
        for event in events {
            let Event::OrderPlaced(order) = &event.data;
            if sent.insert(order.order_id) {
                confirmations.push(self.confirmation(event.meta.event_id, order)?);
            }
        }
        let repeated_orders = events.len() - confirmations.len();
        if repeated_orders > 0 {
            tracing::warn!(
                repeated_orders,
                "confirmation already sent for these orders"
            );
        }
        for confirmation in &confirmations {
            self.mailer
                .send(confirmation.order_id, confirmation.message.clone())
                .await
                .map_err(HandlerError::Transient)?;
            tracing::info!(order_id = %confirmation.order_id, recipient = %confirmation.to.email, "confirmation sent");
        }
        sqlx::query(
            "INSERT INTO emails (order_id, event_id, recipient, subject, message_id, transport)
             SELECT *, $6 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])",
        )
        .bind(confirmations.iter().map(|c| c.order_id).collect::<Vec<_>>())
        .bind(confirmations.iter().map(|c| c.event_id).collect::<Vec<_>>())
        .bind(
            confirmations
                .iter()
                .map(|c| c.to.email.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            confirmations
                .iter()
                .map(|c| c.subject.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            confirmations
                .iter()
                .map(|c| c.message_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(self.mailer.transport())
        .execute(&mut *tx)
        .await?;
        Ok(Applied { repeated_orders })
    }
}

impl SendConfirmation {
    fn confirmation(
        &self,
        event_id: Uuid,
        order: &OrderPlaced,
    ) -> Result<Confirmation, HandlerError> {
        let to: Mailbox = order
            .customer_email
            .parse()
            .with_context(|| format!("customer email {:?} is not a mailbox", order.customer_email))
            .map_err(HandlerError::Permanent)?;
        let subject = format!("Your order {} is confirmed", short(&order.order_id));
        let message_id = format!("<{event_id}@shop.local>");
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(&subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body(order))
            .context("cannot build the confirmation")
            .map_err(HandlerError::Permanent)?;
        Ok(Confirmation {
            order_id: order.order_id,
            event_id,
            to,
            subject,
            message_id,
            message,
        })
    }
}

fn short(id: &Uuid) -> String {
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

//! The Email Service's part in the saga, on topic `orders`: one mail per order, once the
//! order is decided.
//! - `order_confirmed`: a confirmation, listing the items and the total;
//! - `order_cancelled`: a cancellation notice, with the reason and the items, saying that no
//!   money was taken;
//! - `order_placed`: nothing, as the order may still be refused.

use std::collections::HashSet;
use std::fmt::Write;

use anyhow::Context;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use shop_runtime::catalog::money;
use shop_runtime::kafka::{Applied, Handler, HandlerError};
use shop_runtime::{Envelope, Event, OrderLine, email};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::mailer::Mailer;

/// Tells each customer how their order ended, once, and records the mail.
///
/// Mail cannot be part of a database transaction, so this is the one effect that is
/// at-least-once rather than exactly-once: a crash (or a failed batch) after sending but
/// before committing sends the mail again on redelivery. The Message-ID is derived from the
/// event id, so mail clients and the mail directory (one file per order) see the repeat as
/// the same mail.
pub struct NotifyCustomer {
    pub mailer: Mailer,
    pub from: Mailbox,
}

/// Which mail an order gets; stored in `emails.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Confirmation,
    Cancellation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Confirmation => "confirmation",
            Kind::Cancellation => "cancellation",
        }
    }
}

/// What a mail says about an order: the part `order_confirmed` and `order_cancelled` share,
/// and the reason of a cancellation.
struct Decided<'a> {
    order_id: Uuid,
    customer_email: &'a str,
    items: &'a [OrderLine],
    total_cents: i64,
    currency: &'a str,
    /// `None` for a confirmation.
    cancelled_because: Option<&'a str>,
}

impl<'a> Decided<'a> {
    fn of(event: &'a Event) -> Option<Self> {
        match event {
            Event::OrderConfirmed(order) => Some(Decided {
                order_id: order.order_id,
                customer_email: &order.customer_email,
                items: &order.items,
                total_cents: order.total_cents,
                currency: &order.currency,
                cancelled_because: None,
            }),
            Event::OrderCancelled(order) => Some(Decided {
                order_id: order.order_id,
                customer_email: &order.customer_email,
                items: &order.items,
                total_cents: order.total_cents,
                currency: &order.currency,
                cancelled_because: Some(&order.reason),
            }),
            // A placed order is not decided yet; the other topics' events are not ours.
            _ => None,
        }
    }

    fn kind(&self) -> Kind {
        match self.cancelled_because {
            None => Kind::Confirmation,
            Some(_) => Kind::Cancellation,
        }
    }
}

/// A mail ready to go.
struct Mail {
    order_id: Uuid,
    event_id: Uuid,
    kind: Kind,
    to: Mailbox,
    subject: String,
    message_id: String,
    message: Message,
}

impl Handler for NotifyCustomer {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::EMAIL_SERVICE;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let decided: Vec<(Uuid, Decided<'_>)> = events
            .iter()
            .filter_map(|event| Some((event.meta.event_id, Decided::of(&event.data)?)))
            .collect();
        if decided.is_empty() {
            return Ok(Applied::default());
        }
        let ids: Vec<Uuid> = decided.iter().map(|(_, order)| order.order_id).collect();
        let mut mailed: HashSet<Uuid> =
            sqlx::query_scalar!("SELECT order_id FROM emails WHERE order_id = ANY($1)", &ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        // Every message is built before any is sent: an address that cannot be mailed fails
        // the batch before it has mailed anyone.
        let mut mails = Vec::new();
        for (event_id, order) in &decided {
            if mailed.insert(order.order_id) {
                mails.push(self.mail(*event_id, order)?);
            }
        }
        let repeated_orders = decided.len() - mails.len();
        if repeated_orders > 0 {
            tracing::warn!(repeated_orders, "these orders were mailed before");
        }
        for mail in &mails {
            self.mailer
                .send(mail.order_id, mail.message.clone())
                .await
                .map_err(HandlerError::Transient)?;
            tracing::info!(
                order_id = %mail.order_id,
                recipient = %mail.to.email,
                kind = mail.kind.as_str(),
                "mail sent"
            );
        }
        record(tx, &mails, self.mailer.transport()).await?;
        Ok(Applied { repeated_orders })
    }
}

impl NotifyCustomer {
    fn mail(&self, event_id: Uuid, order: &Decided<'_>) -> Result<Mail, HandlerError> {
        // The parser the Order Service accepted the address with, so this fails only for an
        // event that did not come through it.
        let to = email::parse_address(order.customer_email)
            .map_err(|reason| HandlerError::Permanent(anyhow::anyhow!(reason)))?;
        let kind = order.kind();
        let subject = match kind {
            Kind::Confirmation => format!("Your order {} is confirmed", short(&order.order_id)),
            Kind::Cancellation => format!("Your order {} is cancelled", short(&order.order_id)),
        };
        let message_id = format!("<{event_id}@shop.local>");
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(&subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body(order))
            .with_context(|| format!("cannot build the {} mail", kind.as_str()))
            .map_err(HandlerError::Permanent)?;
        Ok(Mail {
            order_id: order.order_id,
            event_id,
            kind,
            to,
            subject,
            message_id,
            message,
        })
    }
}

/// Stores the sent mails, one statement whatever their number.
async fn record(tx: &mut PgConnection, mails: &[Mail], transport: &str) -> sqlx::Result<()> {
    if mails.is_empty() {
        return Ok(());
    }
    // `as &[&str]`: the macro's check wants `String`s, which encode alike.
    sqlx::query!(
        "INSERT INTO emails (order_id, event_id, kind, recipient, subject, message_id, transport)
         SELECT *, $7
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])",
        &mails.iter().map(|m| m.order_id).collect::<Vec<_>>(),
        &mails.iter().map(|m| m.event_id).collect::<Vec<_>>(),
        &mails.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>() as &[&str],
        &mails
            .iter()
            .map(|m| m.to.email.to_string())
            .collect::<Vec<_>>(),
        &mails.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>() as &[&str],
        &mails
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>() as &[&str],
        transport,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_uppercase()
}

/// The text of the mail: plain ASCII in lines shorter than 76 characters, as long as the
/// event's words are, so that it travels as 7bit and reads the same in the raw `.eml`.
fn body(order: &Decided<'_>) -> String {
    let mut text = String::new();
    match order.cancelled_because {
        None => paragraph(
            &mut text,
            "",
            &format!("Thank you for your order {}.", order.order_id),
        ),
        Some(reason) => {
            paragraph(
                &mut text,
                "",
                &format!(
                    "Your order {} is cancelled and will not be sent. We are sorry.",
                    order.order_id
                ),
            );
            paragraph(&mut text, "", "Why:");
            paragraph(&mut text, "  ", reason);
            paragraph(&mut text, "", "What you ordered:");
        }
    }
    for line in order.items {
        let line_total = i64::from(line.quantity) * line.unit_price_cents;
        let _ = writeln!(
            text,
            "  {} x {:<8} {:>14}",
            line.quantity,
            line.sku,
            money(line_total, order.currency)
        );
    }
    let _ = writeln!(
        text,
        "\n  Total: {}\n",
        money(order.total_cents, order.currency)
    );
    match order.cancelled_because {
        None => paragraph(&mut text, "", "We will let you know when it ships."),
        Some(_) => paragraph(
            &mut text,
            "",
            "Nothing was charged: no money was taken from your card, and any amount \
             held for this order is released.",
        ),
    }
    text.truncate(text.trim_end().len());
    text.push('\n');
    text
}

/// Longest line written: a line of 75 characters or more would make the mail travel
/// quoted-printable, with `=` breaks in the raw `.eml`.
const WIDTH: usize = 74;

/// Appends `words` wrapped at [`WIDTH`], each line starting with `indent`, then a blank line.
/// A word longer than a line keeps a line of its own.
fn paragraph(text: &mut String, indent: &str, words: &str) {
    let mut column = 0;
    for word in words.split_whitespace() {
        if column > 0 && column + 1 + word.len() > WIDTH {
            text.push('\n');
            column = 0;
        }
        if column == 0 {
            text.push_str(indent);
            column = indent.len();
        } else {
            text.push(' ');
            column += 1;
        }
        text.push_str(word);
        column += word.len();
    }
    text.push_str("\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_are_wrapped_below_the_line_length_that_would_need_an_encoding() {
        let mut text = String::new();
        let reason =
            "insufficient stock: ".to_owned() + &"LT-006: 2 wanted, 1 available; ".repeat(5);
        paragraph(&mut text, "  ", &reason);
        assert!(
            text.lines()
                .all(|line| line.len() <= WIDTH && (line.is_empty() || line.starts_with("  "))),
            "{text}"
        );
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            reason.split_whitespace().collect::<Vec<_>>(),
            "every word kept, in order"
        );
        assert!(text.ends_with("available;\n\n"), "{text:?}");
    }
}

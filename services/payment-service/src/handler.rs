//! Payment's part in the saga, on topic `orders`:
//! - `order_placed`: authorize the order's total on the card (`payment_authorized`), or
//!   decline it (`payment_declined`, with why);
//! - `order_confirmed`: capture the authorization (`payment_captured`);
//! - `order_cancelled`: void the authorization (`payment_voided`); a declined payment has
//!   nothing to void.
//!
//! One payment per order, keyed by order id: an event with a new id about a step already
//! taken changes nothing. A cancellation that arrives before its placement (parked on the
//! dead-letter topic and replayed later) leaves a tombstone, a `voided` payment nothing was
//! authorized for, so that the late placement finds its order decided and authorizes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::anyhow;
use chrono::Utc;
use shop_runtime::catalog::money;
use shop_runtime::kafka::{Applied, Decision, Handler, HandlerError, OrderBatch};
use shop_runtime::outbox::{self, OutboxMessage};
use shop_runtime::{
    Envelope, Event, OrderPlaced, PaymentAuthorized, PaymentCaptured, PaymentDeclined,
    PaymentVoided,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::Status;

/// Why a tombstone was written instead of a payment.
pub const CANCELLED_BEFORE_PLACED: &str = "cancelled before payment saw the order";

/// Authorizes each order's total, then captures or voids it as the order ends. The card
/// gateway is simulated by one sandbox rule: a total above the card limit is declined. A
/// real gateway would be called with the order id as its idempotency key.
pub struct AuthorizePayment {
    /// Totals above this many cents are declined.
    pub card_limit_cents: i64,
}

impl AuthorizePayment {
    /// The gateway's answer for `amount_cents`: `None` if authorized, else why it declined.
    pub fn decline_reason(&self, amount_cents: i64, currency: &str) -> Option<String> {
        (amount_cents > self.card_limit_cents).then(|| {
            format!(
                "card declined: {} is over the card limit of {}",
                money(amount_cents, currency),
                money(self.card_limit_cents, currency)
            )
        })
    }
}

impl Handler for AuthorizePayment {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::PAYMENT_SERVICE;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let batch = OrderBatch::of(events);
        let settlements: Vec<Settlement<'_>> = batch
            .decisions
            .iter()
            .map(|(event_id, decision)| Settlement::of(*event_id, decision))
            .collect();
        let mut replies = Vec::new();
        let placed_repeats = self.authorize(tx, &batch.placements, &mut replies).await?;
        let settled_repeats = settle(tx, &settlements, &mut replies).await?;
        outbox::enqueue(tx, &replies).await?;
        Ok(Applied {
            repeated_orders: batch.late_placements + placed_repeats + settled_repeats,
        })
    }
}

/// An order's decision, as capturing or voiding its payment needs it.
struct Settlement<'a> {
    event_id: Uuid,
    order_id: Uuid,
    /// The cancellation's reason; `None` for a confirmation.
    cancelled: Option<&'a str>,
    customer_id: &'a str,
    total_cents: i64,
    currency: &'a str,
}

impl<'a> Settlement<'a> {
    fn of(event_id: Uuid, decision: &Decision<'a>) -> Self {
        let (order_id, cancelled, customer_id, total_cents, currency) = match *decision {
            Decision::Confirmed(o) => {
                (o.order_id, None, &o.customer_id, o.total_cents, &o.currency)
            }
            Decision::Cancelled(o) => (
                o.order_id,
                Some(o.reason.as_str()),
                &o.customer_id,
                o.total_cents,
                &o.currency,
            ),
        };
        Settlement {
            event_id,
            order_id,
            cancelled,
            customer_id,
            total_cents,
            currency,
        }
    }
}

impl AuthorizePayment {
    /// Authorizes or declines every order placed for the first time; returns how many
    /// placements were repeats.
    async fn authorize(
        &self,
        tx: &mut PgConnection,
        placements: &[(Uuid, &OrderPlaced)],
        replies: &mut Vec<OutboxMessage>,
    ) -> Result<usize, HandlerError> {
        if placements.is_empty() {
            return Ok(0);
        }
        let decisions: Vec<Option<String>> = placements
            .iter()
            .map(|(_, order)| self.decline_reason(order.total_cents, &order.currency))
            .collect();
        let status = |declined: &Option<String>| match declined {
            None => Status::Authorized.as_str(),
            Some(_) => Status::Declined.as_str(),
        };
        // One payment per order: an order seen before (or twice in this batch) is skipped.
        // `as &[&str]`: the macro's check wants `String`s, which encode alike.
        let inserted: HashSet<Uuid> = sqlx::query_scalar!(
            "INSERT INTO payments
                 (order_id, event_id, customer_id, amount_cents, currency, status, reason)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[],
                                  $6::text[], $7::text[])
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
            &placements
                .iter()
                .map(|(_, o)| o.order_id)
                .collect::<Vec<_>>(),
            &placements.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            &placements
                .iter()
                .map(|(_, o)| o.customer_id.as_str())
                .collect::<Vec<_>>() as &[&str],
            &placements
                .iter()
                .map(|(_, o)| o.total_cents)
                .collect::<Vec<_>>(),
            &placements
                .iter()
                .map(|(_, o)| o.currency.as_str())
                .collect::<Vec<_>>() as &[&str],
            &decisions.iter().map(status).collect::<Vec<_>>() as &[&str],
            &decisions.iter().map(Option::as_deref).collect::<Vec<_>>() as &[Option<&str>],
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

        let now = Utc::now();
        let mut answered = HashSet::new();
        for ((_, order), declined) in placements.iter().zip(decisions) {
            let order_id = order.order_id;
            // The first placement of an order in the batch is the one inserted.
            if !inserted.contains(&order_id) || !answered.insert(order_id) {
                continue;
            }
            replies.push(match declined {
                None => {
                    tracing::info!(%order_id, "payment authorized");
                    OutboxMessage::of(&Envelope::new(
                        PaymentAuthorized {
                            order_id,
                            amount_cents: order.total_cents,
                            currency: order.currency.clone(),
                        },
                        now,
                    ))
                }
                Some(reason) => {
                    tracing::warn!(%order_id, %reason, "payment declined");
                    OutboxMessage::of(&Envelope::new(PaymentDeclined { order_id, reason }, now))
                }
            });
        }
        Ok(placements.len() - inserted.len())
    }
}

/// A payment as a settlement finds it, locked.
struct Held {
    order_id: Uuid,
    status: Status,
    amount_cents: i64,
    currency: String,
}

/// Captures or voids each decided order's payment, after the batch's placements; returns
/// how many decisions were repeats.
async fn settle(
    tx: &mut PgConnection,
    settlements: &[Settlement<'_>],
    replies: &mut Vec<OutboxMessage>,
) -> Result<usize, HandlerError> {
    if settlements.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = settlements.iter().map(|s| s.order_id).collect();
    let mut payments: HashMap<Uuid, Held> = sqlx::query_as!(
        Held,
        r#"SELECT order_id, status AS "status: Status", amount_cents, currency FROM payments
         WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE"#,
        &ids,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|held| (held.order_id, held))
    .collect();

    let mut repeated = 0;
    // The new status of each payment that changes, and why (for a void).
    let mut changes: BTreeMap<Uuid, (Status, Option<String>)> = BTreeMap::new();
    let mut tombstones: Vec<&Settlement> = Vec::new();
    let now = Utc::now();
    for settlement in settlements {
        let order_id = settlement.order_id;
        let Some(held) = payments.get_mut(&order_id) else {
            if settlement.cancelled.is_none() {
                return Err(HandlerError::Permanent(anyhow!(
                    "order {order_id} was confirmed, but no payment was authorized for it"
                )));
            }
            tombstones.push(settlement);
            payments.insert(
                order_id,
                Held {
                    order_id,
                    status: Status::Voided,
                    amount_cents: settlement.total_cents,
                    currency: settlement.currency.to_owned(),
                },
            );
            continue;
        };
        let (amount_cents, currency) = (held.amount_cents, held.currency.clone());
        match (settlement.cancelled, held.status) {
            (None, Status::Authorized) => {
                held.status = Status::Captured;
                changes.insert(order_id, (Status::Captured, None));
                tracing::info!(%order_id, "payment captured");
                replies.push(OutboxMessage::of(&Envelope::new(
                    PaymentCaptured {
                        order_id,
                        amount_cents,
                        currency,
                    },
                    now,
                )));
            }
            (Some(reason), Status::Authorized) => {
                held.status = Status::Voided;
                changes.insert(
                    order_id,
                    (Status::Voided, Some(format!("order cancelled: {reason}"))),
                );
                tracing::info!(%order_id, "payment voided");
                replies.push(OutboxMessage::of(&Envelope::new(
                    PaymentVoided {
                        order_id,
                        amount_cents,
                        currency,
                    },
                    now,
                )));
            }
            (None, Status::Captured) | (Some(_), Status::Voided) => repeated += 1,
            // Nothing was held, so there is nothing to drop.
            (Some(_), Status::Declined) => {}
            (None, status @ (Status::Declined | Status::Voided)) => {
                return Err(HandlerError::Permanent(anyhow!(
                    "order {order_id} was confirmed, but its payment is {}, not authorized",
                    status.as_str()
                )));
            }
            (Some(_), Status::Captured) => {
                return Err(HandlerError::Permanent(anyhow!(
                    "order {order_id} was cancelled, but its payment was captured when it was confirmed"
                )));
            }
        }
    }

    sqlx::query!(
        "UPDATE payments SET status = c.status, reason = COALESCE(c.reason, payments.reason),
                             updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS c (order_id, status, reason)
         WHERE payments.order_id = c.order_id",
        &changes.keys().copied().collect::<Vec<_>>(),
        &changes
            .values()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>() as &[&str],
        &changes
            .values()
            .map(|(_, r)| r.as_deref())
            .collect::<Vec<_>>() as &[Option<&str>],
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO payments
             (order_id, event_id, customer_id, amount_cents, currency, status, reason)
         SELECT order_id, event_id, customer_id, amount_cents, currency, 'voided', $6
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[])
              AS t (order_id, event_id, customer_id, amount_cents, currency)",
        &tombstones.iter().map(|t| t.order_id).collect::<Vec<_>>(),
        &tombstones.iter().map(|t| t.event_id).collect::<Vec<_>>(),
        &tombstones.iter().map(|t| t.customer_id).collect::<Vec<_>>() as &[&str],
        &tombstones.iter().map(|t| t.total_cents).collect::<Vec<_>>(),
        &tombstones.iter().map(|t| t.currency).collect::<Vec<_>>() as &[&str],
        CANCELLED_BEFORE_PLACED,
    )
    .execute(&mut *tx)
    .await?;
    for tombstone in &tombstones {
        tracing::warn!(order_id = %tombstone.order_id, "order cancelled before its placement arrived; nothing to void");
    }
    Ok(repeated)
}

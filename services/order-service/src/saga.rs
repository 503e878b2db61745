//! The saga's coordinator: every order ends `confirmed` or `cancelled`, decided here.
//!
//! Inventory and Payment answer each `order_placed` in parallel, on their own topics. This
//! handler records every answer in the order's timeline and decides as soon as it can:
//! - stock reserved and payment authorized: `order_confirmed` (Payment then captures);
//! - stock rejected or payment declined: `order_cancelled`, with the refusal's reason
//!   (Inventory then releases what it reserved, Payment voids what it authorized).
//!
//! The decision and its event are written in one transaction (the event through the
//! outbox), and only while the order is `pending`: an order is decided once. An answer that
//! comes after the decision is recorded and changes nothing; the cancellation already
//! undoes whatever it agreed to. An order nobody answers within the saga's time-out is
//! cancelled by [`expire`], so no order waits forever.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use shop_runtime::catalog::money;
use shop_runtime::kafka::{Applied, Handler, HandlerError};
use shop_runtime::outbox::{self, OutboxMessage};
use shop_runtime::{CancelCause, Envelope, Event, OrderCancelled, OrderConfirmed, v1};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{OrderItem, Status};

/// Consumes Inventory's and Payment's answers and decides each order; cancellations are
/// written as the given version of `order_cancelled`.
pub struct DecideOrders(pub CancelledVersion);

/// Which version of `order_cancelled` the saga writes (`ORDER_CANCELLED_VERSION`): the
/// current one, 2, unless consumers that read only version 1 still run. A rolling upgrade
/// sets 1 until every consumer reads version 2, then drops the setting (docs/events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CancelledVersion {
    /// Version 1: no `cause` (the reason still says it in words).
    #[value(name = "1")]
    V1,
    /// Version 2: with `cause`.
    #[default]
    #[value(name = "2")]
    V2,
}

impl CancelledVersion {
    fn outbox_message(self, cancelled: OrderCancelled, now: DateTime<Utc>) -> OutboxMessage {
        match self {
            CancelledVersion::V1 => {
                OutboxMessage::of(&Envelope::new(v1::OrderCancelled::from(cancelled), now))
            }
            CancelledVersion::V2 => OutboxMessage::of(&Envelope::new(cancelled, now)),
        }
    }
}

/// An order as the saga sees it, locked for the decision.
#[derive(Debug)]
struct SagaOrder {
    id: Uuid,
    customer_id: String,
    customer_email: String,
    total_cents: i64,
    currency: String,
    created_at: DateTime<Utc>,
    status: Status,
    stock: Option<String>,
    payment: Option<String>,
    items: Vec<OrderItem>,
    /// The first refusal and its reason, while it is being decided.
    refusal: Option<(CancelCause, String)>,
}

/// The orders `ids`, with their items, locked in id order so that two instances deciding
/// overlapping orders cannot deadlock.
async fn lock_orders(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<SagaOrder>> {
    let rows = sqlx::query!(
        r#"SELECT o.id, o.customer_id, o.customer_email, o.total_cents, o.currency, o.created_at,
                  o.status AS "status: Status", o.stock, o.payment,
                  (SELECT json_agg(json_build_object(
                              'sku', i.sku, 'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents)
                           ORDER BY i.line_no)
                   FROM order_items i WHERE i.order_id = o.id) AS "items!: Json<Vec<OrderItem>>"
           FROM orders o WHERE o.id = ANY($1) ORDER BY o.id FOR UPDATE OF o"#,
        ids,
    )
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| SagaOrder {
            id: row.id,
            customer_id: row.customer_id,
            customer_email: row.customer_email,
            total_cents: row.total_cents,
            currency: row.currency,
            created_at: row.created_at,
            status: row.status,
            stock: row.stock,
            payment: row.payment,
            items: row.items.0,
            refusal: None,
        })
        .collect())
}

/// One step of an order's saga, as its timeline records it.
struct Step {
    order_id: Uuid,
    event_type: String,
    at: DateTime<Utc>,
    detail: Option<String>,
}

impl Handler for DecideOrders {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::ORDER_SERVICE;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let ids: Vec<Uuid> = events
            .iter()
            .map(|e| e.meta.order_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut orders: HashMap<Uuid, SagaOrder> = lock_orders(tx, &ids)
            .await?
            .into_iter()
            .map(|order| (order.id, order))
            .collect();
        if let Some(unknown) = ids.iter().find(|id| !orders.contains_key(id)) {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "an answer about order {unknown}, which this service never placed"
            )));
        }

        // Each answer once per order and type: one that is in the timeline already, under
        // another event id, is a repeat and changes nothing.
        let steps: Vec<Step> = events.iter().map(|event| step_of(event)).collect();
        let new = record(tx, &steps).await?;
        let mut touched = BTreeSet::new();
        for (event, step) in events.iter().zip(&steps) {
            if !new.contains(&(step.order_id, step.event_type.clone())) {
                continue;
            }
            let order = orders.get_mut(&step.order_id).expect("locked above");
            let answered = match &event.data {
                Event::StockReserved(_) => Some(("stock", "reserved", None)),
                Event::StockRejected(e) => Some((
                    "stock",
                    "rejected",
                    Some((CancelCause::StockRejected, &e.reason)),
                )),
                Event::PaymentAuthorized(_) => Some(("payment", "authorized", None)),
                Event::PaymentDeclined(e) => Some((
                    "payment",
                    "declined",
                    Some((CancelCause::PaymentDeclined, &e.reason)),
                )),
                // Compensations and captures: recorded in the timeline, nothing to decide.
                _ => None,
            };
            if let Some((step, answer, refusal)) = answered {
                let slot = if step == "stock" {
                    &mut order.stock
                } else {
                    &mut order.payment
                };
                *slot = Some(answer.to_owned());
                if let Some((cause, reason)) = refusal {
                    order.refusal.get_or_insert_with(|| (cause, reason.clone()));
                }
                touched.insert(order.id);
            }
        }

        let decisions: Vec<Decision> = touched
            .iter()
            .filter_map(|id| decide(&orders[id], None, self.0))
            .collect();
        save(tx, touched.iter().map(|id| &orders[id]), &decisions).await?;
        Ok(Applied {
            repeated_orders: events.len() - new.len(),
        })
    }
}

fn step_of(event: &Envelope<Event>) -> Step {
    let detail = match &event.data {
        Event::StockRejected(e) => Some(e.reason.clone()),
        Event::PaymentDeclined(e) => Some(e.reason.clone()),
        Event::PaymentAuthorized(e) => Some(money(e.amount_cents, &e.currency)),
        Event::PaymentCaptured(e) => Some(money(e.amount_cents, &e.currency)),
        Event::PaymentVoided(e) => Some(money(e.amount_cents, &e.currency)),
        _ => None,
    };
    Step {
        order_id: event.meta.order_id,
        event_type: event.meta.event_type.clone(),
        at: event.meta.occurred_at,
        detail,
    }
}

/// Adds `steps` to their orders' timelines; returns those that were not there yet.
async fn record(tx: &mut PgConnection, steps: &[Step]) -> sqlx::Result<HashSet<(Uuid, String)>> {
    let order_ids: Vec<Uuid> = steps.iter().map(|s| s.order_id).collect();
    let types: Vec<&str> = steps.iter().map(|s| s.event_type.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = steps.iter().map(|s| s.at).collect();
    let details: Vec<Option<&str>> = steps.iter().map(|s| s.detail.as_deref()).collect();
    // `as &[..&str..]`: the macros type-check TEXT[] against `String`; `&str` encodes alike.
    let rows = sqlx::query!(
        "INSERT INTO order_timeline (order_id, event_type, at, detail)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[])
         ON CONFLICT (order_id, event_type) DO NOTHING
         RETURNING order_id, event_type",
        &order_ids,
        &types as &[&str],
        &ats,
        &details as &[Option<&str>],
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.order_id, row.event_type))
        .collect())
}

/// An order's end, and the event announcing it.
struct Decision {
    order_id: Uuid,
    status: Status,
    reason: Option<String>,
    event: OutboxMessage,
}

/// Decides a pending order once its answers allow: any refusal cancels it, two agreements
/// confirm it. `timed_out` cancels it whatever is still missing, with that as the reason.
fn decide(
    order: &SagaOrder,
    timed_out: Option<&str>,
    version: CancelledVersion,
) -> Option<Decision> {
    if order.status != Status::Pending {
        return None;
    }
    let refused =
        order.stock.as_deref() == Some("rejected") || order.payment.as_deref() == Some("declined");
    let agreed = order.stock.as_deref() == Some("reserved")
        && order.payment.as_deref() == Some("authorized");
    let items = order.items.clone();
    let now = Utc::now();
    if agreed && timed_out.is_none() {
        let event = Envelope::new(
            OrderConfirmed {
                order_id: order.id,
                customer_id: order.customer_id.clone(),
                customer_email: order.customer_email.clone(),
                items,
                total_cents: order.total_cents,
                currency: order.currency.clone(),
                placed_at: order.created_at,
            },
            now,
        );
        tracing::info!(order_id = %order.id, "order confirmed");
        return Some(Decision {
            order_id: order.id,
            status: Status::Confirmed,
            reason: None,
            event: OutboxMessage::of(&event),
        });
    }
    let (cause, reason) = match (refused, timed_out) {
        (true, _) => order.refusal.clone().unwrap_or_else(|| {
            let cause = if order.stock.as_deref() == Some("rejected") {
                CancelCause::StockRejected
            } else {
                CancelCause::PaymentDeclined
            };
            (cause, "refused".into())
        }),
        (false, Some(reason)) => (CancelCause::TimedOut, reason.to_owned()),
        (false, None) => return None,
    };
    let event = version.outbox_message(
        OrderCancelled {
            order_id: order.id,
            customer_id: order.customer_id.clone(),
            customer_email: order.customer_email.clone(),
            items,
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            placed_at: order.created_at,
            reason: reason.clone(),
            cause: Some(cause),
        },
        now,
    );
    tracing::info!(order_id = %order.id, %reason, cause = cause.as_str(), "order cancelled");
    Some(Decision {
        order_id: order.id,
        status: Status::Cancelled,
        reason: Some(reason),
        event,
    })
}

/// Writes the answers of `orders`, then each decision: the order's new status, the decision
/// in its timeline, and its event in the outbox, all in the caller's transaction.
async fn save<'a>(
    tx: &mut PgConnection,
    orders: impl Iterator<Item = &'a SagaOrder>,
    decisions: &[Decision],
) -> sqlx::Result<()> {
    let orders: Vec<&SagaOrder> = orders.collect();
    if !orders.is_empty() {
        let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
        let stocks: Vec<Option<&str>> = orders.iter().map(|o| o.stock.as_deref()).collect();
        let payments: Vec<Option<&str>> = orders.iter().map(|o| o.payment.as_deref()).collect();
        sqlx::query!(
            "UPDATE orders SET stock = answer.stock, payment = answer.payment
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS answer (id, stock, payment)
             WHERE orders.id = answer.id",
            &ids,
            &stocks as &[Option<&str>],
            &payments as &[Option<&str>],
        )
        .execute(&mut *tx)
        .await?;
    }
    if decisions.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = decisions.iter().map(|d| d.order_id).collect();
    let statuses: Vec<&str> = decisions.iter().map(|d| d.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = decisions.iter().map(|d| d.reason.as_deref()).collect();
    let types: Vec<&str> = decisions.iter().map(|d| d.event.event_type).collect();
    sqlx::query!(
        "WITH decided AS (
             UPDATE orders SET status = d.status, status_reason = d.reason, decided_at = now()
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS d (id, status, reason)
             WHERE orders.id = d.id AND orders.status = 'pending'
             RETURNING orders.id
         )
         INSERT INTO order_timeline (order_id, event_type, at, detail)
         SELECT d.id, d.event_type, now(), d.reason
         FROM UNNEST($1::uuid[], $4::text[], $3::text[]) AS d (id, event_type, reason)
         JOIN decided USING (id)",
        &ids,
        &statuses as &[&str],
        &reasons as &[Option<&str>],
        &types as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    let events: Vec<OutboxMessage> = decisions.iter().map(|d| d.event.clone()).collect();
    outbox::enqueue(tx, &events).await
}

/// Cancels, with the reason, up to `limit` orders still pending `timeout` after they were
/// placed; returns how many. Replicas share the work (`SKIP LOCKED`).
pub async fn expire(
    pool: &PgPool,
    timeout: Duration,
    limit: i64,
    version: CancelledVersion,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("cannot open a transaction")?;
    let cutoff = Utc::now() - chrono::Duration::from_std(timeout).unwrap_or(chrono::TimeDelta::MAX);
    let ids: Vec<Uuid> = sqlx::query_scalar!(
        "SELECT id FROM orders WHERE status = 'pending' AND created_at < $1
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        cutoff,
        limit,
    )
    .fetch_all(&mut *tx)
    .await
    .context("cannot read pending orders")?;
    if ids.is_empty() {
        return Ok(0);
    }
    let orders: Vec<SagaOrder> = lock_orders(&mut tx, &ids)
        .await
        .context("cannot lock pending orders")?;
    let decisions: Vec<Decision> = orders
        .iter()
        .filter_map(|order| {
            let missing: Vec<&str> = [("inventory", &order.stock), ("payment", &order.payment)]
                .into_iter()
                .filter(|(_, answer)| answer.is_none())
                .map(|(service, _)| service)
                .collect();
            let reason = format!(
                "no answer from {} within {} s",
                missing.join(" and "),
                timeout.as_secs()
            );
            decide(order, Some(&reason), version)
        })
        .collect();
    save(&mut tx, std::iter::empty(), &decisions)
        .await
        .context("cannot cancel expired orders")?;
    tx.commit().await.context("cannot commit expired orders")?;
    Ok(decisions.len())
}

/// Runs [`expire`] until `shutdown`, often enough that an order waits at most a little
/// longer than `timeout`; wakes the relay when it cancelled something.
pub async fn expire_until_stopped(
    pool: PgPool,
    timeout: Duration,
    version: CancelledVersion,
    relay_wake: Arc<Notify>,
    timed_out: prometheus_client::metrics::counter::Counter,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let every = (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match expire(&pool, timeout, 200, version).await {
            Ok(0) => {}
            Ok(cancelled) => {
                tracing::warn!(
                    cancelled,
                    ?timeout,
                    "cancelled orders nobody answered in time"
                );
                timed_out.inc_by(cancelled as u64);
                relay_wake.notify_one();
                continue;
            }
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "saga time-out sweep failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

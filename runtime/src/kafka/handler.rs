//! The contract between the shared consumer and a service: what a handler is given, what it
//! answers, and how patiently a failure is retried.

use std::future::Future;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::{Envelope, Event};
use crate::events::{OrderCancelled, OrderConfirmed, OrderPlaced};

/// What a consumer service does with the events it receives.
///
/// The consumer owns idempotency and the transaction, so a handler cannot forget either: it
/// opens a transaction, claims the events' ids in the service's `processed_events` table
/// (an id claimed before means a redelivery, which is left out), calls [`Handler::apply`]
/// with the events that are new, and commits the claims and the effects together. Only then
/// are the events' offsets stored.
///
/// Events come in batches of one partition's consecutive events, so that a busy service pays
/// for one transaction per batch rather than per event; write `apply` set-wise. If a batch
/// fails, the consumer rolls it back and hands its events over again one at a time, each with
/// its own retries, so one bad event is retried or parked alone.
pub trait Handler: Send + Sync + 'static {
    /// What this service may do on the cluster ([`crate::access`]): the topics it uses, its
    /// group. Declared once there, so its ACLs and its code cannot drift apart.
    const PRINCIPAL: crate::access::Principal;

    /// The topics this service consumes: its principal's reads. It gets every event on them,
    /// and leaves alone (but still claims) the types it has nothing to do with.
    const TOPICS: &'static [&'static str] = Self::PRINCIPAL.reads;

    /// Applies the effects of `events` on `tx`. The consumer commits. Events to publish in
    /// reply go into the outbox on `tx` ([`crate::outbox::enqueue`]), so they leave if and
    /// only if the effects commit.
    ///
    /// `events` are in partition order. A handler may apply them grouped by type (all
    /// placements, then all decisions, say) when the result is the same as one by one.
    ///
    /// Effects must also be keyed by order, as a second line of defence: an event with a new
    /// id for an order already handled (a replay published anew, say) changes nothing and is
    /// counted in [`Applied::repeated_orders`].
    fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope<Event>],
    ) -> impl Future<Output = Result<Applied, HandlerError>> + Send;
}

/// What applying a batch did, beyond the effects themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events about an order this service had already handled: nothing changed for them.
    pub repeated_orders: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May pass on a later attempt (database busy, mail server down): retried with backoff.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Will never pass: the event goes to the dead-letter topic at once.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    /// A broken constraint or a value the database cannot take will break again on every
    /// retry: it is a defect to park and look at, not a fault to wait out. Everything else
    /// (connections, time-outs, deadlocks, serialization failures) may pass.
    fn from(err: sqlx::Error) -> Self {
        let sqlstate = err
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned());
        match sqlstate.as_deref() {
            // Class 23: integrity constraint violation; class 22: data exception.
            Some(code) if code.starts_with("23") || code.starts_with("22") => {
                HandlerError::Permanent(anyhow::Error::new(err).context(format!(
                    "the database refused the effects (SQLSTATE {code})"
                )))
            }
            _ => HandlerError::Transient(err.into()),
        }
    }
}

/// A batch of `orders` events split the way a saga participant applies them set-wise: every
/// placement first, then every decision, each list in partition order (event id first).
///
/// That gives the same result as one event at a time because an order's decision always
/// follows its placement, with one exception this split takes care of: a placement that comes
/// after its own order's decision in the batch (a parked placement replayed late) would, one
/// by one, find the order already decided. It is left out and counted in `late_placements`,
/// for the handler to report as repeats. Events of other types are left out.
#[derive(Debug, Default)]
pub struct OrderBatch<'a> {
    pub placements: Vec<(Uuid, &'a OrderPlaced)>,
    pub decisions: Vec<(Uuid, Decision<'a>)>,
    pub late_placements: usize,
}

/// How the Order Service decided an order.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    Confirmed(&'a OrderConfirmed),
    Cancelled(&'a OrderCancelled),
}

impl<'a> OrderBatch<'a> {
    pub fn of(events: &[&'a Envelope<Event>]) -> Self {
        let mut batch = OrderBatch::default();
        let mut decided = std::collections::HashSet::new();
        for event in events {
            let event_id = event.meta.event_id;
            let decision = match &event.data {
                Event::OrderPlaced(order) if decided.contains(&order.order_id) => {
                    batch.late_placements += 1;
                    continue;
                }
                Event::OrderPlaced(order) => {
                    batch.placements.push((event_id, order));
                    continue;
                }
                Event::OrderConfirmed(order) => Decision::Confirmed(order),
                Event::OrderCancelled(order) => Decision::Cancelled(order),
                _ => continue,
            };
            decided.insert(event.meta.order_id);
            batch.decisions.push((event_id, decision));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_transient() {
        let err = HandlerError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(err, HandlerError::Transient(_)), "{err}");
    }
}

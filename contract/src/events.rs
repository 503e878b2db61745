//! Event payloads: the `data` of an [`Envelope`](crate::Envelope).
//!
//! An order's saga, and where each event is published (every topic is keyed by order id, so
//! all events of one order stay in order within their topic):
//!
//! | Event | Topic | Published by | Meaning |
//! |---|---|---|---|
//! | `order_placed` | `orders` | Order Service | a customer placed an order |
//! | `stock_reserved` / `stock_rejected` | `inventory` | Inventory | its stock is set aside, or cannot be |
//! | `payment_authorized` / `payment_declined` | `payments` | Payment | its total is held on the card, or refused |
//! | `order_confirmed` / `order_cancelled` | `orders` | Order Service | the saga's one final decision |
//! | `stock_released` | `inventory` | Inventory | compensation: reserved stock is back |
//! | `payment_captured` / `payment_voided` | `payments` | Payment | the hold is taken, or dropped |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payload type and where it travels.
pub trait EventData: Serialize {
    const EVENT_TYPE: &'static str;
    const VERSION: u32;
    /// The topic every event of this type is published to.
    const TOPIC: &'static str;

    fn order_id(&self) -> Uuid;
}

macro_rules! event_data {
    ($type:ty, $name:literal, $topic:expr) => {
        event_data!($type, $name, $topic, 1);
    };
    ($type:ty, $name:literal, $topic:expr, $version:literal) => {
        impl EventData for $type {
            const EVENT_TYPE: &'static str = $name;
            const VERSION: u32 = $version;
            const TOPIC: &'static str = $topic;

            fn order_id(&self) -> Uuid {
                self.order_id
            }
        }
    };
}

/// A customer placed an order. Prices and the total come from the catalog, never the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: String,
    pub customer_email: String,
    pub items: Vec<OrderLine>,
    pub total_cents: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// Inventory set the order's stock aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StockReserved {
    pub order_id: Uuid,
}

/// Inventory cannot cover the order; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StockRejected {
    pub order_id: Uuid,
    pub reason: String,
}

/// Compensation: the stock reserved for a cancelled order is available again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StockReleased {
    pub order_id: Uuid,
}

/// The order's total is held on the customer's card, not yet taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorized {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

/// The card refused the order's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub reason: String,
}

/// The held amount is taken: the customer paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentCaptured {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

/// Compensation: the hold for a cancelled order is dropped; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentVoided {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

/// The saga's happy end: stock reserved and payment authorized. Carries what the services
/// that act on it need, so none of them has to ask the Order Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    pub customer_id: String,
    pub customer_email: String,
    pub items: Vec<OrderLine>,
    pub total_cents: i64,
    pub currency: String,
    /// When the order was placed: the start of the flow whose end this is.
    pub placed_at: DateTime<Utc>,
}

/// The saga's other end: a step refused the order (or never answered), and every step that
/// went through is compensated.
///
/// Version 2 added `cause`; version 1 events are still read, with no cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub customer_id: String,
    pub customer_email: String,
    pub items: Vec<OrderLine>,
    pub total_cents: i64,
    pub currency: String,
    pub placed_at: DateTime<Utc>,
    /// Why, in words fit for the customer.
    pub reason: String,
    /// Why, as a value a program can act on: always present since version 2. (Read from a
    /// version 1 event, which did not carry it, it is `None` in Rust.)
    #[cfg_attr(feature = "asyncapi", schemars(required, with = "CancelCause"))]
    pub cause: Option<CancelCause>,
}

/// Which step ended an order as cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelCause {
    /// Inventory could not cover the order (`stock_rejected`).
    StockRejected,
    /// The card refused the total (`payment_declined`).
    PaymentDeclined,
    /// A step did not answer within the saga's time-out.
    TimedOut,
}

impl CancelCause {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelCause::StockRejected => "stock_rejected",
            CancelCause::PaymentDeclined => "payment_declined",
            CancelCause::TimedOut => "timed_out",
        }
    }
}

/// Earlier versions of events, frozen as they were released. Each is still read (and
/// upcast to the current type) for as long as a topic or a dead-letter topic can hold it,
/// and can still be written while consumers that know only it are being upgraded.
pub mod v1 {
    use super::*;

    /// `order_cancelled` version 1: everything version 2 has except `cause`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "asyncapi", derive(schemars::JsonSchema))]
    #[cfg_attr(feature = "asyncapi", schemars(rename = "OrderCancelledV1"))]
    #[serde(deny_unknown_fields)]
    pub struct OrderCancelled {
        pub order_id: Uuid,
        pub customer_id: String,
        pub customer_email: String,
        pub items: Vec<OrderLine>,
        pub total_cents: i64,
        pub currency: String,
        pub placed_at: DateTime<Utc>,
        /// Why, in words fit for the customer.
        pub reason: String,
    }

    event_data!(OrderCancelled, "order_cancelled", crate::topics::ORDERS, 1);

    /// The upcaster: a version 1 cancellation as the current type, its cause unknown.
    impl From<OrderCancelled> for super::OrderCancelled {
        fn from(v1: OrderCancelled) -> Self {
            super::OrderCancelled {
                order_id: v1.order_id,
                customer_id: v1.customer_id,
                customer_email: v1.customer_email,
                items: v1.items,
                total_cents: v1.total_cents,
                currency: v1.currency,
                placed_at: v1.placed_at,
                reason: v1.reason,
                cause: None,
            }
        }
    }

    /// The downcaster, for a producer that still writes version 1: the cause is dropped
    /// (the reason still says it in words).
    impl From<super::OrderCancelled> for OrderCancelled {
        fn from(current: super::OrderCancelled) -> Self {
            OrderCancelled {
                order_id: current.order_id,
                customer_id: current.customer_id,
                customer_email: current.customer_email,
                items: current.items,
                total_cents: current.total_cents,
                currency: current.currency,
                placed_at: current.placed_at,
                reason: current.reason,
            }
        }
    }
}

event_data!(OrderPlaced, "order_placed", crate::topics::ORDERS);
event_data!(StockReserved, "stock_reserved", crate::topics::INVENTORY);
event_data!(StockRejected, "stock_rejected", crate::topics::INVENTORY);
event_data!(StockReleased, "stock_released", crate::topics::INVENTORY);
event_data!(
    PaymentAuthorized,
    "payment_authorized",
    crate::topics::PAYMENTS
);
event_data!(PaymentDeclined, "payment_declined", crate::topics::PAYMENTS);
event_data!(PaymentCaptured, "payment_captured", crate::topics::PAYMENTS);
event_data!(PaymentVoided, "payment_voided", crate::topics::PAYMENTS);
event_data!(OrderConfirmed, "order_confirmed", crate::topics::ORDERS);
event_data!(OrderCancelled, "order_cancelled", crate::topics::ORDERS, 2);

impl OrderPlaced {
    pub const EVENT_TYPE: &'static str = <Self as EventData>::EVENT_TYPE;
    pub const VERSION: u32 = <Self as EventData>::VERSION;

    /// Checks what the type system cannot. A consumer must never act on an order that breaks
    /// these rules, whoever produced it.
    pub fn validate(&self) -> Result<(), String> {
        validate_order(&self.customer_email, &self.items, self.total_cents)
    }
}

impl OrderConfirmed {
    pub fn validate(&self) -> Result<(), String> {
        validate_order(&self.customer_email, &self.items, self.total_cents)
    }
}

impl OrderCancelled {
    /// `version` is the version it was read from: since version 2 a cancellation names its
    /// cause.
    pub fn validate(&self, version: u32) -> Result<(), String> {
        if self.reason.trim().is_empty() {
            return Err("a cancellation has no reason".into());
        }
        if version >= 2 && self.cause.is_none() {
            return Err("a version 2 cancellation names no cause".into());
        }
        validate_order(&self.customer_email, &self.items, self.total_cents)
    }
}

fn validate_order(
    customer_email: &str,
    items: &[OrderLine],
    total_cents: i64,
) -> Result<(), String> {
    if items.is_empty() {
        return Err("order has no items".into());
    }
    if customer_email.trim().is_empty() {
        return Err("order has no customer email".into());
    }
    let mut total: i64 = 0;
    for line in items {
        if line.quantity <= 0 {
            return Err(format!(
                "quantity of {} is {}, not positive",
                line.sku, line.quantity
            ));
        }
        if line.unit_price_cents < 0 {
            return Err(format!("unit price of {} is negative", line.sku));
        }
        total = i64::from(line.quantity)
            .checked_mul(line.unit_price_cents)
            .and_then(|line_total| total.checked_add(line_total))
            .ok_or("order total overflows")?;
    }
    if total != total_cents {
        return Err(format!(
            "total_cents is {total_cents} but the items add up to {total}"
        ));
    }
    Ok(())
}

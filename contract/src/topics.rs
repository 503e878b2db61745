//! Topic names: the only place they are spelled out.
//!
//! Each topic belongs to the one service that publishes to it, and carries that service's
//! events about orders, keyed by order id so all events of one order stay in one partition,
//! in order. Who reads what:
//!
//! | Topic | Published by | Events | Read by (consumer group) |
//! |---|---|---|---|
//! | `orders` | Order Service | `order_placed`, `order_confirmed`, `order_cancelled` | inventory, payment, email, analytics |
//! | `inventory` | Inventory | `stock_reserved`, `stock_rejected`, `stock_released` | order-service |
//! | `payments` | Payment | `payment_authorized`, `payment_declined`, `payment_captured`, `payment_voided` | order-service |

/// The Order Service's events: an order placed, and the saga's decision about it.
pub const ORDERS: &str = "orders";

/// The Inventory Service's answers: stock reserved or rejected, and released on cancellation.
pub const INVENTORY: &str = "inventory";

/// The Payment Service's answers: authorized or declined, then captured or voided.
pub const PAYMENTS: &str = "payments";

/// Not events about orders: every consumer instance's heartbeat (its group, the partitions it
/// holds, its lag, what it handled lately), keyed by instance, read by the dashboard. Kept
/// out of [`ALL`]: it has no dead-letter topic, and nothing in it needs replaying.
pub const PRESENCE: &str = "presence";

/// Every topic events are published to.
pub const ALL: [&str; 3] = [ORDERS, INVENTORY, PAYMENTS];

/// Partitions of every topic: the most instances of one service that can share the work.
pub const PARTITIONS: i32 = 6;

/// Where a message that cannot be processed is parked, with the reason in its headers.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlt")
}

/// [`dead_letter_topic`] of [`ORDERS`], spelled out for the access declarations.
pub const ORDERS_DLT: &str = "orders.dlt";
/// [`dead_letter_topic`] of [`INVENTORY`].
pub const INVENTORY_DLT: &str = "inventory.dlt";
/// [`dead_letter_topic`] of [`PAYMENTS`].
pub const PAYMENTS_DLT: &str = "payments.dlt";

/// Every topic the shop uses: the business topics, their dead-letter topics, `presence`.
pub const EVERY: [&str; 7] = [
    ORDERS,
    INVENTORY,
    PAYMENTS,
    ORDERS_DLT,
    INVENTORY_DLT,
    PAYMENTS_DLT,
    PRESENCE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_topic_is_the_topic_name_with_a_dlt_suffix() {
        assert_eq!(dead_letter_topic(ORDERS), "orders.dlt");
        assert_eq!(dead_letter_topic(PAYMENTS), "payments.dlt");
        assert_eq!(dead_letter_topic(ORDERS), ORDERS_DLT);
        assert_eq!(dead_letter_topic(INVENTORY), INVENTORY_DLT);
        assert_eq!(dead_letter_topic(PAYMENTS), PAYMENTS_DLT);
    }
}

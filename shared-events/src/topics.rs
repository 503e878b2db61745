//! Topic names: the only place they are spelled out.

/// Every order event, keyed by order id so all events of one order stay in one partition.
pub const ORDERS: &str = "orders";

/// Partitions of `orders`: the most instances of one service that can share the work.
pub const ORDERS_PARTITIONS: i32 = 6;

/// Where a message that cannot be processed is parked, with the reason in its headers.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_topic_is_the_topic_name_with_a_dlt_suffix() {
        assert_eq!(dead_letter_topic(ORDERS), "orders.dlt");
    }
}

//! Event payloads: the `data` of an [`Envelope`](crate::Envelope).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A customer placed an order. Prices and the total come from the catalog, never the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

impl OrderPlaced {
    pub const EVENT_TYPE: &'static str = "order_placed";
    pub const VERSION: u32 = 1;

    /// Checks what the type system cannot. A consumer must never act on an order that breaks
    /// these rules, whoever produced it.
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("order has no items".into());
        }
        if self.customer_email.trim().is_empty() {
            return Err("order has no customer email".into());
        }
        let mut total: i64 = 0;
        for line in &self.items {
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
        if total != self.total_cents {
            return Err(format!(
                "total_cents is {} but the items add up to {total}",
                self.total_cents
            ));
        }
        Ok(())
    }
}

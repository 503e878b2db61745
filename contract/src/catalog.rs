//! The product catalog the system owns. The Order Service prices orders from it and the
//! Inventory Service stocks it; both seed their own tables from this list at start-up.

/// The one currency the shop sells in.
pub const CURRENCY: &str = "EUR";

/// An amount as a customer reads it: `1,245.00 EUR`.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02} {currency}", cents % 100)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub unit_price_cents: i64,
    /// Units the warehouse holds when the Inventory Service first starts.
    pub initial_stock: i32,
}

pub const PRODUCTS: &[Product] = &[
    Product {
        sku: "KB-001",
        name: "Mechanical keyboard",
        unit_price_cents: 8_999,
        initial_stock: 1_000,
    },
    Product {
        sku: "MS-002",
        name: "Wireless mouse",
        unit_price_cents: 2_999,
        initial_stock: 1_000,
    },
    Product {
        sku: "MN-003",
        name: "27-inch monitor",
        unit_price_cents: 24_900,
        initial_stock: 500,
    },
    Product {
        sku: "HS-004",
        name: "Noise-cancelling headset",
        unit_price_cents: 12_950,
        initial_stock: 500,
    },
    Product {
        sku: "CB-005",
        name: "USB-C cable",
        unit_price_cents: 1_299,
        initial_stock: 5_000,
    },
    Product {
        sku: "LT-006",
        name: "Limited-edition desk lamp",
        unit_price_cents: 5_900,
        initial_stock: 3,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_with_thousands_separators_and_two_decimals() {
        assert_eq!(money(124_500, "EUR"), "1,245.00 EUR");
        assert_eq!(money(1_299, "EUR"), "12.99 EUR");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(123_456_789, "EUR"), "1,234,567.89 EUR");
    }
}

//! The Payment Service (Billing), the saga's payment step.
//!
//! For every `order_placed` it asks the card gateway to hold the order's total and answers
//! `payment_authorized`, or `payment_declined` with the gateway's reason; the Order Service
//! decides the order from that answer and Inventory's. Then it settles the hold: on
//! `order_confirmed` it captures it (`payment_captured`), on `order_cancelled` it voids it
//! (`payment_voided`). Each order has one payment, whatever the number of events about it;
//! answers leave through the outbox, in the transaction that records the step.
//!
//! The gateway is a sandbox with one rule, easy to show: **an order whose total is above the
//! card limit is declined** (`PAYMENT_CARD_LIMIT_CENTS`, default 100000 = 1,000.00 EUR), e.g.
//! "card declined: 1,245.00 EUR is over the card limit of 1,000.00 EUR". Every other order is
//! authorized.
//!
//! `GET /payments` (newest first, `?limit=`) and `GET /payments/{order_id}` show each
//! payment's status (`authorized`, `declined`, `captured`, `voided`), amount and reason.

pub mod config;
pub mod db;
pub mod handler;
pub mod routes;

pub use config::{Config, DEFAULT_CARD_LIMIT_CENTS, IDENTITY, Settings};
pub use handler::AuthorizePayment;

use shop_runtime::app::ConsumerApp;
use shop_runtime::retry;

pub type Application = ConsumerApp<AuthorizePayment>;

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let service = &settings.service;
    let pool = shop_runtime::db::connect(service, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    let handler = AuthorizePayment {
        card_limit_cents: settings.card_limit_cents,
    };
    ConsumerApp::build(service, pool, handler, routes, retry::transient()).await
}

//! The Order Service's HTTP API.

mod orders;
mod products;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use sqlx::PgPool;
use tokio::sync::Notify;

pub use orders::{NewOrder, NewOrderItem};

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Wakes the outbox relay as soon as an order is stored.
    pub relay_wake: Arc<Notify>,
    pub orders_placed: Counter,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", get(orders::list).post(orders::place))
        .route("/orders/{id}", get(orders::get))
        .route("/products", get(products::list))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

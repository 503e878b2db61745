//! The Order Service's HTTP API, and its OpenAPI document at `/openapi.json` and `/docs`.

mod orders;
mod products;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use prometheus_client::metrics::counter::Counter;
use shop_runtime::openapi;
use sqlx::PgPool;
use tokio::sync::Notify;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    openapi::serve(api().layer(DefaultBodyLimit::max(MAX_BODY_BYTES)), state)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document(api().into_openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Order Service",
        description = "Takes orders and tells how each ended. An order is stored with its \
                       `order_placed` event and answered `pending`; Inventory and Payment \
                       answer, and the order becomes `confirmed` or `cancelled`: poll \
                       `GET /orders/{id}` for the outcome and its timeline."
    ),
    tags(
        (name = orders::TAG, description = "Placing orders and following their saga"),
        (name = products::TAG, description = "The catalog orders are priced from")
    )
)]
struct ApiDoc;

/// Every documented operation, routed: the document cannot list a route that is not there.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orders::list, orders::place))
        .routes(routes!(orders::get))
        .routes(routes!(products::list))
}

use axum::extract::{Path, State};
use axum::{Json, Router};
use serde::Deserialize;
use shop_runtime::http::{ApiResult, Problem, Query, parse_id};
use shop_runtime::openapi::{self, PROBLEM_JSON};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, Payment};

/// `GET /payments`, `GET /payments/{order_id}`, and their OpenAPI document at
/// `/openapi.json` and `/docs`.
pub fn router(pool: PgPool) -> Router {
    openapi::serve(api(), pool)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document(api().into_openapi())
}

const TAG: &str = "payments";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Payment Service",
        description = "The saga's payment step: holds each placed order's total on the \
                       customer's card (the sandbox gateway declines totals above \
                       PAYMENT_CARD_LIMIT_CENTS), captures the hold when the order is \
                       confirmed and voids it when it is cancelled. Read-only here: each \
                       order's payment."
    ),
    tags((name = TAG, description = "Each order's payment"))
)]
struct ApiDoc;

/// Every documented operation, routed: the document cannot list a route that is not there.
fn api() -> OpenApiRouter<PgPool> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list))
        .routes(routes!(one))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Limit {
    /// How many, newest first: default 100, clamped to 1..=1000.
    limit: Option<i64>,
}

/// The most recent payments, newest first.
#[utoipa::path(
    get,
    path = "/payments",
    tag = TAG,
    operation_id = "list_payments",
    params(Limit),
    responses(
        (status = 200, description = "Payments, newest first", body = Vec<Payment>),
        (status = 400, description = "The query string does not parse", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn list(State(pool): State<PgPool>, Query(page): Query<Limit>) -> ApiResult<Vec<Payment>> {
    Ok(Json(
        db::payments(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

/// One order's payment.
#[utoipa::path(
    get,
    path = "/payments/{order_id}",
    tag = TAG,
    operation_id = "get_payment",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's payment", body = Payment),
        (status = 400, description = "The order id is not a UUID", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 404, description = "No payment for this order (yet)", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn one(State(pool): State<PgPool>, Path(order_id): Path<String>) -> ApiResult<Payment> {
    let order_id = parse_id(&order_id)?;
    db::payments(&pool, Some(order_id), 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::not_found(&format!("a payment for order {order_id}")))
}

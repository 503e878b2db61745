use axum::extract::{Path, State};
use axum::{Json, Router};
use serde::Deserialize;
use shop_runtime::http::{ApiResult, Problem, Query, parse_id};
use shop_runtime::openapi::{self, PROBLEM_JSON};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, Reservation, StockLevel};

/// `GET /stock`, `GET /reservations`, `GET /reservations/{order_id}`, and their OpenAPI
/// document at `/openapi.json` and `/docs`.
pub fn router(pool: PgPool) -> Router {
    openapi::serve(api(), pool)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document(api().into_openapi())
}

const TAG: &str = "inventory";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Inventory Service",
        description = "The saga's stock step: reserves each placed order's stock, all items or \
                       none, and puts it back when the order is cancelled. Read-only here: \
                       what is left, and each order's reservation."
    ),
    tags((name = TAG, description = "Stock levels and reservations"))
)]
struct ApiDoc;

/// Every documented operation, routed: the document cannot list a route that is not there.
fn api() -> OpenApiRouter<PgPool> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(stock))
        .routes(routes!(reservations))
        .routes(routes!(reservation))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Limit {
    /// How many, newest first: default 100, clamped to 1..=1000.
    limit: Option<i64>,
}

/// Units available of every product.
#[utoipa::path(
    get,
    path = "/stock",
    tag = TAG,
    operation_id = "stock",
    responses((status = 200, description = "Every product's stock, by SKU", body = Vec<StockLevel>))
)]
async fn stock(State(pool): State<PgPool>) -> ApiResult<Vec<StockLevel>> {
    Ok(Json(db::stock(&pool).await?))
}

/// The most recent reservations, newest first.
#[utoipa::path(
    get,
    path = "/reservations",
    tag = TAG,
    operation_id = "list_reservations",
    params(Limit),
    responses(
        (status = 200, description = "Reservations, newest first", body = Vec<Reservation>),
        (status = 400, description = "The query string does not parse", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn reservations(
    State(pool): State<PgPool>,
    Query(page): Query<Limit>,
) -> ApiResult<Vec<Reservation>> {
    Ok(Json(
        db::reservations(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

/// One order's reservation.
#[utoipa::path(
    get,
    path = "/reservations/{order_id}",
    tag = TAG,
    operation_id = "get_reservation",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's reservation", body = Reservation),
        (status = 400, description = "The order id is not a UUID", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 404, description = "No reservation for this order (yet)", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn reservation(
    State(pool): State<PgPool>,
    Path(order_id): Path<String>,
) -> ApiResult<Reservation> {
    let order_id = parse_id(&order_id)?;
    db::reservations(&pool, Some(order_id), 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::not_found(&format!("a reservation for order {order_id}")))
}

use axum::extract::State;
use axum::{Json, Router};
use serde::Deserialize;
use shop_runtime::http::{ApiResult, Problem, Query};
use shop_runtime::openapi::{self, PROBLEM_JSON};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, Stats};

/// `GET /stats?top=N`: orders placed, confirmed and cancelled; revenue per currency and the
/// best-selling items, both from confirmed orders only. And its OpenAPI document at
/// `/openapi.json` and `/docs`.
pub fn router(pool: PgPool) -> Router {
    openapi::serve(api(), pool)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document(api().into_openapi())
}

const TAG: &str = "analytics";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Analytics Service",
        description = "Live aggregates over the orders and how they ended: each order counted \
                       once as placed and once as confirmed or cancelled; revenue and item \
                       sales from confirmed orders only."
    ),
    tags((name = TAG, description = "Order counts, revenue and best sellers"))
)]
struct ApiDoc;

/// Every documented operation, routed: the document cannot list a route that is not there.
fn api() -> OpenApiRouter<PgPool> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(stats))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Top {
    /// How many best sellers: default 5, clamped to 1..=100.
    top: Option<i64>,
}

/// Order counts, revenue per currency and the best sellers.
#[utoipa::path(
    get,
    path = "/stats",
    tag = TAG,
    operation_id = "stats",
    params(Top),
    responses(
        (status = 200, description = "The aggregates as of now", body = Stats),
        (status = 400, description = "The query string does not parse", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn stats(State(pool): State<PgPool>, Query(params): Query<Top>) -> ApiResult<Stats> {
    Ok(Json(
        db::stats(&pool, params.top.unwrap_or(5).clamp(1, 100)).await?,
    ))
}

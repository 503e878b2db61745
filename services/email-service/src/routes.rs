use axum::extract::{Path, State};
use axum::{Json, Router};
use serde::Deserialize;
use shop_runtime::http::{ApiResult, Problem, Query, parse_id};
use shop_runtime::openapi::{self, PROBLEM_JSON};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, SentEmail};

/// `GET /emails?limit=N` (newest first) and `GET /emails/{order_id}`: each order's one mail,
/// with its `kind` (`confirmation` or `cancellation`); and their OpenAPI document at
/// `/openapi.json` and `/docs`.
pub fn router(pool: PgPool) -> Router {
    openapi::serve(api(), pool)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document(api().into_openapi())
}

const TAG: &str = "emails";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Email Service",
        description = "Tells every customer how their order ended, once the saga decided it: \
                       a confirmation with the items and the total, or a cancellation notice \
                       with the reason. One mail per order, ever. Read-only here: what was \
                       sent."
    ),
    tags((name = TAG, description = "The mail sent for each order"))
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

/// The most recent mails, newest first.
#[utoipa::path(
    get,
    path = "/emails",
    tag = TAG,
    operation_id = "list_emails",
    params(Limit),
    responses(
        (status = 200, description = "Mails sent, newest first", body = Vec<SentEmail>),
        (status = 400, description = "The query string does not parse", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
async fn list(State(pool): State<PgPool>, Query(page): Query<Limit>) -> ApiResult<Vec<SentEmail>> {
    Ok(Json(
        db::emails(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

/// The mail sent about one order.
#[utoipa::path(
    get,
    path = "/emails/{order_id}",
    tag = TAG,
    operation_id = "get_email",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's mail", body = SentEmail),
        (status = 400, description = "The order id is not a UUID", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 404, description = "No mail for this order (yet: orders are mailed once \
                                      decided)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn one(State(pool): State<PgPool>, Path(order_id): Path<String>) -> ApiResult<SentEmail> {
    let order_id = parse_id(&order_id)?;
    db::emails(&pool, Some(order_id), 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::not_found(&format!("the mail of order {order_id}")))
}

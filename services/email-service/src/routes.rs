use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared_events::http::{ApiResult, Problem, Query, parse_id};
use sqlx::PgPool;

use crate::db::{self, SentEmail};

/// `GET /emails?limit=N` (newest first) and `GET /emails/{order_id}`: each order's one mail,
/// with its `kind` (`confirmation` or `cancellation`).
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/emails", get(list))
        .route("/emails/{order_id}", get(one))
        .with_state(pool)
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn list(State(pool): State<PgPool>, Query(page): Query<Limit>) -> ApiResult<Vec<SentEmail>> {
    Ok(Json(
        db::emails(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

async fn one(State(pool): State<PgPool>, Path(order_id): Path<String>) -> ApiResult<SentEmail> {
    let order_id = parse_id(&order_id)?;
    db::emails(&pool, Some(order_id), 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::not_found(&format!("the mail of order {order_id}")))
}

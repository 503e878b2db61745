use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared_events::http::{ApiResult, Problem, Query, parse_id};
use sqlx::PgPool;

use crate::db::{self, Payment};

/// `GET /payments`, `GET /payments/{order_id}`.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/payments", get(list))
        .route("/payments/{order_id}", get(one))
        .with_state(pool)
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn list(State(pool): State<PgPool>, Query(page): Query<Limit>) -> ApiResult<Vec<Payment>> {
    Ok(Json(
        db::payments(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

async fn one(State(pool): State<PgPool>, Path(order_id): Path<String>) -> ApiResult<Payment> {
    let order_id = parse_id(&order_id)?;
    db::payments(&pool, Some(order_id), 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::not_found(&format!("a payment for order {order_id}")))
}

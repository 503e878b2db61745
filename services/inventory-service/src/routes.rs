use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared_events::http::{ApiResult, Problem, Query, parse_id};
use sqlx::PgPool;

use crate::db::{self, Reservation, StockLevel};

/// `GET /stock`, `GET /reservations`, `GET /reservations/{order_id}`.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/stock", get(stock))
        .route("/reservations", get(reservations))
        .route("/reservations/{order_id}", get(reservation))
        .with_state(pool)
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn stock(State(pool): State<PgPool>) -> ApiResult<Vec<StockLevel>> {
    Ok(Json(db::stock(&pool).await?))
}

async fn reservations(
    State(pool): State<PgPool>,
    Query(page): Query<Limit>,
) -> ApiResult<Vec<Reservation>> {
    Ok(Json(
        db::reservations(&pool, None, page.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

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

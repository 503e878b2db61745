use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared_events::http::{ApiResult, Query};
use sqlx::PgPool;

use crate::db::{self, Stats};

/// `GET /stats?top=N`: orders placed, confirmed and cancelled; revenue per currency and the
/// best-selling items, both from confirmed orders only.
pub fn router(pool: PgPool) -> Router {
    Router::new().route("/stats", get(stats)).with_state(pool)
}

#[derive(Deserialize)]
struct Top {
    top: Option<i64>,
}

async fn stats(State(pool): State<PgPool>, Query(params): Query<Top>) -> ApiResult<Stats> {
    Ok(Json(
        db::stats(&pool, params.top.unwrap_or(5).clamp(1, 100)).await?,
    ))
}

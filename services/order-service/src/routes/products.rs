use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::db::{self, Product};
use crate::error::ApiError;

/// `GET /products`: the catalog orders are priced from.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(db::products(&state.pool).await?))
}

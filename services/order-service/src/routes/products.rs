use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::db::{self, Product};
use crate::error::ApiError;

pub const TAG: &str = "products";

/// `GET /products`: the catalog orders are priced from.
#[utoipa::path(
    get,
    path = "/products",
    tag = TAG,
    operation_id = "list_products",
    summary = "The catalog orders are priced from",
    responses((status = 200, description = "Every product, by SKU", body = Vec<Product>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(db::products(&state.pool).await?))
}

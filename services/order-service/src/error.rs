use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use shop_runtime::http::{self, Problem};

/// Everything a request can fail with. Client errors become problem+json naming the
/// problem; internal causes are logged here, once, and never leak into the body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Body(#[from] JsonRejection),
    #[error("{0}")]
    BadPath(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("the Idempotency-Key header is malformed")]
    BadIdempotencyKey,
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being handled")]
    RequestInFlight,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One reason a request was refused, pointing at the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem {
                    extensions: Some(json!({ "errors": errors })),
                    ..Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-order",
                        "Invalid order",
                        detail,
                    )
                }
            }
            ApiError::Body(rejection) => body_problem(rejection),
            ApiError::BadPath(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-path",
                "Invalid path parameter",
                detail.clone(),
            ),
            ApiError::NotFound(what) => Problem::not_found(what),
            ApiError::BadIdempotencyKey => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ),
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used for a different request; use a new key",
            ),
            ApiError::RequestInFlight => Problem::new(
                StatusCode::CONFLICT,
                "request-in-flight",
                "Request in flight",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            ),
            ApiError::Internal(err) if database_unreachable(err) => Problem::database_unavailable(),
            ApiError::Internal(_) => Problem::internal(),
        }
    }
}

fn body_problem(rejection: &JsonRejection) -> Problem {
    let (slug, title) = match rejection {
        JsonRejection::JsonDataError(_) => {
            ("invalid-body", "Request body does not match the schema")
        }
        JsonRejection::JsonSyntaxError(_) => ("malformed-json", "Request body is not valid JSON"),
        JsonRejection::MissingJsonContentType(_) => (
            "unsupported-media-type",
            "Request body must be application/json",
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ("body-too-large", "Request body too large")
        }
        _ => ("unreadable-body", "Request body could not be read"),
    };
    Problem::new(rejection.status(), slug, title, rejection.body_text())
}

/// Whether the database error somewhere in `err`'s chain says the database cannot be reached
/// (a 503 to retry) rather than that it refused a query (a 500).
fn database_unreachable(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(http::database_unreachable)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(err) if database_unreachable(err) => {
                tracing::warn!(error = %format!("{err:#}"), "request failed: database unreachable");
            }
            ApiError::Internal(err) => {
                tracing::error!(error = %format!("{err:#}"), "request failed");
            }
            _ => {}
        }
        self.problem().into_response()
    }
}

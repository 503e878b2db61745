use std::collections::{HashMap, HashSet};

use anyhow::Context;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use shop_runtime::http::{Problem, Query};
use shop_runtime::openapi::PROBLEM_JSON;
use shop_runtime::outbox::OutboxMessage;
use shop_runtime::{Envelope, OrderPlaced, catalog};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use crate::db::{self, Order, OrderItem, Status, Step};
use crate::error::{ApiError, FieldError};
use crate::idempotency::{self, Claim};

pub const TAG: &str = "orders";

/// What a client sends: who is buying what. Prices come from the catalog, never from here.
// The patterns state every rule the server enforces, so that a request generated from the
// document is one the server accepts: text is not blank and has no control character
// (Unicode's Cc: U+0000-U+001F, U+007F-U+009F; see `text_rule`); an address is one the Email
// Service's parser takes, as plainly as a pattern can say it (a local part and a dotted
// domain of letters, digits and `._%+-`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// 1 to 254 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 254,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub customer_id: String,
    /// Where the confirmation or cancellation is mailed: 1 to 254 characters, an address
    /// like name@example.com.
    #[schema(format = Email, min_length = 1, max_length = 254, pattern = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")]
    pub customer_email: String,
    /// 1 to 100 lines, each SKU at most once.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<NewOrderItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderItem {
    /// A SKU from `GET /products`.
    #[schema(schema_with = sku_schema)]
    pub sku: String,
    // Wider than stored so that an absurd number gets a clear range error, not a type error.
    /// 1 to 1,000.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "shop_runtime::http::integer")]
    pub quantity: i64,
}

/// A SKU: one of the catalog's, listed in the document so that a client (or a test) that
/// generates orders from it names products that exist.
fn sku_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("A SKU from `GET /products`"))
        .enum_values(Some(catalog::PRODUCTS.iter().map(|p| p.sku)))
        .build()
}

// For the document only: what a 422 carries.
/// A 422 problem. An order that breaks validation rules (`/problems/invalid-order`) names each
/// broken rule and its field in `errors`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct InvalidOrderProblem {
    #[serde(flatten)]
    problem: Problem,
    errors: Option<Vec<FieldError>>,
}

const MAX_ITEMS: usize = 100;
const MAX_QUANTITY: i64 = 1_000;
const MAX_TEXT: usize = 254;

/// `POST /orders`: stores the order and its `order_placed` event, answers 201 with the order
/// `pending`; `GET /orders/{id}` shows how its saga ends. With an `Idempotency-Key`, a retry
/// of the same request answers with the same order.
#[utoipa::path(
    post,
    path = "/orders",
    tag = TAG,
    operation_id = "place_order",
    summary = "Places an order",
    description = "Stores the order, priced from the catalog, and answers `pending` at once; \
                   `GET /orders/{id}` shows how its saga ends. With an `Idempotency-Key`, a \
                   retry of the same request answers with the same order.",
    params((
        "Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: 1 to 255 visible ASCII characters, new for each \
                       order",
        min_length = 1, max_length = 255, pattern = r"^[!-~]+$"
    )),
    request_body(
        content = NewOrder,
        example = json!({
            "customer_id": "cust-1",
            "customer_email": "ada@example.com",
            "items": [{"sku": "KB-001", "quantity": 1}, {"sku": "MS-002", "quantity": 2}]
        })
    ),
    responses(
        (status = 201, description = "Placed: the order, `pending`. For a retry with the same \
                                      Idempotency-Key: the order placed first, as it is now",
         body = Order,
         headers(
             ("Location" = String, description = "The order: /orders/{id}"),
             ("Idempotent-Replayed" = bool,
              description = "`true` when a retry was answered with the original order")
         )),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key is \
                                      malformed", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "A request with this Idempotency-Key is still being \
                                      handled: retry shortly", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not application/json", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 422, description = "The order is invalid (every broken rule is listed), \
                                      its JSON does not match the schema, or the \
                                      Idempotency-Key was used for a different order",
         body = InvalidOrderProblem, content_type = PROBLEM_JSON,
         example = json!({
             "type": "/problems/invalid-order",
             "title": "Invalid order",
             "status": 422,
             "detail": "items[0].quantity: must be between 1 and 1000, got 0",
             "errors": [{"field": "items[0].quantity",
                         "message": "must be between 1 and 1000, got 0"}]
         })),
    )
)]
pub async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let Json(request) = body?;
    validate(&request)?;
    let canonical = serde_json::to_string(&request).expect("a parsed request serialises");

    let mut tx = state
        .pool
        .begin()
        .await
        .context("cannot open the order transaction")?;
    let stored = match store(&mut tx, key.as_deref(), &canonical, request).await {
        Ok(stored) => stored,
        Err(err) => {
            // Rolled back before answering, not whenever the connection is next used: the
            // key's lock is free by the time the client sends its corrected request.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "cannot roll back a refused order");
            }
            return Err(err);
        }
    };
    let order = match stored {
        Stored::New(order) => order,
        Stored::Replay(order_id) => {
            tx.rollback().await?;
            let order = db::order(&state.pool, order_id)
                .await?
                .with_context(|| format!("an idempotency key names missing order {order_id}"))?;
            tracing::info!(%order_id, "idempotent retry answered with the original order");
            return Ok(created(order, true));
        }
    };
    tx.commit().await.context("cannot commit the order")?;

    state.orders_placed.inc();
    state.relay_wake.notify_one();
    tracing::info!(order_id = %order.id, total_cents = order.total_cents, "order placed");
    Ok(created(order, false))
}

enum Stored {
    New(Order),
    /// The key was used before, for this same request: answer with that order.
    Replay(Uuid),
}

/// The order's transaction up to its commit: the key first (a retry gets its original order
/// even if the catalog changed since), then the priced order, its event and the key.
async fn store(
    tx: &mut PgConnection,
    key: Option<&str>,
    canonical: &str,
    request: NewOrder,
) -> Result<Stored, ApiError> {
    if let Some(key) = key
        && let Claim::Replay(order_id) = idempotency::claim(tx, key, canonical).await?
    {
        return Ok(Stored::Replay(order_id));
    }
    let order = price(tx, request).await?;
    db::insert_order(tx, &order, &outbox_event(&order), key.zip(Some(canonical)))
        .await
        .context("cannot store the order")?;
    Ok(Stored::New(order))
}

/// The `order_placed` event for a new order, as the outbox stores it.
fn outbox_event(order: &Order) -> OutboxMessage {
    let event = Envelope::new(
        OrderPlaced {
            order_id: order.id,
            customer_id: order.customer_id.clone(),
            customer_email: order.customer_email.clone(),
            items: order.items.clone(),
            total_cents: order.total_cents,
            currency: order.currency.clone(),
        },
        order.created_at,
    );
    OutboxMessage::of(&event)
}

fn created(order: Order, replayed: bool) -> Response {
    let location = format!("/orders/{}", order.id);
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// An order with the story of its saga.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderWithTimeline {
    #[serde(flatten)]
    pub order: Order,
    /// Every step so far, oldest first: placed, each service's answer, the decision, and
    /// the compensations that followed a cancellation.
    pub timeline: Vec<Step>,
}

/// `GET /orders/{id}`: the order, its status and its timeline.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = TAG,
    operation_id = "get_order",
    summary = "The order, its status and its timeline",
    params(("id" = Uuid, Path, description = "The order's id, from its `Location`")),
    responses(
        (status = 200, description = "The order and every step of its saga so far",
         body = OrderWithTimeline),
        (status = 400, description = "The id is not a UUID", body = Problem,
         content_type = PROBLEM_JSON),
        (status = 404, description = "No such order", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderWithTimeline>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::BadPath(format!("`{id}` is not an order id (a UUID)")))?;
    let order = db::order(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {id}")))?;
    let timeline = db::timeline(&state.pool, id).await?;
    Ok(Json(OrderWithTimeline { order, timeline }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many, newest first: default 50, clamped to 1..=500.
    limit: Option<i64>,
}

/// `GET /orders?limit=N`: the most recent orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = TAG,
    operation_id = "list_orders",
    summary = "The most recent orders, newest first",
    params(ListParams),
    responses(
        (status = 200, description = "Orders, newest first", body = Vec<Order>),
        (status = 400, description = "The query string does not parse", body = Problem,
         content_type = PROBLEM_JSON),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Order>>, ApiError> {
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(db::recent_orders(&state.pool, limit).await?))
}

/// Every rule a well-formed body can still break, reported together.
fn validate(order: &NewOrder) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    text_rule(&mut errors, "customer_id", &order.customer_id);
    text_rule(&mut errors, "customer_email", &order.customer_email);
    // The Email Service's own parser: an address accepted here is one it can mail.
    let email_refused = errors.iter().any(|e| e.field == "customer_email");
    if let (false, Err(reason)) = (
        email_refused,
        shop_runtime::email::parse_address(&order.customer_email),
    ) {
        errors.push(FieldError::new(
            "customer_email",
            format!("must be an e-mail address like name@example.com: {reason}"),
        ));
    }
    if order.items.is_empty() {
        errors.push(FieldError::new("items", "must list at least one item"));
    }
    if order.items.len() > MAX_ITEMS {
        errors.push(FieldError::new(
            "items",
            format!("must list at most {MAX_ITEMS} items"),
        ));
    }
    let mut seen = HashSet::new();
    for (index, item) in order.items.iter().enumerate() {
        let field = |name: &str| format!("items[{index}].{name}");
        if item.sku.trim().is_empty() {
            errors.push(FieldError::new(field("sku"), "must not be empty"));
        } else if !seen.insert(item.sku.as_str()) {
            errors.push(FieldError::new(
                field("sku"),
                format!("{} is listed twice; combine the quantities", item.sku),
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            errors.push(FieldError::new(
                field("quantity"),
                format!(
                    "must be between 1 and {MAX_QUANTITY}, got {}",
                    item.quantity
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

fn text_rule(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.chars().count() > MAX_TEXT {
        errors.push(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// Prices the order from the catalog, on the order's own transaction; unknown SKUs are a
/// client error.
async fn price(tx: &mut PgConnection, request: NewOrder) -> Result<Order, ApiError> {
    let skus: Vec<String> = request.items.iter().map(|item| item.sku.clone()).collect();
    let catalog: HashMap<String, db::Product> = db::products_by_sku(tx, &skus)
        .await?
        .into_iter()
        .map(|product| (product.sku.clone(), product))
        .collect();
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(request.items.len());
    for (index, item) in request.items.iter().enumerate() {
        match catalog.get(&item.sku) {
            Some(product) => items.push(OrderItem {
                sku: product.sku.clone(),
                quantity: i32::try_from(item.quantity).expect("validated to 1..=MAX_QUANTITY"),
                unit_price_cents: product.unit_price_cents,
            }),
            None => errors.push(FieldError::new(
                format!("items[{index}].sku"),
                format!("{} is not in the catalog (see GET /products)", item.sku),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // Within limits: at most 100 lines × 1,000 units × the catalog's prices.
    let total_cents = items
        .iter()
        .map(|item| i64::from(item.quantity) * item.unit_price_cents)
        .sum();
    Ok(Order {
        id: Uuid::new_v4(),
        customer_id: request.customer_id,
        customer_email: request.customer_email,
        items,
        total_cents,
        currency: catalog::CURRENCY.to_owned(),
        // PostgreSQL keeps microseconds; the response must equal what GET returns later.
        created_at: Utc::now().trunc_subsecs(6),
        status: Status::Pending,
        status_reason: None,
        decided_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: Vec<(&str, i64)>) -> NewOrder {
        NewOrder {
            customer_id: "cust-1".into(),
            customer_email: "ada@example.com".into(),
            items: items
                .into_iter()
                .map(|(sku, quantity)| NewOrderItem {
                    sku: sku.into(),
                    quantity,
                })
                .collect(),
        }
    }

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_reasonable_order_passes_validation() {
        validate(&order(vec![("KB-001", 2)])).unwrap();
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let mut bad = order(vec![("KB-001", 0), ("KB-001", 5_000)]);
        bad.customer_email = "not-an-email".into();
        assert_eq!(
            fields(validate(&bad)),
            [
                "customer_email",
                "items[0].quantity",
                "items[1].sku",
                "items[1].quantity"
            ]
        );
    }

    #[test]
    fn an_order_without_items_is_refused() {
        assert_eq!(fields(validate(&order(vec![]))), ["items"]);
    }
}

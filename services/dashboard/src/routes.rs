//! The page, its live feed and its controls, and the OpenAPI document of the API at
//! `/openapi.json` and `/docs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use rdkafka::consumer::Consumer;
use shop_runtime::http::{self, Problem};
use shop_runtime::openapi::{self, OPS_TAG, PROBLEM_JSON};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::State;
use crate::board::Snapshot;
use crate::load::{Burst, LoadStatus};

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// The page, the API it calls, the probes and metrics, and the API's OpenAPI document.
pub fn router(state: State) -> Router {
    let metrics = state.http_metrics.clone();
    let (api, spec) = api().split_for_parts();
    let routes = page()
        .merge(api.with_state(state))
        .merge(openapi::routes(openapi::document_without_ops(spec)));
    http::observe(http::with_problem_fallbacks(routes), metrics)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::document_without_ops(api().into_openapi())
}

const TAG: &str = "dashboard";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dashboard",
        description = "A live view of shop's consumer groups, the partitions each instance \
                       holds, their lag, and recent orders moving through the services, all \
                       read from Kafka. Orders placed here, one at a time or in bursts, go \
                       through the Order Service's API like any client's. The page itself \
                       (`/`, `/app.js`, `/style.css`) is served beside this API and not \
                       described here."
    ),
    tags((name = TAG, description = "What the page shows, and its controls"))
)]
struct ApiDoc;

/// Every documented operation, routed: the document cannot list a route that is not there.
fn api() -> OpenApiRouter<State> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(snapshot))
        .routes(routes!(events))
        .routes(routes!(place_order))
        .routes(routes!(start_load, stop_load))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// `/`, `/app.js` and `/style.css`: the page and what it loads. Deliberately left out of the
/// OpenAPI document: they are the API's client, not part of it.
fn page() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Everything the page shows, now.
#[utoipa::path(
    get,
    path = "/api/state",
    tag = TAG,
    operation_id = "state",
    responses((status = 200, description = "The topics, each consumer group with its \
                                            instances, partitions and lag, the recent \
                                            orders and the burst", body = Snapshot))
)]
async fn snapshot(Extract(state): Extract<State>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.snapshot_json(),
    )
        .into_response()
}

// For the document only: one event of the stream, as an SSE client parses it.
/// One event of the live feed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StateEvent {
    /// Always `state`.
    #[schema(pattern = "^state$")]
    event: String,
    /// The Snapshot, as JSON.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// The page's live feed: a `state` event with the current snapshot at once, then one a second.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = TAG,
    operation_id = "events",
    responses((status = 200, description = "Server-sent events, each `event: state` with a \
                                            Snapshot as JSON in its `data`, and a comment \
                                            when idle for 15 s to keep the connection open. \
                                            The stream ends when the dashboard stops",
               body = StateEvent, content_type = "text/event-stream",
               example = "event: state\ndata: {\"generated_at\":\"2026-11-23T10:00:00Z\",...}\n\n"))
)]
async fn events(
    Extract(state): Extract<State>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = state.snapshot_json();
    let updates = futures::stream::unfold(state.snapshots, |mut snapshots| async move {
        snapshots.changed().await.ok()?;
        let json = snapshots.borrow_and_update().clone();
        Some((Ok(Event::default().event("state").data(&*json)), snapshots))
    });
    let stream = futures::stream::StreamExt::chain(
        futures::stream::once(async move { Ok(Event::default().event("state").data(first)) }),
        updates,
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Places one order through the Order Service, as any client would.
///
/// One unit of a catalog product, a different one each time.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = TAG,
    operation_id = "place_order",
    responses(
        (status = 201, description = "Placed: the Order Service's answer, the order \
                                      `pending` (its `Order` schema is in the Order \
                                      Service's document)", body = Object),
        (status = 502, description = "The Order Service did not answer \
                                      (`/problems/order-service-unreachable`)",
         body = Problem, content_type = PROBLEM_JSON),
        (status = "4XX", description = "The Order Service refused the order: its problem, \
                                        status and all, passed through",
         body = Problem, content_type = PROBLEM_JSON),
        (status = "5XX", description = "The Order Service failed or was overloaded: its \
                                        problem, status and all, passed through",
         body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn place_order(Extract(state): Extract<State>) -> Response {
    let n = state.load.next_order();
    match state.load.orders().place(n).await {
        Ok((status, body)) if body.is_object() => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = if status.is_success() {
                "application/json"
            } else {
                "application/problem+json"
            };
            (status, [(header::CONTENT_TYPE, content_type)], Json(body)).into_response()
        }
        Ok((status, _)) => {
            tracing::warn!(status, "the Order Service answered without a JSON body");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "order-service-unreachable",
                "Order Service unreachable",
                format!("the Order Service answered {status} without a JSON body"),
            )
            .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "the Order Service did not answer");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "order-service-unreachable",
                "Order Service unreachable",
                format!("the Order Service did not answer: {err}"),
            )
            .into_response()
        }
    }
}

/// Starts a burst: `rate` orders a second for `seconds`, through the Order Service.
#[utoipa::path(
    post,
    path = "/api/load",
    tag = TAG,
    operation_id = "start_load",
    request_body(content = Burst, example = json!({"rate": 20, "seconds": 30})),
    responses(
        (status = 202, description = "Started: the burst, running", body = LoadStatus),
        (status = 400, description = "The body is not JSON (`/problems/invalid-body`)",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "A burst is running: stop it first \
                                      (`/problems/burst-running`)",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 2 MB (`/problems/invalid-body`)",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not application/json \
                                      (`/problems/invalid-body`)",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "The body is JSON but not a burst \
                                      (`/problems/invalid-body`), or its rate or duration is \
                                      out of bounds (`/problems/invalid-burst`)",
         body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn start_load(
    Extract(state): Extract<State>,
    body: Result<Json<Burst>, JsonRejection>,
) -> Response {
    let burst = match body {
        Ok(Json(burst)) => burst,
        Err(rejection) => {
            return Problem::new(
                rejection.status(),
                "invalid-body",
                "Invalid request body",
                rejection.body_text(),
            )
            .into_response();
        }
    };
    if let Err(detail) = burst.check() {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-burst",
            "Invalid burst",
            detail,
        )
        .into_response();
    }
    match state.load.start(burst) {
        Some(status) => (StatusCode::ACCEPTED, Json(status)).into_response(),
        None => Problem::new(
            StatusCode::CONFLICT,
            "burst-running",
            "A burst is running",
            "stop the burst in progress first",
        )
        .into_response(),
    }
}

/// Stops the burst in progress, if any.
#[utoipa::path(
    delete,
    path = "/api/load",
    tag = TAG,
    operation_id = "stop_load",
    responses((status = 200, description = "The burst, stopping: `running` turns false once \
                                            its orders in flight are answered. The last burst \
                                            if none was running, all zeros if there was none",
               body = LoadStatus))
)]
async fn stop_load(Extract(state): Extract<State>) -> Response {
    Json(state.load.stop()).into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = OPS_TAG,
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain",
               example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: a Kafka broker answers. Everything the page shows comes from Kafka.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = OPS_TAG,
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain",
         example = "ready"),
        (status = 500, description = "The check itself failed; the cause is logged, never \
                                      sent", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Kafka is unreachable (`/problems/not-ready`)",
         body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn readyz(Extract(state): Extract<State>) -> Result<&'static str, Problem> {
    let client = state.kafka.clone();
    let reachable = tokio::task::spawn_blocking(move || {
        client.fetch_metadata(Some(shop_runtime::topics::PRESENCE), Duration::from_secs(2))
    })
    .await;
    match reachable {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(err)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("Kafka is unreachable: {err}"),
        )),
        Err(err) => {
            tracing::error!(error = %err, "the readiness check did not complete");
            Err(Problem::internal())
        }
    }
}

/// The dashboard's metrics, in OpenMetrics text for Prometheus to scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = OPS_TAG,
    responses((status = 200, description = "Every metric of this instance", body = String,
               content_type = "application/openmetrics-text"))
)]
async fn metrics(Extract(state): Extract<State>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shop_runtime::metrics::encode(&state.registry),
    )
        .into_response()
}

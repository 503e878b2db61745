//! The page, its live feed and its controls.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use rdkafka::consumer::Consumer;
use shared_events::http::{self, Problem};

use crate::State;
use crate::load::Burst;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

pub(crate) fn router(state: State) -> Router {
    let mut registry = prometheus_client::registry::Registry::with_prefix("dashboard");
    let metrics = shared_events::metrics::HttpMetrics::register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let routes = http::with_problem_fallbacks(
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
            .route("/api/state", get(snapshot))
            .route("/api/events", get(events))
            .route("/api/orders", post(place_order))
            .route("/api/load", post(start_load).delete(stop_load))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route(
                "/metrics",
                get(move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared_events::metrics::encode(&registry),
                    )
                }),
            )
            .with_state(state),
    );
    http::observe(routes, metrics)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn snapshot(Extract(state): Extract<State>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.snapshot_json(),
    )
        .into_response()
}

/// A `state` event with the current snapshot at once, then one a second.
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

async fn place_order(Extract(state): Extract<State>) -> Response {
    let n = state.load.next_order();
    match state.load.orders().place(n).await {
        Ok((status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = if status.is_success() {
                "application/json"
            } else {
                "application/problem+json"
            };
            (status, [(header::CONTENT_TYPE, content_type)], Json(body)).into_response()
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

async fn stop_load(Extract(state): Extract<State>) -> Response {
    Json(state.load.stop()).into_response()
}

/// Ready while a broker answers: everything the page shows comes from Kafka.
async fn readyz(Extract(state): Extract<State>) -> Result<&'static str, Problem> {
    let client = state.kafka.clone();
    let reachable = tokio::task::spawn_blocking(move || {
        client.fetch_metadata(
            Some(shared_events::topics::PRESENCE),
            Duration::from_secs(2),
        )
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
        Err(_) => Err(Problem::internal()),
    }
}

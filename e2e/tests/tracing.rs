//! One order is one trace: the `traceparent` of the POST that placed it travels in the
//! headers of every event its saga publishes, each service's span continuing it, and the
//! spans reach an OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` names one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use e2e::{Consumer, Service, Stack, eventually};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset};
use serde_json::{Value, json};
use shop_runtime::{kafka, topics};

const PATIENCE: Duration = Duration::from_secs(60);

/// A trace id no service would make up, in the caller's `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn order() -> Value {
    json!({
        "customer_id": "cust-1",
        "customer_email": "ada@example.com",
        "items": [{"sku": "KB-001", "quantity": 1}],
    })
}

/// A header of a message read from Kafka, as text.
fn header_of(message: &impl Message, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| String::from_utf8(h.value?.to_vec()).ok())
    })
}

/// Places an order as a traced caller would, with its own `traceparent`.
async fn place_traced(stack: &Stack, order_service: &impl Service) -> String {
    let response = stack
        .http
        .post(order_service.url("/orders"))
        .header("traceparent", CALLER)
        .json(&order())
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_event_of_an_order_carries_the_trace_of_the_post_that_placed_it() {
    let stack = Stack::start().await;
    let order = stack.start_order_service().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "inv-1").await;
    let payment = stack.start_consumer(Consumer::Payment, "pay-1").await;
    let watched = [topics::ORDERS, topics::INVENTORY, topics::PAYMENTS];
    // The broker is this test's own: from the beginning, nothing can be missed.
    let tail = kafka::tail(&stack.kafka(), &watched, Offset::Beginning)
        .await
        .unwrap();

    let order_id = place_traced(&stack, &order).await;

    // event type -> its traceparent, for this order's events, until the saga has ended and
    // the payment was captured.
    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !seen.contains_key("payment_captured") {
        let message = tokio::time::timeout_at(deadline, tail.recv())
            .await
            .unwrap_or_else(|_| panic!("the saga did not end in time; saw {seen:?}"))
            .expect("reading the topics");
        if message.key() != Some(order_id.as_bytes()) {
            continue;
        }
        let header = |name: &str| header_of(&message, name);
        let event_type = header("event_type").expect("every event names its type");
        let traceparent = header("traceparent")
            .unwrap_or_else(|| panic!("{event_type} has no traceparent header"));
        seen.insert(event_type, traceparent);
    }

    for event_type in [
        "order_placed",
        "stock_reserved",
        "payment_authorized",
        "order_confirmed",
        "payment_captured",
    ] {
        let traceparent = seen
            .get(event_type)
            .unwrap_or_else(|| panic!("no {event_type} seen: {seen:?}"));
        assert!(
            traceparent.starts_with(&format!("00-{TRACE_ID}-")),
            "{event_type} left the caller's trace: {traceparent}"
        );
    }
    // Each was caused by a span of its own: the request's, then each handler's.
    let span_ids: std::collections::HashSet<_> = seen
        .values()
        .map(|tp| tp.split('-').nth(2).unwrap())
        .collect();
    assert!(span_ids.len() >= 4, "{seen:?}");
    assert!(
        !span_ids.contains("00f067aa0ba902b7"),
        "the caller's span is the root only"
    );

    payment.stop().await;
    inventory.stop().await;
    order.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn without_a_collector_spans_are_not_recorded_but_the_trace_still_travels() {
    let stack = Stack::start().await;
    let mut order = stack.order_service_process("untraced");
    let mut inventory = stack.consumer_process(Consumer::Inventory, "untraced");
    order.start().await;
    inventory.start().await;
    let tail = kafka::tail(
        &stack.kafka(),
        &[topics::ORDERS, topics::INVENTORY],
        Offset::Beginning,
    )
    .await
    .unwrap();

    let order_id = place_traced(&stack, &order).await;

    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < 2 {
        let message = tokio::time::timeout_at(deadline, tail.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer in time; saw {seen:?}"))
            .expect("reading the topics");
        if message.key() != Some(order_id.as_bytes()) {
            continue;
        }
        let header = |name: &str| header_of(&message, name);
        let event_type = header("event_type").unwrap();
        if let Some(traceparent) = header("traceparent") {
            seen.insert(event_type, traceparent);
        } else {
            panic!("{event_type} has no traceparent header");
        }
    }
    for (event_type, traceparent) in &seen {
        assert!(
            traceparent.starts_with(&format!("00-{TRACE_ID}-")),
            "{event_type} left the caller's trace: {traceparent}"
        );
    }
    let (placed, reserved) = (&seen["order_placed"], &seen["stock_reserved"]);
    assert_ne!(placed, reserved, "each hop has a span id of its own");

    inventory.terminate().await;
    order.terminate().await;
    stack.finish().await;
}

/// The OTLP/HTTP requests a collector received: path, content type, body.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

async fn start_collector() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new().fallback({
        let received = received.clone();
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| async move {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            received
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), content_type, body));
            // An empty ExportTraceServiceResponse.
            ([("content-type", "application/x-protobuf")], Bytes::new())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn spans_are_exported_over_otlp_to_the_collector_the_environment_names() {
    let stack = Stack::start().await;
    let (collector, received) = start_collector().await;
    let mut order = stack
        .order_service_process("traced")
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
    let mut inventory = stack
        .consumer_process(Consumer::Inventory, "traced")
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
    order.start().await;
    inventory.start().await;

    place_traced(&stack, &order).await;

    // Both services' spans of this trace arrive, as OTLP protobuf: the trace id's 16 bytes
    // and each service's name are in the bodies.
    let trace_id = hex_bytes(TRACE_ID);
    let contains = |body: &[u8], needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    eventually(
        "both services' spans at the collector",
        PATIENCE,
        || async {
            let received = received.lock().unwrap();
            let traced: Vec<_> = received
                .iter()
                .filter(|(_, _, body)| contains(body, &trace_id))
                .collect();
            let from = |service: &str| {
                traced
                    .iter()
                    .any(|(_, _, body)| contains(body, service.as_bytes()))
            };
            (from("order-service") && from("inventory-service")).then_some(())
        },
    )
    .await;
    for (path, content_type, _) in received.lock().unwrap().iter() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
    }

    // And they stop cleanly with the exporter running: it sends what is left on the way out.
    for service in [&mut inventory, &mut order] {
        let status = service.terminate().await;
        assert!(status.success(), "{} exited with {status}", service.name());
    }
    stack.finish().await;
}

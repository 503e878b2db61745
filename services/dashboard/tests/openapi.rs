//! The OpenAPI document and the router agree: every operation `/openapi.json` lists is
//! routed and answers as documented, every refusal the controls give is documented, and
//! `/docs` needs nothing from outside.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use dashboard::{Settings, State, routes};
use http_body_util::BodyExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{Value, json};
use shop_runtime::openapi::{PROBLEM_JSON, testing};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What the dashboard's document lists besides its API: its own probes and metrics (it has
/// no `/assignment`) and the documentation.
const OPS_PATHS: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/asyncapi.json",
    "/docs",
];

/// The dashboard's router as `dashboard::build` assembles it, on an empty board, its
/// `/readyz` asking librdkafka's in-process mock broker.
struct App {
    router: Router,
    _kafka: MockCluster<'static, DefaultProducerContext>,
}

async fn app(order_service_url: &str) -> App {
    let kafka = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    let settings = Settings::for_test(
        &kafka.bootstrap_servers(),
        order_service_url,
        "dashboard-openapi-test",
    );
    let consumer = shop_runtime::kafka::tail(&settings.kafka, &[], rdkafka::Offset::End)
        .await
        .expect("a consumer connects to the mock cluster");
    App {
        router: router(&settings.order_service_url, consumer),
        _kafka: kafka,
    }
}

/// No snapshots are published: each event stream ends after its first, as it does when the
/// dashboard stops, so that every request completes.
fn router(order_service_url: &str, kafka: Arc<StreamConsumer>) -> Router {
    let (state, publish) = State::new(order_service_url, kafka);
    drop(publish);
    routes::router(state)
}

/// An Order Service that answers every order with `status` and `body`: its URL.
async fn order_service(status: StatusCode, body: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let body = body.to_string();
    let answer = move || {
        let body = body.clone();
        async move { (status, [(header::CONTENT_TYPE, content_type)], body) }
    };
    let app = Router::new().route("/orders", post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// An address nothing listens on.
async fn nowhere() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The URL of an Order Service that does not answer.
async fn no_order_service() -> String {
    format!("http://{}", nowhere().await)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {} is not JSON", self.body))
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn place_order(router: &Router) -> Answer {
    let request = Request::post("/api/orders").body(Body::empty()).unwrap();
    send(router, request).await
}

fn post_json(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

/// Fails unless `spec` lists `answer`'s status (or its range) for `method path`, with its
/// content type.
fn assert_documented(spec: &Value, method: &str, path: &str, answer: &Answer) {
    let responses = &spec["paths"][path][method]["responses"];
    let code = answer.status.as_str();
    let range = format!("{}XX", &code[..1]);
    let response = [code, range.as_str()]
        .into_iter()
        .find_map(|key| responses.get(key))
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {code}, which is not documented: {}",
                answer.body
            )
        });
    let response = match response["$ref"].as_str() {
        Some(reference) => spec.pointer(reference.trim_start_matches('#')).unwrap(),
        None => response,
    };
    let essence = answer.content_type.split(';').next().unwrap().trim();
    assert!(
        response["content"].get(essence).is_some(),
        "{method} {path} answered {code} as {essence:?}, documented as {}",
        response["content"]
    );
}

/// Fails unless `answer` is a problem of `slug` with `status`, and documented.
fn assert_problem(
    spec: &Value,
    method: &str,
    path: &str,
    answer: &Answer,
    status: u16,
    slug: &str,
) {
    assert_eq!(
        answer.status.as_u16(),
        status,
        "{method} {path}: {}",
        answer.body
    );
    assert_eq!(answer.content_type, PROBLEM_JSON);
    assert_eq!(answer.json()["type"], format!("/problems/{slug}"));
    assert_documented(spec, method, path, answer);
}

#[tokio::test]
async fn every_operation_in_the_spec_is_routed_and_answers_as_documented() {
    let placed = json!({"id": testing::AN_ID, "status": "pending"});
    let app = app(&order_service(StatusCode::CREATED, placed).await).await;
    tokio::time::timeout(
        Duration::from_secs(60),
        testing::assert_app_serves_its_spec(app.router.clone(), &OPS_PATHS),
    )
    .await
    .expect("every request completes, an event stream's too");
}

#[tokio::test]
async fn an_order_placed_gets_the_order_services_answer_or_a_documented_502() {
    let placed = json!({"id": testing::AN_ID, "status": "pending"});
    let refused = json!({
        "type": "/problems/invalid-order",
        "title": "Invalid order",
        "status": 422,
        "detail": "items[0].sku: no such product",
    });
    let overloaded = json!({
        "type": "/problems/overloaded",
        "title": "Overloaded",
        "status": 503,
        "detail": "retry after a second",
    });
    for (status, answer) in [
        (StatusCode::CREATED, placed),
        (StatusCode::UNPROCESSABLE_ENTITY, refused),
        (StatusCode::SERVICE_UNAVAILABLE, overloaded),
    ] {
        let app = app(&order_service(status, answer.clone()).await).await;
        let spec = get(&app.router, "/openapi.json").await.json();
        let placing = place_order(&app.router).await;
        assert_eq!(placing.status, status, "passed through");
        assert_eq!(placing.json(), answer, "passed through");
        assert_documented(&spec, "post", "/api/orders", &placing);
    }

    let app = app(&no_order_service().await).await;
    let spec = get(&app.router, "/openapi.json").await.json();
    let placing = place_order(&app.router).await;
    assert_problem(
        &spec,
        "post",
        "/api/orders",
        &placing,
        502,
        "order-service-unreachable",
    );
}

#[tokio::test]
async fn every_refusal_of_a_burst_is_a_documented_problem() {
    let app = app(&no_order_service().await).await;
    let spec = get(&app.router, "/openapi.json").await.json();
    // 3 MiB: past axum's default limit of 2 MB.
    let too_big = format!(
        r#"{{"rate": 1, "seconds": 1, "pad": "{}"}}"#,
        "x".repeat(3 << 20)
    );
    let refusals = [
        (post_json("/api/load", "not json"), 400, "invalid-body"),
        (
            Request::post("/api/load")
                .body(Body::from(r#"{"rate": 20, "seconds": 30}"#))
                .unwrap(),
            415,
            "invalid-body",
        ),
        (post_json("/api/load", too_big), 413, "invalid-body"),
        (
            post_json("/api/load", r#"{"rate": "fast", "seconds": 30}"#),
            422,
            "invalid-body",
        ),
        (
            post_json("/api/load", r#"{"rate": 20, "seconds": 30, "for": "ever"}"#),
            422,
            "invalid-body",
        ),
        (
            post_json("/api/load", r#"{"rate": 0, "seconds": 30}"#),
            422,
            "invalid-burst",
        ),
        (
            post_json("/api/load", r#"{"rate": 20, "seconds": 601}"#),
            422,
            "invalid-burst",
        ),
    ];
    for (request, status, slug) in refusals {
        let answer = send(&app.router, request).await;
        assert_problem(&spec, "post", "/api/load", &answer, status, slug);
    }

    let burst = r#"{"rate": 20, "seconds": 30}"#;
    let started = send(&app.router, post_json("/api/load", burst)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.json()["running"], true);
    assert_documented(&spec, "post", "/api/load", &started);
    let again = send(&app.router, post_json("/api/load", burst)).await;
    assert_problem(&spec, "post", "/api/load", &again, 409, "burst-running");
    let stopped = send(
        &app.router,
        Request::delete("/api/load").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(stopped.status, StatusCode::OK);
    assert_documented(&spec, "delete", "/api/load", &stopped);
}

#[tokio::test]
async fn readyz_answers_its_documented_problem_while_kafka_is_unreachable() {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", nowhere().await)
        .set("group.id", "dashboard-openapi-test")
        .create()
        .unwrap();
    let router = router(&no_order_service().await, Arc::new(consumer));
    let spec = get(&router, "/openapi.json").await.json();
    let answer = get(&router, "/readyz").await;
    assert_problem(&spec, "get", "/readyz", &answer, 503, "not-ready");
}

#[tokio::test]
async fn the_state_and_each_event_carry_the_documented_snapshot() {
    let app = app(&no_order_service().await).await;
    let spec = get(&app.router, "/openapi.json").await.json();
    let schema = &spec["components"]["schemas"]["Snapshot"];
    let members = |object: &Value| {
        let mut members: Vec<_> = object.as_object().unwrap().keys().cloned().collect();
        members.sort();
        members
    };
    let documented = members(&schema["properties"]);

    let state = get(&app.router, "/api/state").await;
    assert_documented(&spec, "get", "/api/state", &state);
    assert_eq!(members(&state.json()), documented);
    for required in schema["required"].as_array().unwrap() {
        assert!(
            state.json().get(required.as_str().unwrap()).is_some(),
            "{required}"
        );
    }

    let events = get(&app.router, "/api/events").await;
    assert_documented(&spec, "get", "/api/events", &events);
    let data = events
        .body
        .strip_prefix("event: state\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one `state` event: {:?}", events.body));
    assert_eq!(members(&serde_json::from_str(data).unwrap()), documented);
}

#[tokio::test]
async fn the_page_is_served_beside_the_api_and_left_out_of_its_document() {
    let app = app(&no_order_service().await).await;
    let spec = get(&app.router, "/openapi.json").await.json();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let answer = get(&app.router, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(
            answer.content_type.starts_with(content_type),
            "{path}: {}",
            answer.content_type
        );
        assert!(spec["paths"][path].is_null(), "{path} is documented");
    }
}

#[tokio::test]
async fn the_docs_page_loads_only_assets_the_service_serves() {
    let app = app(&no_order_service().await).await;
    testing::assert_docs_load_only_local_assets(app.router.clone()).await;
}

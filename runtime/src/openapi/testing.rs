//! Checks that a service's router and the OpenAPI document it serves agree, for the services'
//! tests (the `testing` feature).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

use super::{PROBLEM_JSON, page_assets};
use crate::config::{ServiceIdentity, ServiceSettings};
use crate::health::Liveness;
use crate::http::{self, OpsState};
use crate::kafka::EventProducer;
use crate::outbox::RelayMetrics;

/// What a path parameter is filled with: every id in the services' paths is a UUID.
pub const AN_ID: &str = "0b5f2c9e-3d4a-4f6b-9c1d-2e7a8b9c0d1e";

/// The endpoints every service documents besides its own.
pub const SHARED_PATHS: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/assignment",
    "/openapi.json",
    "/asyncapi.json",
    "/docs",
];

/// A service's routes as it serves them, with what they need to answer.
struct ServedRoutes {
    router: Router,
    /// The broker `/readyz` asks: librdkafka's in-process mock.
    _kafka: MockCluster<'static, DefaultProducerContext>,
}

/// `routes` with the operational endpoints (on `pool`, a mock broker and no consumer) and the
/// problem fallbacks, as `shop_runtime::app::ServiceBuilder` assembles them,
/// less the in-flight limit.
async fn with_ops(routes: Router, pool: PgPool) -> ServedRoutes {
    let kafka = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    let identity = ServiceIdentity {
        name: "openapi-test",
        database: "unused",
        http_port: 0,
    };
    let settings = ServiceSettings::for_test(
        identity,
        &kafka.bootstrap_servers(),
        "postgres://unused",
        "t",
    );
    let producer = EventProducer::connect(&settings.kafka, settings.message_timeout)
        .await
        .expect("a producer connects to the mock cluster");
    let ops = OpsState {
        pool,
        registry: Arc::new(Registry::default()),
        consumer: None,
        kafka: producer,
        liveness: Liveness::new(settings.stuck_after),
        outbox: RelayMetrics::default(),
    };
    ServedRoutes {
        router: http::with_problem_fallbacks(routes.merge(http::ops_router(ops))),
        _kafka: kafka,
    }
}

/// Serves a service's `routes` as the service does (with the operational endpoints and the
/// problem fallbacks), fetches `/openapi.json` from them and sends them a request for every
/// operation it lists: as documented (path parameters filled with [`AN_ID`], the request
/// body's example as the body), with each UUID path parameter not a UUID, and with each
/// integer query parameter not a number. Fails, naming every mismatch, unless the document is
/// OpenAPI 3.1 with the shared endpoints and the [`crate::http::Problem`] schema, and each
/// request
/// - was routed: neither the "no such route" 404 nor the 405 fallback;
/// - got a status the operation documents, with a documented content type;
/// - got a 4xx when the request was invalid.
pub async fn assert_router_serves_its_spec(routes: Router, pool: PgPool) {
    let served = with_ops(routes, pool).await;
    assert_app_serves_its_spec(served.router.clone(), &SHARED_PATHS).await;
}

/// [`assert_router_serves_its_spec`] for an `app` served as it is, probes and problem
/// fallbacks included (the dashboard, which serves its own), whose document must list
/// `required_paths`. Every request must end: an event stream too.
pub async fn assert_app_serves_its_spec(app: Router, required_paths: &[&str]) {
    let (status, content_type, body) = send(&app, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "GET /openapi.json: {body}");
    assert_eq!(content_type, "application/json");
    let spec: Value = serde_json::from_str(&body).expect("/openapi.json is JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(
        spec["components"]["schemas"]["Problem"].is_object(),
        "the Problem schema is missing"
    );
    let paths = spec["paths"].as_object().expect("the document has paths");
    for path in required_paths {
        assert!(paths.contains_key(*path), "{path} is not documented");
    }

    let mut failures = Vec::new();
    let mut sent = 0;
    for (path, item) in paths {
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            let operation = &item[method.as_str().to_lowercase()];
            if !operation.is_object() {
                continue;
            }
            for probe in probes(path, operation) {
                let (status, content_type, body) =
                    send(&app, method.clone(), &probe.uri, probe.body.clone()).await;
                sent += 1;
                let request = format!("{method} {} ({})", probe.uri, probe.what);
                if let Some(failure) = check(&spec, operation, &probe, status, &content_type, &body)
                {
                    failures.push(format!("{request}: {failure}"));
                }
            }
        }
    }
    assert!(
        sent > required_paths.len(),
        "only {sent} requests were sent"
    );
    assert!(
        failures.is_empty(),
        "the router does not answer as its document says:\n{}",
        failures.join("\n")
    );
}

/// Fails unless `/docs` is an HTML page whose scripts and styles are all served by `app`
/// itself, at paths relative to the page.
pub async fn assert_docs_load_only_local_assets(app: Router) {
    let (status, content_type, page) = send(&app, Method::GET, "/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let assets = page_assets(&page);
    assert!(!assets.is_empty(), "the page loads nothing: {page}");
    for asset in assets {
        assert!(
            !asset.contains("://") && !asset.starts_with("//") && !asset.starts_with('/'),
            "{asset} is not relative to the page"
        );
        let (status, _, _) = send(&app, Method::GET, &format!("/{asset}"), None).await;
        assert_eq!(status, StatusCode::OK, "GET /{asset}");
    }
}

struct Probe {
    uri: String,
    body: Option<Value>,
    what: &'static str,
    /// The request breaks the documented parameters: it must be refused with a 4xx.
    invalid: bool,
}

fn probes(path: &str, operation: &Value) -> Vec<Probe> {
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The documented example, so a valid request also gets a 2xx; `{}` without one.
    let body = operation["requestBody"]["content"]["application/json"]
        .as_object()
        .map(|content| {
            content
                .get("example")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}))
        });
    let fill = |bad_param: Option<&str>| {
        parameters
            .iter()
            .filter(|param| param["in"] == "path")
            .fold(path.to_owned(), |uri, param| {
                let name = param["name"].as_str().expect("a parameter's name");
                let value = if Some(name) == bad_param {
                    "not-a-uuid"
                } else {
                    AN_ID
                };
                uri.replace(&format!("{{{name}}}"), value)
            })
    };
    let mut probes = vec![Probe {
        uri: fill(None),
        body: body.clone(),
        what: "as documented",
        invalid: false,
    }];
    for param in &parameters {
        let name = param["name"].as_str().expect("a parameter's name");
        let schema = &param["schema"];
        if param["in"] == "path" && schema["format"] == "uuid" {
            probes.push(Probe {
                uri: fill(Some(name)),
                body: body.clone(),
                what: "a path parameter that is not a UUID",
                invalid: true,
            });
        }
        let integer = schema["type"] == "integer"
            || schema["type"]
                .as_array()
                .is_some_and(|types| types.contains(&Value::from("integer")));
        if param["in"] == "query" && integer {
            probes.push(Probe {
                uri: format!("{}?{name}=not-a-number", fill(None)),
                body: body.clone(),
                what: "a query parameter that is not a number",
                invalid: true,
            });
        }
    }
    probes
}

fn check(
    spec: &Value,
    operation: &Value,
    probe: &Probe,
    status: StatusCode,
    content_type: &str,
    body: &str,
) -> Option<String> {
    let problem_type = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|problem| problem["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if status == StatusCode::NOT_FOUND
        && problem_type == "/problems/not-found"
        && body.contains("no such route")
    {
        return Some("not routed (the 404 fallback answered)".into());
    }
    if status == StatusCode::METHOD_NOT_ALLOWED && problem_type == "/problems/method-not-allowed" {
        return Some("the method is not routed (the 405 fallback answered)".into());
    }
    if probe.invalid && !status.is_client_error() {
        return Some(format!("answered {status} to an invalid request: {body}"));
    }
    let responses = &operation["responses"];
    let code = status.as_str();
    let range = format!("{}XX", &code[..1]);
    let Some(response) = [code, range.as_str(), "default"]
        .into_iter()
        .find_map(|key| responses.get(key))
    else {
        return Some(format!(
            "answered {status}, which is not documented: {body}"
        ));
    };
    let response = resolve(spec, response);
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match response["content"].as_object() {
        Some(content) if !content.contains_key(essence) => Some(format!(
            "answered {status} as {content_type:?}; documented: {:?}",
            content.keys().collect::<Vec<_>>()
        )),
        None if !body.is_empty() => Some(format!(
            "answered {status} with a body, documented without one: {body}"
        )),
        _ if status.as_u16() >= 400 && essence != PROBLEM_JSON => Some(format!(
            "answered {status} as {content_type:?}, not a problem"
        )),
        _ => None,
    }
}

/// Follows a `$ref` to `#/components/...`.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => spec
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{reference} is not in the document")),
        None => value,
    }
}

/// Sends a request, returning the status, the content type and the body.
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let request = Request::builder().method(method).uri(uri);
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("a well-formed request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = body.collect().await.expect("a body").to_bytes();
    (
        parts.status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

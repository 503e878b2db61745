//! Every service's OpenAPI 3.1 document, generated from the code, and the routes that serve
//! it: `/openapi.json`, `/asyncapi.json` (the events, `shop_contract::asyncapi`), and `/docs`,
//! a Swagger UI compiled into the binary so that the page loads nothing from outside (users
//! may have no internet access).
//!
//! A service builds its API with `utoipa_axum`'s `OpenApiRouter` and `routes!`, so every
//! documented operation is routed by construction, passes the result through [`document`]
//! and merges [`routes`] into its router. [`document`] adds what every service shares: the
//! [`Problem`] schema, the problem responses every API route can give, and the operational
//! endpoints that [`crate::http::ops_router`] serves. A service with probes of its own and no
//! in-flight limit (the dashboard) uses [`document_without_ops`] and documents them itself.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};

use crate::http::Problem;

#[cfg(feature = "testing")]
pub mod testing;

/// The media type of every error a service answers (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The tag of the endpoints every service has.
pub const OPS_TAG: &str = "operations";
const OPS_TAG_DESCRIPTION: &str = "Probes, metrics and this documentation: every service has them";

const SWAGGER_UI_JS: &str = include_str!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../assets/swagger-ui/swagger-ui.css");
const DOCS_PAGE: &str = include_str!("openapi/docs.html");
const DOCS_SCRIPT: &str = include_str!("openapi/docs.js");

/// Only this origin: a viewer that tried to load a script, a font or a validator badge from
/// elsewhere is stopped by the browser, not left waiting on a network that is not there.
/// Swagger UI sets inline styles and draws icons from `data:` URLs.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'";

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "An RFC 9457 problem detail: every error a service answers, as \
                 application/problem+json. Problems may carry extension members, e.g. \
                 `errors` listing each invalid field.",
            ))
            .property(
                "type",
                string(
                    "Identifies the kind of problem, a stable slug under /problems/ \
                     to branch on, e.g. /problems/not-found",
                )
                .format(Some(SchemaFormat::Custom("uri-reference".into()))),
            )
            .required("type")
            .property("title", string("A short summary of the kind of problem"))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("The HTTP status code, repeated")),
            )
            .required("status")
            .property(
                "detail",
                string("What went wrong with this request, for a person to read"),
            )
            .required("detail")
            // No example: one problem's would show under every other problem response.
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// Completes a service's API description with what every service shares: a 500 and a 503
/// problem on each of its operations (every API route is behind
/// [`crate::http::limit_in_flight`] and may fail internally), the [`Problem`] schema, and the
/// operational endpoints with `/openapi.json` and `/docs`.
pub fn document(mut api: OpenApi) -> OpenApi {
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_shared_responses(operation);
        }
    }
    api.merge(OpsApi::openapi());
    let components = api.components.get_or_insert_with(Default::default);
    components
        .responses
        .insert("Internal".to_owned(), internal_response().into());
    components
        .responses
        .insert("Overloaded".to_owned(), overloaded_response().into());
    document_without_ops(api)
}

/// Completes the description of a service that serves its own probes rather than
/// [`crate::http::ops_router`]'s and is not behind [`crate::http::limit_in_flight`] (the
/// dashboard): only the [`Problem`] schema and [`routes`]' `/openapi.json` and `/docs`. No
/// response is added to its operations, so each must document every answer it gives.
pub fn document_without_ops(mut api: OpenApi) -> OpenApi {
    api.merge(DocsApi::openapi());
    api.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    api
}

fn add_shared_responses(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for (status, name) in [("500", "Internal"), ("503", "Overloaded")] {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| Ref::from_response_name(name).into());
    }
}

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(Problem::name())))
        .build()
}

fn internal_response() -> Response {
    ResponseBuilder::new()
        .description(
            "The request could not be completed (a defect or a query the database refused); \
             the cause is logged, never sent",
        )
        .content(PROBLEM_JSON, problem_content())
        .build()
}

fn overloaded_response() -> Response {
    ResponseBuilder::new()
        .description(
            "Try again later: this instance is already handling HTTP_MAX_IN_FLIGHT requests \
             with a full queue (`/problems/overloaded`), or cannot reach its database \
             (`/problems/database-unavailable`); retry after Retry-After seconds",
        )
        .content(PROBLEM_JSON, problem_content())
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        )
        .build()
}

/// A service's API routes on `state`, with their document (completed by [`document`]) served
/// beside them by [`routes`]: one list of routes makes both.
pub fn serve<S>(api: utoipa_axum::router::OpenApiRouter<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
{
    let (api, spec) = api.split_for_parts();
    api.with_state(state).merge(routes(document(spec)))
}

/// Serves `spec` at `/openapi.json` and a viewer for it at `/docs`. Every asset is relative
/// to the page and compiled in, so the viewer works offline and behind a path prefix.
pub fn routes(spec: OpenApi) -> Router {
    // Bytes: every request gets the one copy, not a new one.
    let json = Bytes::from(
        spec.to_pretty_json()
            .expect("an OpenAPI document serialises to JSON"),
    );
    let events = Bytes::from(
        serde_json::to_vec_pretty(&shop_contract::asyncapi::document())
            .expect("the AsyncAPI document serialises to JSON"),
    );
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .route(
            "/asyncapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], events) }),
        )
        .route(
            "/docs",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
                    ],
                    DOCS_PAGE,
                )
            }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| asset("text/javascript; charset=utf-8", SWAGGER_UI_JS)),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| asset("text/css; charset=utf-8", SWAGGER_UI_CSS)),
        )
        .route(
            "/docs/docs.js",
            get(|| asset("text/javascript; charset=utf-8", DOCS_SCRIPT)),
        )
}

/// The `src` and `href` attributes of a page, in order: what a browser loads with it.
#[cfg(any(test, feature = "testing"))]
fn page_assets(html: &str) -> Vec<&str> {
    let mut assets = Vec::new();
    for attribute in [" src=\"", " href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            let value = &rest[start + attribute.len()..];
            let end = value.find('"').expect("attribute values are quoted");
            assets.push((html.len() - value.len(), &value[..end]));
            rest = &value[end..];
        }
    }
    assets.sort();
    assets.into_iter().map(|(_, asset)| asset).collect()
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Compiled into this binary: a day's caching costs at most a day of a stale viewer
    // after an upgrade, and saves 2 MB on every visit.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

/// The operational endpoints, as [`crate::http::ops_router`] serves them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(ops::healthz, ops::readyz, ops::metrics, ops::assignment),
    tags((name = OPS_TAG, description = OPS_TAG_DESCRIPTION))
)]
struct OpsApi;

/// This documentation, as [`routes`] serves it. The tag is [`OpsApi`]'s, word for word, so
/// that a document with both lists it once.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(ops::openapi_json, ops::asyncapi_json, ops::docs),
    tags((name = OPS_TAG, description = OPS_TAG_DESCRIPTION))
)]
struct DocsApi;

/// Signatures for the documentation only: the handlers are [`crate::http::ops_router`]'s
/// and [`routes`]'s. A test sends a request for every operation documented here to a
/// service's router.
#[allow(dead_code)]
mod ops {
    use super::{AssignmentSnapshotSchema, OPS_TAG, PROBLEM_JSON, Problem};

    /// Liveness: the process and its loops are making progress.
    ///
    /// For an orchestrator's liveness probe: a failure means restarting the process helps.
    #[utoipa::path(
        get,
        path = "/healthz",
        tag = OPS_TAG,
        responses(
            (status = 200, description = "Alive", body = String, content_type = "text/plain",
             example = "ok"),
            (status = 503, description = "A background loop has been busy past its bound",
             body = Problem, content_type = PROBLEM_JSON),
        )
    )]
    fn healthz() {}

    /// Readiness: Kafka and the database are reachable.
    ///
    /// For a load balancer or an orchestrator's readiness probe: send no traffic while it
    /// fails; restarting would not help.
    #[utoipa::path(
        get,
        path = "/readyz",
        tag = OPS_TAG,
        responses(
            (status = 200, description = "Ready", body = String, content_type = "text/plain",
             example = "ready"),
            (status = 503, description = "Kafka or the database is unreachable",
             body = Problem, content_type = PROBLEM_JSON),
        )
    )]
    fn readyz() {}

    /// The service's metrics, in OpenMetrics text for Prometheus to scrape.
    #[utoipa::path(
        get,
        path = "/metrics",
        tag = OPS_TAG,
        responses(
            (status = 200, description = "Every metric of this instance", body = String,
             content_type = "application/openmetrics-text"),
        )
    )]
    fn metrics() {}

    /// The Kafka partitions this instance's consumer holds, and its lag on each.
    #[utoipa::path(
        get,
        path = "/assignment",
        tag = OPS_TAG,
        responses(
            (status = 200, description = "This instance's share of its consumer group",
             body = AssignmentSnapshotSchema),
            (status = 404, description = "This service consumes nothing", body = Problem,
             content_type = PROBLEM_JSON),
        )
    )]
    fn assignment() {}

    /// This document: the service's HTTP API in OpenAPI 3.1.
    #[utoipa::path(
        get,
        path = "/openapi.json",
        tag = OPS_TAG,
        responses((status = 200, description = "The OpenAPI document", body = Object,
                   content_type = "application/json")),
    )]
    fn openapi_json() {}

    /// The events the services exchange over Kafka, in AsyncAPI 3.0: every topic and event,
    /// payloads as JSON Schema, keys, headers, publishers and consumer groups. The same for
    /// every service.
    #[utoipa::path(
        get,
        path = "/asyncapi.json",
        tag = OPS_TAG,
        responses((status = 200, description = "The AsyncAPI document", body = Object,
                   content_type = "application/json")),
    )]
    fn asyncapi_json() {}

    /// A viewer for this document (Swagger UI, served by the service itself).
    #[utoipa::path(
        get,
        path = "/docs",
        tag = OPS_TAG,
        responses((status = 200, description = "An HTML page", body = String,
                   content_type = "text/html")),
    )]
    fn docs() {}
}

// `GET /assignment`'s body: how `crate::kafka::AssignmentSnapshot` serialises. A copy for the
// schema, since the Kafka code does not depend on utoipa; a test keeps the two in step.
/// This instance's share of its consumer group's partitions.
#[derive(Serialize, ToSchema)]
#[schema(as = AssignmentSnapshot)]
struct AssignmentSnapshotSchema {
    /// The consumer group.
    group: String,
    /// This instance: `INSTANCE_ID`.
    instance_id: String,
    /// The partitions held now; empty between a rebalance's revoke and assign.
    partitions: Vec<AssignedPartitionSchema>,
    /// Rebalances this instance has seen since it started.
    rebalances: u64,
}

/// A partition this instance holds.
#[derive(Serialize, ToSchema)]
#[schema(as = AssignedPartition)]
struct AssignedPartitionSchema {
    topic: String,
    partition: i32,
    /// Events on the partition not handled yet; absent until librdkafka first reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<i64>,
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::kafka::AssignmentSnapshot;

    fn spec() -> Value {
        serde_json::to_value(document(OpenApi::default())).unwrap()
    }

    #[tokio::test]
    async fn the_problem_schema_names_every_member_a_problem_serialises() {
        let problem = Problem {
            extensions: Some(json!({"errors": []})),
            ..Problem::not_found("order 1")
        };
        let response = problem.into_response();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let schema = serde_json::to_value(Problem::schema()).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        for required in schema["required"].as_array().unwrap() {
            assert!(
                body.get(required.as_str().unwrap()).is_some(),
                "{required} is required but missing from {body}"
            );
        }
        for member in body.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(member) || member == "errors",
                "{member} is not in the schema"
            );
        }
        assert_eq!(
            schema["additionalProperties"], true,
            "extensions are allowed"
        );
    }

    #[test]
    fn the_assignment_schema_describes_what_the_endpoint_serialises() {
        let documented = AssignmentSnapshotSchema {
            group: "inventory-service".into(),
            instance_id: "inventory-1".into(),
            partitions: vec![AssignedPartitionSchema {
                topic: "orders".into(),
                partition: 3,
                lag: Some(7),
            }],
            rebalances: 2,
        };
        let documented = serde_json::to_value(documented).unwrap();
        // Fails if the copy lacks a member the real type requires...
        let real: AssignmentSnapshot = serde_json::from_value(documented.clone())
            .expect("the documented shape is an AssignmentSnapshot");
        // ...or names one the real type does not have.
        assert_eq!(serde_json::to_value(real).unwrap(), documented);
    }

    #[test]
    fn every_api_operation_documents_the_shared_problems_and_the_ops_endpoints_are_added() {
        #[utoipa::path(get, path = "/things", responses((status = 200, body = String)))]
        #[allow(dead_code)]
        fn things() {}
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(things))]
        struct Api;

        let spec = serde_json::to_value(document(Api::openapi())).unwrap();
        assert_eq!(spec["openapi"], "3.1.0");
        let responses = &spec["paths"]["/things"]["get"]["responses"];
        assert_eq!(responses["500"]["$ref"], "#/components/responses/Internal");
        assert_eq!(
            responses["503"]["$ref"],
            "#/components/responses/Overloaded"
        );
        let overloaded = &spec["components"]["responses"]["Overloaded"];
        assert!(overloaded["headers"]["Retry-After"].is_object());
        assert_eq!(
            overloaded["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/assignment",
            "/openapi.json",
            "/asyncapi.json",
            "/docs",
        ] {
            let get = &spec["paths"][path]["get"];
            assert_eq!(get["tags"][0], OPS_TAG, "{path}");
            assert!(
                get["responses"]["500"].is_null(),
                "{path} is not an API route"
            );
        }
        assert!(spec["components"]["schemas"]["AssignmentSnapshot"].is_object());
        assert!(spec["components"]["schemas"]["AssignedPartition"].is_object());
        let tags = spec["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 1, "the ops tag is listed once: {tags:?}");
        assert_eq!(tags[0]["name"], OPS_TAG);
    }

    #[test]
    fn a_service_with_its_own_probes_gets_only_the_problem_schema_and_the_docs() {
        #[utoipa::path(get, path = "/things", responses((status = 200, body = String)))]
        #[allow(dead_code)]
        fn things() {}
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(things))]
        struct Api;

        let spec = serde_json::to_value(document_without_ops(Api::openapi())).unwrap();
        let paths: Vec<_> = spec["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            ["/asyncapi.json", "/docs", "/openapi.json", "/things"]
        );
        let responses = spec["paths"]["/things"]["get"]["responses"]
            .as_object()
            .unwrap();
        assert_eq!(
            responses.keys().collect::<Vec<_>>(),
            ["200"],
            "nothing added"
        );
        assert!(spec["components"]["schemas"]["Problem"].is_object());
        assert!(spec["components"]["responses"]["Internal"].is_null());
        assert_eq!(spec["tags"][0]["name"], OPS_TAG);
    }

    #[test]
    fn every_problem_response_refers_to_the_problem_schema() {
        let spec = spec();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if let Some(content) = response["content"].get(PROBLEM_JSON) {
                        assert_eq!(
                            content["schema"]["$ref"], "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                    } else {
                        assert!(
                            !status.starts_with('4') && !status.starts_with('5'),
                            "{method} {path} {status} is an error but not a problem"
                        );
                    }
                }
            }
        }
    }

    async fn get(router: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_served_document_is_the_one_given() {
        let router = routes(document(OpenApi::default()));
        let (status, headers, body) = get(&router, "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), spec());
    }

    #[tokio::test]
    async fn the_viewer_and_its_assets_are_served_from_the_binary() {
        let router = routes(OpenApi::default());
        let (status, headers, page) = get(&router, "/docs").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let assets = page_assets(&page);
        assert_eq!(
            assets,
            [
                "docs/swagger-ui.css",
                "docs/swagger-ui-bundle.js",
                "docs/docs.js"
            ]
        );
        for asset in assets {
            let (status, _, body) = get(&router, &format!("/{asset}")).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(body.len() > 100, "{asset} is empty");
        }
        // The start-up script reads the document relative to the page and turns off the
        // validator badge, which would call validator.swagger.io.
        assert!(DOCS_SCRIPT.contains(r#"url: "openapi.json""#));
        assert!(DOCS_SCRIPT.contains("validatorUrl: null"));
    }
}

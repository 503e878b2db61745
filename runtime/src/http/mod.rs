//! HTTP pieces every service shares: RFC 9457 problem details, the operational endpoints
//! and serving with a shutdown token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

mod server;

pub use server::{ServerLimits, ServerLimitsArgs};

use crate::health::Liveness;
use crate::kafka::{Assignment, EventProducer};
use crate::metrics::HttpMetrics;
use crate::outbox::RelayMetrics;

/// An RFC 9457 problem detail, sent as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// A stable, machine-readable slug: `type` becomes `/problems/<slug>`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extension members merged into the body, e.g. a list of field errors.
    pub extensions: Option<Value>,
    /// Seconds to wait before retrying, sent as `Retry-After`: set on every 503.
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            extensions: None,
            retry_after: None,
        }
    }

    /// A 503 that tells the client when to try again: the instance is overloaded, or a
    /// dependency it needs for this request (its database) cannot be reached right now.
    pub fn unavailable(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            retry_after: Some(1),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, slug, title, detail)
        }
    }

    /// The service's database cannot be reached: a 503 to retry, not a 500. The cause is
    /// logged by the caller and never put in the body.
    pub fn database_unavailable() -> Self {
        Problem::unavailable(
            "database-unavailable",
            "Database unavailable",
            "this service cannot reach its database right now; retry after a second",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{what} does not exist"),
        )
    }

    /// For failures that are ours, not the client's. The cause is logged by the caller and
    /// never put in the body.
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; it has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("/problems/{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (self.extensions, &mut body) {
            map.extend(extra);
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(body),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(err: sqlx::Error) -> Self {
        if database_unreachable(&err) {
            tracing::warn!(error = %err, "database unreachable");
            Problem::database_unavailable()
        } else {
            tracing::error!(error = %err, "database query failed");
            Problem::internal()
        }
    }
}

/// Whether `err` says the database cannot be reached now (no connection, a connection lost,
/// the server shutting down or starting, no connection slot free), as opposed to a query it
/// refused: the first passes by itself and is a 503 with `Retry-After`, the second is a 500.
pub fn database_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: the server is shutting down,
            // crashed or is starting; 53300: too many connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// What read endpoints return: JSON, or a problem.
pub type ApiResult<T> = Result<Json<T>, Problem>;

/// `axum::extract::Query`, refusing a query string that does not parse (`?limit=abc`,
/// `?limit=`) with a 400 problem naming the parameter, like every other client error, instead
/// of axum's plain-text rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                rejection.body_text(),
            )),
        }
    }
}

/// Deserializes an integer field from any JSON number with no fractional part: JSON Schema's
/// `integer` (what the OpenAPI documents say) takes `59.0`, and so does the server. A number
/// with a fraction or out of the field's range is refused, naming the number.
///
/// ```ignore
/// #[serde(deserialize_with = "shop_runtime::http::integer")]
/// pub quantity: i64,
/// ```
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_i64().or_else(|| {
        let float = number.as_f64()?;
        // i64::MAX as f64 rounds up to 2^63, which is out of range: hence `<`.
        (float.fract() == 0.0 && float >= i64::MIN as f64 && float < i64::MAX as f64)
            .then_some(float as i64)
    });
    whole
        .and_then(|whole| T::try_from(whole).ok())
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// Parses an id from a path, refusing anything that is not a UUID with 400.
pub fn parse_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-path",
            "Invalid path parameter",
            format!("`{raw}` is not a UUID"),
        )
    })
}

/// Answers unknown routes and methods with problem+json too, so every error a client can
/// get from a service has the same shape.
pub fn with_problem_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such route",
            )
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept that method",
            )
        })
        .layer(middleware::map_response(problem_for_plain_errors))
}

/// Rewrites an error answered in plain text (an extractor's rejection, such as a path that is
/// not valid percent-encoded UTF-8, or a body over the limit) as problem+json with the same
/// status and headers. A 4xx keeps the text as its `detail`; a 5xx's text is dropped, as
/// [`Problem::internal`] drops its cause. Error answers that are already JSON are left alone.
async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let title = status.canonical_reason().unwrap_or("Error");
    let text = axum::body::to_bytes(body, 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = if status.is_client_error() && !text.is_empty() {
        text
    } else {
        title.to_lowercase()
    };
    let slug = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ if status.is_client_error() => "client-error",
        _ => "server-error",
    };
    let mut problem = Problem::new(status, slug, title, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name, value.clone());
        }
    }
    problem
}

/// How many API requests an instance handles at once, and how many may wait for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightLimits {
    /// Requests handled at once.
    pub max: usize,
    /// Requests waiting for a turn; past that, a request is answered 503 at once.
    pub max_queued: usize,
    /// How long a request waits for a turn before it is answered 503.
    pub queue_timeout: Duration,
}

impl InFlightLimits {
    /// `max` at once and nobody waiting: every request past `max` is turned away at once.
    pub fn no_queue(max: usize) -> Self {
        InFlightLimits {
            max,
            max_queued: 0,
            queue_timeout: Duration::ZERO,
        }
    }
}

/// Handles at most `limits.max` of `router`'s requests at once; up to `limits.max_queued`
/// more wait their turn, first come first served, for at most `limits.queue_timeout`. The
/// rest, and those whose wait runs out, are answered with a 503 problem and `Retry-After: 1`,
/// counted in `shed`.
///
/// Without a bound, a crowd queues for the database pool until requests time out after
/// seconds. Turning every request past the bound away at once is no better under overload:
/// clients come straight back, and answering their 503s takes the CPU the orders need (at 4×
/// the bound, goodput fell to a third). A short, bounded queue keeps the instance working at
/// its capacity while every client still gets an answer within the queue time-out plus one
/// request's time. Apply it to the API routes only, so that `/healthz`, `/readyz` and
/// `/metrics` still answer under load.
pub fn limit_in_flight(router: Router, limits: InFlightLimits, shed: Counter) -> Router {
    let permits = Arc::new(Semaphore::new(limits.max));
    let queued = Arc::new(AtomicUsize::new(0));
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let permits = permits.clone();
        let queued = queued.clone();
        let shed = shed.clone();
        async move {
            // Permits freed go to those waiting first, so this never jumps the queue.
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => match QueueSlot::take(&queued, limits.max_queued) {
                    None => None,
                    Some(_slot) => {
                        tokio::time::timeout(limits.queue_timeout, permits.acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok)
                    }
                },
            };
            let Some(_permit) = permit else {
                shed.inc();
                return overloaded(limits.max);
            };
            next.run(request).await
        }
    }))
}

/// A place in the queue of [`limit_in_flight`], given back when dropped.
struct QueueSlot(Arc<AtomicUsize>);

impl QueueSlot {
    fn take(queued: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(queued.clone()))
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn overloaded(max: usize) -> Response {
    Problem::unavailable(
        "overloaded",
        "Overloaded",
        format!(
            "this instance is already handling {max} requests and has no room to queue \
             more; retry after a second"
        ),
    )
    .into_response()
}

/// What the operational endpoints report on.
#[derive(Clone)]
pub struct OpsState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub consumer: Option<ConsumerInfo>,
    /// Asked by `/readyz` whether a broker answers.
    pub kafka: EventProducer,
    /// Asked by `/healthz` whether a loop is stuck.
    pub liveness: Liveness,
    /// Its backlog is measured when `/metrics` is scraped.
    pub outbox: RelayMetrics,
}

#[derive(Clone)]
pub struct ConsumerInfo {
    pub group: String,
    pub instance_id: String,
    pub assignment: Assignment,
}

/// `/healthz` (no loop is stuck), `/readyz` (Kafka and the database answer), `/metrics`
/// (Prometheus text) and, for consumers, `/assignment` (the partitions this instance holds).
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/assignment", get(assignment))
        .with_state(state)
}

/// How long `/readyz` waits for each of Kafka and the database: well inside the few seconds
/// a probe is given.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Fails while a loop has been busy past the bound: the process is alive but not working,
/// and a restart is what would help.
async fn healthz(State(state): State<OpsState>) -> Result<&'static str, Problem> {
    let stuck = state.liveness.stuck();
    if stuck.is_empty() {
        return Ok("ok");
    }
    let detail = stuck
        .iter()
        .map(|s| format!("the {} loop has been busy for {:.0?}", s.name, s.busy_for))
        .collect::<Vec<_>>()
        .join("; ");
    tracing::error!(%detail, bound = ?state.liveness.bound(), "liveness check failed");
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stuck",
        "Stuck",
        format!("{detail}, past the bound of {:?}", state.liveness.bound()),
    ))
}

/// Fails while Kafka or the database does not answer: the service can take no work then,
/// and traffic should go elsewhere until it can. Both are asked at once.
async fn readyz(State(state): State<OpsState>) -> Result<&'static str, Problem> {
    let database = async {
        // Named: the macros need a column name that is a Rust identifier, not `?column?`.
        let ping = sqlx::query_scalar!(r#"SELECT 1 AS "ready!""#).fetch_one(&state.pool);
        match tokio::time::timeout(READY_TIMEOUT, ping).await {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(format!("the database is unreachable: {err}")),
            Err(_) => Some(format!(
                "the database did not answer within {READY_TIMEOUT:?}"
            )),
        }
    };
    let kafka = async {
        state
            .kafka
            .check_reachable(READY_TIMEOUT)
            .await
            .err()
            .map(|err| format!("Kafka is unreachable: {err:#}"))
    };
    let (database, kafka) = tokio::join!(database, kafka);
    let failures: Vec<String> = database.into_iter().chain(kafka).collect();
    if failures.is_empty() {
        return Ok("ready");
    }
    let detail = failures.join("; ");
    tracing::warn!(%detail, "readiness check failed");
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        "Not ready",
        detail,
    ))
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    if let Err(err) = state.outbox.measure_backlog(&state.pool).await {
        tracing::warn!(error = %err, "cannot measure the outbox backlog; reporting the last value");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(&state.registry),
    )
}

async fn assignment(State(state): State<OpsState>) -> Result<Response, Problem> {
    let info = state
        .consumer
        .ok_or_else(|| Problem::not_found("a consumer in this service"))?;
    Ok(Json(info.assignment.snapshot(&info.group, &info.instance_id)).into_response())
}

/// Counts and times every request `router` answers in `metrics`, labelled with the matched
/// route pattern (`/orders/{id}`), or `unmatched` for a request no route took.
pub fn observe(router: Router, metrics: HttpMetrics) -> Router {
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let metrics = metrics.clone();
        async move {
            let started = std::time::Instant::now();
            let method = request.method().clone();
            let route = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map(|path| path.as_str().to_owned());
            let response = next.run(request).await;
            metrics.observe(
                method.as_str(),
                route.as_deref().unwrap_or("unmatched"),
                response.status().as_u16(),
                started.elapsed(),
            );
            response
        }
    }))
}

/// Serves `router` until `shutdown` is cancelled, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let traced = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |path| path.as_str());
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            http.request.method = %request.method(),
            http.route = route,
            url.path = request.uri().path(),
        );
        // A caller's trace goes on here: the span is a child of its `traceparent`.
        if crate::trace::recording() {
            crate::trace::continue_trace(&span, traceparent(request));
        }
        span
    });
    // Unrecorded, the request's `traceparent` (a child of the caller's) is what the events
    // it stores carry.
    let propagated = middleware::from_fn(|request: Request, next: Next| async move {
        if crate::trace::recording() {
            return next.run(request).await;
        }
        let cause = crate::trace::child_of(traceparent(&request));
        crate::trace::with_request(cause, next.run(request)).await
    });
    server::serve(
        listener,
        router.layer(propagated).layer(traced),
        limits,
        shutdown,
    )
    .await
    .context("HTTP server failed")
}

/// The request's W3C `traceparent` header, if it has one.
fn traceparent(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(crate::trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
}

/// Binds the HTTP listener, naming the address in the error.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on HTTP_ADDR={addr}"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_query_string_that_does_not_parse_is_a_400_problem_naming_the_parameter() {
        #[derive(serde::Deserialize)]
        struct Page {
            #[allow(dead_code)]
            limit: Option<i64>,
        }
        let app = Router::new().route("/items", get(|Query(_): Query<Page>| async { "ok" }));
        for query in ["?limit=abc", "?limit=", "?limit=1.5"] {
            let response = app
                .clone()
                .oneshot(
                    axum::http::Request::get(format!("/items{query}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json",
                "{query}"
            );
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let problem: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["type"], "/problems/invalid-query");
            assert!(
                problem["detail"].as_str().unwrap().contains("limit"),
                "{query}: {problem}"
            );
        }
        let fine = app
            .oneshot(
                axum::http::Request::get("/items?limit=5")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
    }

    async fn problem_of(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json",
            "{status}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_path_that_is_not_percent_encoded_utf8_is_a_400_problem_not_plain_text() {
        let app = with_problem_fallbacks(Router::new().route(
            "/reservations/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
        ));
        let (status, problem) = problem_of(
            &app,
            axum::http::Request::get("/reservations/%ff%fe")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["type"], "/problems/bad-request");
        assert_eq!(problem["status"], 400);
        assert!(
            problem["detail"].as_str().unwrap().contains("UTF-8"),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_problem_and_a_plain_5xx_keeps_its_text_to_itself() {
        let app = with_problem_fallbacks(
            Router::new()
                .route(
                    "/echo",
                    axum::routing::post(|body: String| async move { body }),
                )
                .route(
                    "/broken",
                    get(|| async {
                        (
                            StatusCode::BAD_GATEWAY,
                            [(header::RETRY_AFTER, "7")],
                            "upstream at 10.0.0.7 said no",
                        )
                    }),
                )
                .layer(axum::extract::DefaultBodyLimit::max(8)),
        );
        let (status, problem) = problem_of(
            &app,
            axum::http::Request::post("/echo")
                .body(Body::from("far more than eight bytes"))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(problem["type"], "/problems/body-too-large");

        let response = app
            .clone()
            .oneshot(
                axum::http::Request::get("/broken")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let (status, problem) = problem_of(
            &app,
            axum::http::Request::get("/broken")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(!problem.to_string().contains("10.0.0.7"), "{problem}");
    }

    #[test]
    fn an_integer_field_takes_any_whole_json_number_and_refuses_fractions_and_overflow() {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(deserialize_with = "integer")]
            quantity: u32,
        }
        let parse = |json: &str| serde_json::from_str::<Line>(json).map(|line| line.quantity);
        assert_eq!(parse(r#"{"quantity": 59}"#).unwrap(), 59);
        assert_eq!(parse(r#"{"quantity": 59.0}"#).unwrap(), 59);
        assert_eq!(parse(r#"{"quantity": 5.9e1}"#).unwrap(), 59);
        for refused in ["59.5", "-1", "4294967296", "1e300", "\"59\""] {
            let json = format!(r#"{{"quantity": {refused}}}"#);
            assert!(parse(&json).is_err(), "{refused} was taken");
        }
    }

    #[test]
    fn a_lost_database_connection_is_a_503_to_retry_and_a_refused_query_a_500() {
        let lost = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        for err in [lost, sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            assert!(database_unreachable(&err), "{err}");
            let problem = Problem::from(err);
            assert_eq!(problem.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(problem.retry_after, Some(1));
            let response = problem.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
        let refused = sqlx::Error::RowNotFound;
        assert!(!database_unreachable(&refused));
        assert_eq!(
            Problem::from(refused).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn a_request_past_the_in_flight_limit_is_turned_away_at_once_with_retry_after() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let handler = {
            let (entered, release) = (entered.clone(), release.clone());
            move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }
        };
        let shed = Counter::default();
        let app = limit_in_flight(
            Router::new().route("/work", get(handler)),
            InFlightLimits::no_queue(1),
            shed.clone(),
        );
        let request = || {
            axum::http::Request::get("/work")
                .body(Body::empty())
                .unwrap()
        };

        let first = tokio::spawn(app.clone().oneshot(request()));
        entered.notified().await;
        let second = app.clone().oneshot(request()).await.unwrap();

        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            second.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(shed.get(), 1);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // The permit is back: the next request is handled.
        let third = tokio::spawn(app.oneshot(request()));
        entered.notified().await;
        release.notify_one();
        assert_eq!(third.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    /// A handler that signals when it starts and finishes when released.
    fn gated(entered: Arc<Notify>, release: Arc<Notify>) -> Router {
        Router::new().route(
            "/work",
            get(move || {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        )
    }

    fn work() -> axum::http::Request<Body> {
        axum::http::Request::get("/work")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_request_past_the_limit_waits_its_turn_and_is_served_when_one_finishes() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let shed = Counter::default();
        let limits = InFlightLimits {
            max: 1,
            max_queued: 1,
            queue_timeout: Duration::from_secs(30),
        };
        let app = limit_in_flight(
            gated(entered.clone(), release.clone()),
            limits,
            shed.clone(),
        );

        let first = tokio::spawn(app.clone().oneshot(work()));
        entered.notified().await;
        let queued = tokio::spawn(app.clone().oneshot(work()));
        // Lets the second request run until it waits in the queue (one thread runs both).
        tokio::task::yield_now().await;
        // The queue holds one: a third request is turned away at once.
        let third = app.clone().oneshot(work()).await.unwrap();
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()[header::RETRY_AFTER], "1");

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        entered.notified().await;
        release.notify_one();
        assert_eq!(queued.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(shed.get(), 1);
    }

    #[tokio::test]
    async fn a_request_that_waits_longer_than_the_queue_time_out_gets_a_503() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let shed = Counter::default();
        let limits = InFlightLimits {
            max: 1,
            max_queued: 10,
            queue_timeout: Duration::from_millis(200),
        };
        let app = limit_in_flight(
            gated(entered.clone(), release.clone()),
            limits,
            shed.clone(),
        );

        let first = tokio::spawn(app.clone().oneshot(work()));
        entered.notified().await;
        let waited = std::time::Instant::now();
        let second = app.clone().oneshot(work()).await.unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "1");
        assert!(
            waited.elapsed() >= Duration::from_millis(200),
            "turned away after {:?}, before its time in the queue was up",
            waited.elapsed()
        );
        assert_eq!(shed.get(), 1);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

//! The API under a crowd: more concurrent clients than database connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_service::db::TEST_MIGRATOR;
use order_service::routes::{self, AppState};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use shop_runtime::http::{InFlightLimits, limit_in_flight, with_problem_fallbacks};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::Notify;

const CLIENTS: usize = 64;
const CONNECTIONS: u32 = 4;
/// Above the pool size on purpose: requests do queue for connections, as in production.
const MAX_IN_FLIGHT: usize = 16;
/// Those past MAX_IN_FLIGHT wait this long at most for a turn, then get a 503.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(250);
/// The pool's wait for a connection. A request that waits it out is answered 503
/// `database-unavailable`: what a crowd without the in-flight limit runs into, and what the
/// test refuses. It is the only time in the test's verdict, and a long one: no busy machine
/// takes 5 s to run 16 requests on 4 connections.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const FOR: Duration = Duration::from_secs(3);

/// What one client saw: each answer's status, whether a 503 said when to retry, and the
/// slowest answer.
#[derive(Default)]
struct Seen {
    created: Vec<String>,
    shed: usize,
    listed: usize,
    unexpected: Vec<String>,
    slowest: Duration,
}

/// Serves the API on a runtime of its own, multi-threaded as in production, so the clients'
/// work does not count against the server's answers. Returns its URL and its pool.
async fn serve(connect: PgConnectOptions, connections: u32) -> (String, PgPool) {
    let (ready, url) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(connect)
                .await
                .unwrap();
            order_service::db::seed_catalog(&pool).await.unwrap();
            let state = AppState {
                pool: pool.clone(),
                relay_wake: Arc::new(Notify::new()),
                orders_placed: Counter::default(),
            };
            let limits = InFlightLimits {
                max: MAX_IN_FLIGHT,
                max_queued: CLIENTS,
                queue_timeout: QUEUE_TIMEOUT,
            };
            let api = limit_in_flight(routes::router(state), limits, Counter::default());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            ready.send((url, pool)).unwrap();
            axum::serve(listener, with_problem_fallbacks(api)).await
        })
    });
    url.await.unwrap()
}

async fn client(http: reqwest::Client, url: String, n: usize) -> Seen {
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < FOR {
        i += 1;
        let sent = Instant::now();
        // Every sixteenth request reads the newest orders: reads and writes share the pool.
        let request = if i % 16 == 0 {
            http.get(format!("{url}/orders?limit=500"))
        } else {
            http.post(format!("{url}/orders"))
                .header("idempotency-key", format!("crowd-{n}-{i}"))
                .json(&json!({
                    "customer_id": format!("crowd-{n}"),
                    "customer_email": "ada@example.com",
                    "items": [{"sku": "KB-001", "quantity": 1}, {"sku": "CB-005", "quantity": 2}],
                }))
        };
        let response = request.send().await.expect("the server answers");
        seen.slowest = seen.slowest.max(sent.elapsed());
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").cloned();
        let content_type = response.headers().get("content-type").cloned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            201 => seen.created.push(body["id"].as_str().unwrap().to_owned()),
            200 => seen.listed += 1,
            503 if retry_after.is_some()
                && content_type.is_some_and(|t| t == "application/problem+json")
                && body["type"] == "/problems/overloaded" =>
            {
                seen.shed += 1;
                // A polite client waits a little, as Retry-After asks (shortened for the test).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => seen.unexpected.push(format!("{status} {body}")),
        }
    }
    seen
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn sixty_four_clients_on_four_connections_are_all_answered_and_none_waits_out_the_pool(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (url, pool) = serve(connect, CONNECTIONS).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();

    let clients = (0..CLIENTS).map(|n| tokio::spawn(client(http.clone(), url.clone(), n)));
    let seen: Vec<Seen> = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let unexpected: Vec<&String> = seen.iter().flat_map(|s| &s.unexpected).collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 201, 200 or a 503 overloaded problem (a database-unavailable one \
         is a request that waited out the pool): {unexpected:?}"
    );
    let slowest = seen.iter().map(|s| s.slowest).max().unwrap();
    let created: Vec<&String> = seen.iter().flat_map(|s| &s.created).collect();
    let (shed, listed) = (
        seen.iter().map(|s| s.shed).sum::<usize>(),
        seen.iter().map(|s| s.listed).sum::<usize>(),
    );
    println!(
        "{} placed, {listed} lists, {shed} turned away, slowest {slowest:?}",
        created.len()
    );
    assert!(
        !created.is_empty() && listed > 0,
        "the crowd got some work done"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders JOIN outbox ON outbox.message_key = orders.id::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored as usize,
        created.len(),
        "every 201 stored with its event, nothing else"
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_order_list_returns_the_newest_orders_with_their_items(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (url, _) = serve(connect, 2).await;
    let http = reqwest::Client::new();
    let mut placed = Vec::new();
    for n in 1..=3 {
        let order: Value = http
            .post(format!("{url}/orders"))
            .json(&json!({
                "customer_id": format!("cust-{n}"),
                "customer_email": "ada@example.com",
                "items": [{"sku": "KB-001", "quantity": n}, {"sku": "MS-002", "quantity": 1}],
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        placed.push(order);
    }

    let listed: Vec<Value> = http
        .get(format!("{url}/orders?limit=500"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    placed.reverse();
    assert_eq!(
        listed, placed,
        "newest first, each exactly as its 201 showed it"
    );
    let two: Vec<Value> = http
        .get(format!("{url}/orders?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(two, placed[..2]);
}

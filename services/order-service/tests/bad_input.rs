//! A few hundred generated malformed requests: none gets a 5xx or a 2xx, every answer is
//! problem+json, and nothing is stored or published.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use order_service::db::TEST_MIGRATOR;
use order_service::routes::{self, AppState, MAX_BODY_BYTES};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use shop_runtime::http::with_problem_fallbacks;
use sqlx::PgPool;
use tokio::sync::Notify;
use tower::ServiceExt;

/// A small deterministic generator, so a failure names a case that can be re-run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn valid() -> Value {
    json!({"customer_id": "cust-1", "customer_email": "ada@example.com",
           "items": [{"sku": "KB-001", "quantity": 1}, {"sku": "MS-002", "quantity": 2}]})
}

/// Values of every JSON type, plus edge cases of each.
fn strange_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e308),
        json!(-1e20),
        json!(9_223_372_036_854_775_807_i64),
        json!(18_446_744_073_709_551_615_u64),
        json!(0.5),
        json!(""),
        json!("   "),
        json!("\u{0}"),
        json!("\u{7}bell"),
        json!("x".repeat(300)),
        json!("😀".repeat(255)),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({"nested": {"deeper": [null]}}),
    ]
}

/// One malformed request, described for the failure message.
fn generate(rng: &mut Rng) -> (String, Option<&'static str>, Vec<u8>) {
    let json_type = Some("application/json");
    match rng.below(9) {
        0 => {
            // A field of the wrong type or an impossible value.
            let mut order = valid();
            let value = rng.pick(&strange_values()).clone();
            let path = *rng.pick(&[
                "customer_id",
                "customer_email",
                "items",
                "items.0",
                "items.0.sku",
                "items.0.quantity",
            ]);
            match path {
                "items.0" => order["items"][0] = value.clone(),
                "items.0.sku" => order["items"][0]["sku"] = value.clone(),
                "items.0.quantity" => order["items"][0]["quantity"] = value.clone(),
                field => order[field] = value.clone(),
            }
            (
                format!("{path} = {value:.60}"),
                json_type,
                order.to_string().into_bytes(),
            )
        }
        1 => {
            let mut order = valid();
            let field = *rng.pick(&["customer_id", "customer_email", "items"]);
            order.as_object_mut().unwrap().remove(field);
            (
                format!("missing {field}"),
                json_type,
                order.to_string().into_bytes(),
            )
        }
        2 => {
            let mut order = valid();
            let quantity = *rng.pick(&[0_i64, -1, -1000, 1001, i64::MAX, i64::MIN]);
            order["items"][rng.below(2)]["quantity"] = json!(quantity);
            (
                format!("quantity {quantity}"),
                json_type,
                order.to_string().into_bytes(),
            )
        }
        3 => {
            let body = valid().to_string();
            let cut = 1 + rng.below(body.len() - 1);
            (
                format!("truncated at {cut}"),
                json_type,
                body.as_bytes()[..cut].to_vec(),
            )
        }
        4 => {
            let content_type = *rng.pick(&[
                "text/plain",
                "application/xml",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/octet-stream",
            ]);
            (
                format!("content type {content_type}"),
                Some(content_type),
                valid().to_string().into_bytes(),
            )
        }
        5 => (
            "no content type".into(),
            None,
            valid().to_string().into_bytes(),
        ),
        6 => {
            let mut order = valid();
            order["customer_id"] = json!("a".repeat(MAX_BODY_BYTES + rng.below(100_000)));
            (
                "oversized body".into(),
                json_type,
                order.to_string().into_bytes(),
            )
        }
        7 => {
            let raw: &[&[u8]] = &[
                b"\xff\xfe{}",
                b"{\"customer_id\": \"\xc3\x28\"}",
                b"{\"customer_id\": \"\\ud800\", \"customer_email\": \"a@b.c\", \"items\": []}",
                b"\xef\xbb\xbf{\"customer_id\": 1}",
                b"",
                b"null",
                b"[]",
                b"\"order\"",
                b"{\"items\": [{\"sku\": \"KB-001\", \"quantity\": 1e400}]}",
            ];
            let body = rng.pick(raw);
            (
                format!("raw {:?}", String::from_utf8_lossy(body)),
                json_type,
                body.to_vec(),
            )
        }
        _ => {
            let mut order = valid();
            let (what, items) = match rng.below(4) {
                0 => ("no items", json!([])),
                1 => ("unknown sku", json!([{"sku": "ZZ-999", "quantity": 1}])),
                2 => (
                    "sku twice",
                    json!([{"sku": "KB-001", "quantity": 1}, {"sku": "KB-001", "quantity": 1}]),
                ),
                _ => (
                    "101 items",
                    json!(
                        (0..101)
                            .map(|i| json!({"sku": format!("S-{i}"), "quantity": 1}))
                            .collect::<Vec<_>>()
                    ),
                ),
            };
            order["items"] = items;
            if rng.below(2) == 0 {
                order["extra"] = json!("unknown field");
            }
            (what.into(), json_type, order.to_string().into_bytes())
        }
    }
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn hundreds_of_malformed_orders_get_problems_never_a_5xx_and_change_nothing(pool: PgPool) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let state = AppState {
        pool: pool.clone(),
        relay_wake: Arc::new(Notify::new()),
        orders_placed: Counter::default(),
    };
    let app: Router = with_problem_fallbacks(routes::router(state));
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);

    for case in 0..400 {
        let (what, content_type, body) = generate(&mut rng);
        let mut request = Request::post("/orders");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let problem_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);

        assert!(
            status.is_client_error(),
            "case {case} ({what}): got {status}: {problem}"
        );
        assert!(problem_json, "case {case} ({what}): not problem+json");
        assert_eq!(problem["status"], status.as_u16(), "case {case} ({what})");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/")),
            "case {case} ({what})"
        );
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "case {case} ({what})"
        );
    }

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (stored, queued),
        (0, 0),
        "nothing stored, nothing to publish"
    );
}

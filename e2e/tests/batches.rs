//! Consumers apply a backlog in batches, one transaction per partition's run of events, with
//! the guarantees of one event at a time: redeliveries change nothing, poison is parked alone.

use std::time::Duration;

use chrono::Utc;
use e2e::{Consumer, Running, Stack, eventually};
use shop_runtime::envelope::headers;
use shop_runtime::kafka::{EventProducer, OutgoingRecord, dead_letter, dead_letters};
use shop_runtime::{Envelope, OrderConfirmed, OrderLine, OrderPlaced, topics};

const PATIENCE: Duration = Duration::from_secs(90);
const ORDERS: usize = 600;

fn order(n: usize, email: &str) -> Envelope<OrderPlaced> {
    let quantity = 1 + (n % 3) as i32;
    Envelope::order_placed(
        OrderPlaced {
            order_id: uuid::Uuid::new_v4(),
            customer_id: format!("batch-{n}"),
            customer_email: email.to_owned(),
            items: vec![OrderLine {
                sku: ["KB-001", "MS-002", "CB-005"][n % 3].to_owned(),
                quantity,
                unit_price_cents: 1_000,
            }],
            total_cents: i64::from(quantity) * 1_000,
            currency: "EUR".to_owned(),
        },
        Utc::now(),
    )
}

/// The saga's happy end for `placed`, as the Order Service would publish it.
fn confirmed(placed: &Envelope<OrderPlaced>) -> Envelope<OrderConfirmed> {
    let order = placed.data.clone();
    Envelope::new(
        OrderConfirmed {
            order_id: order.order_id,
            customer_id: order.customer_id,
            customer_email: order.customer_email,
            items: order.items,
            total_cents: order.total_cents,
            currency: order.currency,
            placed_at: placed.meta.occurred_at,
        },
        Utc::now(),
    )
}

async fn publish(producer: &EventProducer, key: &str, payload: &[u8], event_id: &str) {
    let record = OutgoingRecord {
        topic: topics::ORDERS,
        key: key.as_bytes(),
        payload,
        headers: &[(headers::EVENT_ID, event_id.as_bytes())],
    };
    producer.send(record).await.expect("the broker takes it");
}

/// A reading of one of the consumer's metrics, `None` while it has not been reported.
async fn reading(stack: &Stack, service: &Running, (name, labels): Metric) -> Option<u64> {
    let text = stack
        .http
        .get(format!("http://127.0.0.1:{}/metrics", service.port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    e2e::sample(&text, name, labels).map(|value| value as u64)
}

/// A metric that must be there: a missing one fails the test rather than reading as zero.
async fn metric(stack: &Stack, service: &Running, metric: Metric) -> u64 {
    reading(stack, service, metric)
        .await
        .unwrap_or_else(|| panic!("{} reports no {metric:?}", service.name))
}

/// A metric's name and the labels that pick one of its series.
type Metric = (&'static str, &'static [(&'static str, &'static str)]);

const EVENTS: &str = "shop_consumer_events_total";
const PROCESSED: Metric = (EVENTS, &[("outcome", "processed")]);
const DUPLICATE: Metric = (EVENTS, &[("outcome", "duplicate")]);
const PARKED: Metric = (EVENTS, &[("outcome", "dead_lettered")]);

async fn rows(stack: &Stack, database: &str, sql: &str) -> i64 {
    let url = stack.database.url(&format!("{}{database}", stack.prefix));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_with_redeliveries_and_poison_is_applied_once_in_batches_and_the_poison_parked_alone()
 {
    let stack = Stack::start().await;
    shop_runtime::kafka::ensure_topics(&stack.kafka(), &shop_runtime::topics::EVERY)
        .await
        .unwrap();
    let producer = EventProducer::connect(&stack.kafka(), Duration::from_secs(30))
        .await
        .unwrap();

    // The backlog, before any consumer runs: orders placed and confirmed, every tenth
    // placement delivered twice, a message that is not an event, and an order whose address
    // no mail can go to (an older release accepted such addresses).
    let unmailable = order(ORDERS, "ada@example..com");
    for n in 0..ORDERS {
        let event = order(n, &format!("customer-{n}@example.com"));
        let (key, id) = (
            event.data.order_id.to_string(),
            event.meta.event_id.to_string(),
        );
        publish(&producer, &key, &event.to_json(), &id).await;
        if n % 10 == 0 {
            publish(&producer, &key, &event.to_json(), &id).await;
        }
        let end = confirmed(&event);
        publish(
            &producer,
            &key,
            &end.to_json(),
            &end.meta.event_id.to_string(),
        )
        .await;
        if n == ORDERS / 2 {
            publish(&producer, &key, b"{\"not\": \"an event\"}", "").await;
            let key = unmailable.data.order_id.to_string();
            let end = confirmed(&unmailable);
            for payload in [unmailable.to_json(), end.to_json()] {
                publish(&producer, &key, &payload, "").await;
            }
        }
    }
    let redelivered = ORDERS.div_ceil(10) as u64;

    let mut consumers = Vec::new();
    for consumer in Consumer::ALL {
        consumers.push(stack.start_consumer(consumer, "1").await);
    }
    let [inventory, payment, email, analytics] = &consumers[..] else {
        unreachable!()
    };
    let all = ORDERS as u64 + 1;
    // Each order's order_placed and order_confirmed.
    let events = 2 * all;
    for (service, processed, parked) in [
        (inventory, events, 1),
        (payment, events, 1),
        (email, events - 1, 2),
        (analytics, events, 1),
    ] {
        eventually(
            &format!("{} to handle the backlog", service.name),
            PATIENCE,
            || async {
                let handled = reading(&stack, service, PROCESSED).await?
                    + reading(&stack, service, DUPLICATE).await?
                    + reading(&stack, service, PARKED).await?;
                (handled == events + redelivered + 1).then_some(())
            },
        )
        .await;
        assert_eq!(
            metric(&stack, service, PROCESSED).await,
            processed,
            "{}",
            service.name
        );
        assert_eq!(
            metric(&stack, service, DUPLICATE).await,
            redelivered,
            "{}: every redelivery recognised",
            service.name
        );
        assert_eq!(
            metric(&stack, service, PARKED).await,
            parked,
            "{}",
            service.name
        );
        let transactions = metric(&stack, service, ("shop_consumer_batch_events_count", &[])).await;
        assert!(
            transactions < processed / 2,
            "{}: {processed} events took {transactions} transactions; a backlog is applied in batches",
            service.name
        );
    }

    // The effects, once per order.
    assert_eq!(
        rows(&stack, "inventory", "SELECT count(*) FROM reservations").await,
        all as i64
    );
    assert_eq!(
        rows(
            &stack,
            "payments",
            "SELECT count(*) FROM payments WHERE status = 'captured'"
        )
        .await,
        all as i64
    );
    assert_eq!(
        rows(&stack, "email", "SELECT count(*) FROM emails").await,
        ORDERS as i64
    );
    assert_eq!(
        rows(&stack, "analytics", "SELECT orders FROM revenue").await,
        all as i64
    );
    let units: i64 = (0..=ORDERS).map(|n| 1 + (n % 3) as i64).sum();
    assert_eq!(
        rows(
            &stack,
            "analytics",
            "SELECT sum(quantity)::bigint FROM item_sales"
        )
        .await,
        units
    );
    let mails = std::fs::read_dir(stack.mail_dir.path()).unwrap().count();
    assert_eq!(mails, ORDERS, "one .eml per mailable order");

    // Parked: the poison by every service, the unmailable order by email alone.
    let letters =
        dead_letters::read_all(&stack.kafka(), &topics::dead_letter_topic(topics::ORDERS))
            .await
            .unwrap();
    let mut reasons: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l.header(dead_letter::SERVICE).unwrap().to_owned(),
                l.header(dead_letter::ERROR_KIND).unwrap().to_owned(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("analytics-service", "malformed_envelope"),
            ("email-service", "malformed_envelope"),
            ("email-service", "rejected"),
            ("inventory-service", "malformed_envelope"),
            ("payment-service", "malformed_envelope"),
        ]
        .map(|(s, k)| (s.to_owned(), k.to_owned()))
    );

    for service in consumers {
        service.stop().await;
    }
    stack.finish().await;
}

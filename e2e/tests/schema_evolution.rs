//! Schema evolution, through a real broker: `order_cancelled` gained a `cause` in version 2,
//! and producers and consumers of either version work together.
//!
//! - The previous release wrote version 1 (and no `event_version` header): every current
//!   consumer reads it, its cause unknown.
//! - The current Order Service writes version 2, or version 1 while a rolling upgrade still
//!   runs consumers that read only version 1 (`ORDER_CANCELLED_VERSION=1`). A version 1
//!   consumer reads what it writes then; it refuses version 2 as an unsupported version,
//!   which parks the event, never drops it (`reliability.rs` proves that path), until it is
//!   upgraded and the event replayed.

use std::time::Duration;

use e2e::{Consumer, Running, Service, Stack, eventually};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Value, json};
use shop_runtime::envelope::headers;
use shop_runtime::kafka::{EventProducer, OutgoingRecord};
use shop_runtime::{CancelCause, Envelope, Event, EventData, OrderCancelled, OrderPlaced, topics};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

/// The previous release's reader of `order_cancelled`: version 1 only, strictly (unknown
/// fields refused), as its `Envelope::decode` was. An `Err` is what it would have parked.
mod previous_release {
    use shop_runtime::v1;

    pub fn read_cancellation(payload: &[u8]) -> Result<v1::OrderCancelled, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            event_type: String,
            event_version: u32,
            data: serde_json::Value,
        }
        let raw: Raw = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        assert_eq!(raw.event_type, "order_cancelled");
        if raw.event_version != 1 {
            return Err(format!(
                "unsupported version {} of event type `order_cancelled`",
                raw.event_version
            ));
        }
        serde_json::from_value(raw.data).map_err(|e| e.to_string())
    }
}

/// Publishes `event` as the previous release's relay did: its type and id as headers, no
/// `event_version` header.
async fn publish_as_previous_release<T: EventData>(stack: &Stack, event: &Envelope<T>) {
    let producer = EventProducer::connect(&stack.kafka(), Duration::from_secs(10))
        .await
        .expect("a producer connects");
    let event_id = event.meta.event_id.to_string();
    let key = event.meta.order_id.to_string();
    let payload = event.to_json();
    let headers: [(&str, &[u8]); 2] = [
        (headers::EVENT_TYPE, T::EVENT_TYPE.as_bytes()),
        (headers::EVENT_ID, event_id.as_bytes()),
    ];
    producer
        .send(OutgoingRecord {
            topic: T::TOPIC,
            key: key.as_bytes(),
            payload: &payload,
            headers: &headers,
        })
        .await
        .expect("the broker acknowledges the event");
}

/// The golden order, as `order_id`.
fn golden_order(order_id: Uuid) -> OrderPlaced {
    let mut golden: Value = serde_json::from_str(include_str!(
        "../../contract/tests/golden/order_placed.v1.json"
    ))
    .unwrap();
    golden["data"]["order_id"] = json!(order_id);
    serde_json::from_value(golden["data"].take()).unwrap()
}

async fn counter(stack: &Stack, service: &Running, outcome: &str) -> u64 {
    stack.events_handled(service, outcome).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_1_cancellation_from_the_previous_release_is_read_by_every_current_consumer() {
    let stack = Stack::start().await;
    let mut consumers = Vec::new();
    for consumer in Consumer::ALL {
        consumers.push(stack.start_consumer(consumer, "1").await);
    }

    let order_id = Uuid::new_v4();
    let placed = golden_order(order_id);
    let cancelled = shop_runtime::v1::OrderCancelled {
        order_id,
        customer_id: placed.customer_id.clone(),
        customer_email: placed.customer_email.clone(),
        items: placed.items.clone(),
        total_cents: placed.total_cents,
        currency: placed.currency.clone(),
        placed_at: chrono::Utc::now(),
        reason: "insufficient stock: KB-001: 1 wanted, 0 available".into(),
    };
    publish_as_previous_release(&stack, &Envelope::new(placed, chrono::Utc::now())).await;
    publish_as_previous_release(&stack, &Envelope::new(cancelled, chrono::Utc::now())).await;

    for consumer in &consumers {
        eventually(
            &format!("{} to process both events", consumer.name()),
            PATIENCE,
            || async { (counter(&stack, consumer, "processed").await >= 2).then_some(()) },
        )
        .await;
        assert_eq!(
            counter(&stack, consumer, "dead_lettered").await,
            0,
            "{} parked a version 1 event",
            consumer.name()
        );
    }
    let analytics = &consumers[3];
    let stats = eventually("analytics to count the cancellation", PATIENCE, || async {
        let stats = stack.get_json(analytics, "/stats").await?;
        (stats["orders"]["cancelled"] == 1).then_some(stats)
    })
    .await;
    assert_eq!(
        stats["orders"]["cancelled_by"],
        json!({"stock_rejected": 0, "payment_declined": 0, "timed_out": 0, "unknown": 1}),
        "a version 1 cancellation does not say its cause"
    );
    let mail = eventually("the cancellation mail", PATIENCE, || {
        stack.get_json(&consumers[2], format!("/emails/{order_id}"))
    })
    .await;
    assert!(mail.to_string().contains("cancel"), "{mail:#}");

    for consumer in consumers {
        consumer.stop().await;
    }
    stack.finish().await;
}

/// The `order_cancelled` events on `orders`, by order, with their `event_version` header.
async fn cancellations(stack: &Stack, orders: &[Uuid]) -> Vec<(Uuid, String, Vec<u8>)> {
    let consumer = shop_runtime::kafka::tail(
        &stack.kafka(),
        &[topics::ORDERS],
        rdkafka::Offset::Beginning,
    )
    .await
    .expect("an observer of orders");
    let mut found = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while found.len() < orders.len() {
            let message = consumer.recv().await.expect("reads orders");
            let header = |name: &str| {
                message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            if header(headers::EVENT_TYPE).as_deref() != Some("order_cancelled") {
                continue;
            }
            let Some(order_id) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok()?.parse().ok())
            else {
                continue;
            };
            if orders.contains(&order_id) {
                let version = header(headers::EVENT_VERSION).unwrap_or_default();
                found.push((order_id, version, message.payload().unwrap().to_vec()));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} cancellations on orders", orders.len()));
    found.sort_by_key(|(id, _, _)| orders.iter().position(|o| o == id));
    found
}

/// Places an order and answers it `stock_rejected` as Inventory does, so the saga cancels it.
async fn place_and_reject(stack: &Stack, order_service: &Running) -> Uuid {
    let order = stack
        .place_order(
            order_service,
            &json!({"customer_id": "cust-9", "customer_email": "alan@example.com",
                    "items": [{"sku": "KB-001", "quantity": 1}]}),
        )
        .await;
    let order_id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let rejected = shop_runtime::StockRejected {
        order_id,
        reason: "insufficient stock: KB-001: 1 wanted, 0 available".into(),
    };
    publish_as_previous_release(stack, &Envelope::new(rejected, chrono::Utc::now())).await;
    order_id
}

async fn start_order_service(
    stack: &Stack,
    version: order_service::saga::CancelledVersion,
) -> Running {
    stack
        .start_order_service_with(|settings| settings.order_cancelled_version = version)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_service_writes_version_1_for_old_consumers_during_an_upgrade_and_version_2_after()
 {
    use order_service::saga::CancelledVersion;

    let stack = Stack::start().await;
    let analytics = stack.start_consumer(Consumer::Analytics, "1").await;

    // During the upgrade: consumers that read only version 1 still run.
    let order_service = start_order_service(&stack, CancelledVersion::V1).await;
    let during = place_and_reject(&stack, &order_service).await;
    let _ = cancellations(&stack, &[during]).await;
    order_service.stop().await;

    // Every consumer reads version 2 now: the setting is dropped.
    let order_service = start_order_service(&stack, CancelledVersion::V2).await;
    let after = place_and_reject(&stack, &order_service).await;

    let found = cancellations(&stack, &[during, after]).await;
    let (_, version, payload) = &found[0];
    assert_eq!(version, "1");
    let old = previous_release::read_cancellation(payload)
        .expect("a version 1 consumer reads what the Order Service writes during the upgrade");
    assert_eq!(old.order_id, during);
    let current = current_cancellation(payload);
    assert_eq!(current.cause, None, "version 1 does not carry the cause");

    let (_, version, payload) = &found[1];
    assert_eq!(version, "2");
    let refused = previous_release::read_cancellation(payload).unwrap_err();
    assert!(refused.contains("unsupported version 2"), "{refused}");
    let current = current_cancellation(payload);
    assert_eq!(current.cause, Some(CancelCause::StockRejected));

    // A current consumer read both, through the broker.
    let stats = eventually(
        "analytics to count both cancellations",
        PATIENCE,
        || async {
            let stats = stack.get_json(&analytics, "/stats").await?;
            (stats["orders"]["cancelled"] == 2).then_some(stats)
        },
    )
    .await;
    assert_eq!(
        stats["orders"]["cancelled_by"],
        json!({"stock_rejected": 1, "payment_declined": 0, "timed_out": 0, "unknown": 1})
    );
    assert_eq!(counter(&stack, &analytics, "dead_lettered").await, 0);

    order_service.stop().await;
    analytics.stop().await;
    stack.finish().await;
}

fn current_cancellation(payload: &[u8]) -> OrderCancelled {
    match Envelope::decode(Some(payload))
        .expect("the current reader")
        .data
    {
        Event::OrderCancelled(cancelled) => cancelled,
        other => panic!("not a cancellation: {other:?}"),
    }
}

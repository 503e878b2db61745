//! Nothing lost, nothing twice, nothing stuck: poison messages, failing handlers, replay from
//! the dead-letter topic, and a broker restart under load.

use std::collections::HashSet;
use std::time::Duration;

use e2e::{Consumer, Load, Running, Service, Stack, eventually};
use serde_json::{Value, json};
use shop_runtime::kafka::dead_letter;
use shop_runtime::kafka::dead_letters::{self, DeadLetter};
use shop_runtime::topics;

const PATIENCE: Duration = Duration::from_secs(60);

fn an_order() -> Value {
    json!({"customer_id": "cust-7", "customer_email": "grace@example.com", "items": [{"sku": "CB-005", "quantity": 1}]})
}

async fn parked(stack: &Stack, expected: usize) -> Vec<DeadLetter> {
    let topic = topics::dead_letter_topic(topics::ORDERS);
    eventually(
        &format!("{expected} messages on {topic}"),
        PATIENCE,
        || async {
            let letters = dead_letters::read_all(&stack.kafka(), &topic).await.ok()?;
            (letters.len() >= expected).then_some(letters)
        },
    )
    .await
}

async fn count_at(stack: &Stack, service: &Running, path: &str) -> usize {
    stack
        .get_json(service, path)
        .await
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_parked_with_their_reasons_and_orders_after_them_are_processed() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let mut consumers = Vec::new();
    for consumer in Consumer::ALL {
        consumers.push(stack.start_consumer(consumer, "1").await);
    }

    let golden: Value = serde_json::from_str(include_str!(
        "../../contract/tests/golden/order_placed.v1.json"
    ))
    .unwrap();
    let mut future_version = golden.clone();
    future_version["event_version"] = json!(99);
    let mut bad_total = golden.clone();
    bad_total["data"]["total_cents"] = json!(1);
    stack
        .produce_raw("garbage", b"\x00\x9f definitely not json")
        .await;
    stack
        .produce_raw("future", future_version.to_string().as_bytes())
        .await;
    stack
        .produce_raw("bad-total", bad_total.to_string().as_bytes())
        .await;
    let placed = stack.place_order(&order_service, &an_order()).await;
    let id = placed["id"].as_str().unwrap().to_owned();

    // Every group parks each of the three, then handles the real order.
    let letters = parked(&stack, 3 * Consumer::ALL.len()).await;
    let reasons: HashSet<(String, String, String)> = letters
        .iter()
        .map(|l| {
            (
                String::from_utf8_lossy(&l.key).into_owned(),
                l.header(dead_letter::ERROR_KIND).unwrap().to_owned(),
                l.header(dead_letter::SERVICE).unwrap().to_owned(),
            )
        })
        .collect();
    for consumer in Consumer::ALL {
        let service = consumer.identity().name.to_owned();
        for (key, kind) in [
            ("garbage", "malformed_envelope"),
            ("future", "unsupported_version"),
            ("bad-total", "invalid_data"),
        ] {
            assert!(
                reasons.contains(&(key.into(), kind.into(), service.clone())),
                "{service} parked {key} as {kind}: {reasons:?}"
            );
        }
    }
    let future = letters.iter().find(|l| l.key == b"future").unwrap();
    assert!(
        future
            .header(dead_letter::ERROR)
            .unwrap()
            .contains("unsupported version 99")
    );
    assert_eq!(future.origin().unwrap().0, "orders");
    assert_eq!(
        future.payload,
        future_version.to_string().as_bytes(),
        "parked unchanged"
    );

    let (inventory, payment, email, analytics) =
        (&consumers[0], &consumers[1], &consumers[2], &consumers[3]);
    for (service, path) in [
        (inventory, format!("/reservations/{id}")),
        (payment, format!("/payments/{id}")),
        (email, format!("/emails/{id}")),
    ] {
        eventually(
            &format!("{} to handle the order after the poison", service.name),
            PATIENCE,
            || stack.get_json(service, path.clone()),
        )
        .await;
    }
    for service in &consumers {
        assert_eq!(
            stack.events_handled(service, "dead_lettered").await,
            3,
            "{}",
            service.name
        );
    }
    eventually("analytics to count the order", PATIENCE, || async {
        (stack.get_json(analytics, "/stats").await?["orders"]["confirmed"] == 1).then_some(())
    })
    .await;

    order_service.stop().await;
    for service in consumers {
        service.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_a_service_keeps_failing_on_is_parked_and_replayed_once_the_fault_is_fixed() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    // Inventory and Payment decide the order; email is told the decision.
    let inventory = stack.start_consumer(Consumer::Inventory, "1").await;
    let payment = stack.start_consumer(Consumer::Payment, "1").await;
    // Nothing listens on this port: every send fails, as when the mail server is down.
    let dead_smtp = format!("smtp://127.0.0.1:{}", e2e::broker::free_port());
    let broken_email = stack.start_email_via_smtp("1", &dead_smtp).await;

    let placed = stack.place_order(&order_service, &an_order()).await;
    let id = placed["id"].as_str().unwrap().to_owned();
    let letters = parked(&stack, 1).await;
    assert_eq!(
        letters[0].header(dead_letter::ERROR_KIND),
        Some("retries_exhausted")
    );
    assert_eq!(
        letters[0].header(dead_letter::SERVICE),
        Some("email-service")
    );
    assert_eq!(letters[0].header(dead_letter::ATTEMPTS), Some("5"));
    assert!(stack.events_handled(&broken_email, "retried").await >= 4);
    eventually("payment to capture, unaffected", PATIENCE, || async {
        let payment = stack.get_json(&payment, format!("/payments/{id}")).await?;
        (payment["status"] == "captured").then_some(())
    })
    .await;

    // The fix: the mail goes to the mail directory. Then the parked event is replayed.
    broken_email.stop().await;
    let email = stack.start_consumer(Consumer::Email, "1").await;
    let producer =
        shop_runtime::kafka::EventProducer::connect(&stack.kafka(), Duration::from_secs(10))
            .await
            .unwrap();
    dead_letters::replay(&producer, &letters[0]).await.unwrap();

    eventually("the replayed event to be mailed", PATIENCE, || {
        stack.get_json(&email, format!("/emails/{id}"))
    })
    .await;
    eventually(
        "payment to see the replay as a duplicate",
        PATIENCE,
        || async { (stack.events_handled(&payment, "duplicate").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        count_at(&stack, &payment, "/payments").await,
        1,
        "charged once, not twice"
    );

    for service in [order_service, inventory, payment, email] {
        service.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_placed_before_during_and_after_a_broker_restart_all_arrive_once() {
    let mut stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let payment = stack.start_consumer(Consumer::Payment, "1").await;
    let analytics = stack.start_consumer(Consumer::Analytics, "1").await;

    let load = Load::start(
        stack.http.clone(),
        order_service.url("/orders"),
        Duration::from_millis(20),
    );
    load.wait_for_accepted(10).await;
    stack.broker.stop().await;
    let before = load.accepted();
    // Accepted with no broker at all: the order and its event wait in the outbox.
    load.wait_for_accepted(10).await;
    let while_down = load.accepted() - before;
    stack.broker.restart().await;
    load.wait_for_accepted(10).await;
    assert_eq!(
        load.refused(),
        0,
        "the order service kept answering 201 while the broker was down"
    );
    let accepted: Vec<String> = load
        .finish()
        .await
        .iter()
        .map(|order| order["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        while_down >= 10,
        "orders were placed while the broker was down: {while_down}"
    );

    let charged = eventually("every accepted order to be charged", PATIENCE, || async {
        let payments = stack.get_json(&payment, "/payments?limit=1000").await?;
        let ids: Vec<String> = payments
            .as_array()?
            .iter()
            .map(|p| p["order_id"].as_str().unwrap().to_owned())
            .collect();
        (ids.len() >= accepted.len()).then_some(ids)
    })
    .await;
    assert_eq!(
        charged.iter().collect::<HashSet<_>>(),
        accepted.iter().collect::<HashSet<_>>()
    );
    eventually("analytics to count every order once", PATIENCE, || async {
        let orders = stack.get_json(&analytics, "/stats").await?["orders"]["placed"].as_u64()?;
        assert!(
            orders <= accepted.len() as u64,
            "counted {orders} of {} orders",
            accepted.len()
        );
        (orders == accepted.len() as u64).then_some(())
    })
    .await;

    order_service.stop().await;
    payment.stop().await;
    analytics.stop().await;
    stack.finish().await;
}

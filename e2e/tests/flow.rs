//! The e-commerce flow end to end: orders placed over HTTP reach every consumer group
//! through a real broker, once each.

use std::time::Duration;

use e2e::{Consumer, Running, Service, Stack, eventually};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

fn order_of(items: &[(&str, i64)]) -> Value {
    json!({
        "customer_id": "cust-42",
        "customer_email": "ada@example.com",
        "items": items.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect::<Vec<_>>(),
    })
}

async fn len_of(stack: &Stack, service: &Running, path: &str) -> Option<usize> {
    stack
        .get_json(service, path)
        .await
        .and_then(|v| v.as_array().map(Vec::len))
}

async fn wait_for_count(stack: &Stack, service: &Running, path: &str, expected: usize) {
    let what = format!("{} to list {expected} at {path}", service.name);
    eventually(&what, PATIENCE, || async {
        let count = len_of(stack, service, path).await?;
        assert!(
            count <= expected,
            "{} lists {count} at {path}, more than the {expected} orders placed",
            service.name
        );
        (count == expected).then_some(())
    })
    .await;
}

async fn stock_of(stack: &Stack, inventory: &Running, sku: &str) -> i64 {
    let stock = stack
        .get_json(inventory, "/stock")
        .await
        .expect("GET /stock");
    stock
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sku"] == sku)
        .expect("sku is stocked")["available"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placing_an_order_reaches_every_consumer_group_exactly_once() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let inventory = stack
        .start_consumer(Consumer::Inventory, "inventory-1")
        .await;
    let payment = stack.start_consumer(Consumer::Payment, "payment-1").await;
    let email = stack.start_consumer(Consumer::Email, "email-1").await;
    let analytics = stack
        .start_consumer(Consumer::Analytics, "analytics-1")
        .await;

    let placed = stack
        .place_order(&order_service, &order_of(&[("KB-001", 2), ("CB-005", 3)]))
        .await;
    let id = placed["id"]
        .as_str()
        .expect("the order has an id")
        .to_owned();
    assert_eq!(
        placed["total_cents"],
        2 * 8_999 + 3 * 1_299,
        "priced from the catalog"
    );
    assert_eq!(
        stack
            .get_json(&order_service, format!("/orders/{id}"))
            .await,
        Some(placed.clone())
    );

    let reservation = eventually("inventory to reserve stock", PATIENCE, || {
        stack.get_json(&inventory, format!("/reservations/{id}"))
    })
    .await;
    assert_eq!(reservation["status"], "reserved");
    assert_eq!(stock_of(&stack, &inventory, "KB-001").await, 1_000 - 2);
    assert_eq!(stock_of(&stack, &inventory, "CB-005").await, 5_000 - 3);

    let charge = eventually("payment to charge", PATIENCE, || {
        stack.get_json(&payment, format!("/payments/{id}"))
    })
    .await;
    assert_eq!(charge["amount_cents"], placed["total_cents"]);

    let mail = eventually("email to send", PATIENCE, || {
        stack.get_json(&email, format!("/emails/{id}"))
    })
    .await;
    assert_eq!(mail["recipient"], "ada@example.com");
    let eml = std::fs::read_to_string(stack.mail_dir.path().join(format!("{id}.eml")))
        .expect("the .eml file");
    assert!(
        eml.contains("To: ada@example.com") && eml.contains("Total: 218.95 EUR"),
        "{eml}"
    );

    let stats = eventually("analytics to count the order", PATIENCE, || async {
        let stats = stack.get_json(&analytics, "/stats").await?;
        (stats["orders"] == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats["revenue"][0]["revenue_cents"], placed["total_cents"]);
    assert_eq!(stats["top_items"][0]["sku"], "CB-005");

    for service in [&inventory, &payment, &email, &analytics] {
        assert_eq!(
            stack.events_handled(service, "processed").await,
            1,
            "{} handled the event once",
            service.name
        );
    }

    for service in [order_service, inventory, payment, email, analytics] {
        service.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_the_stock_cannot_cover_is_recorded_as_rejected_and_stock_stays_whole() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let inventory = stack
        .start_consumer(Consumer::Inventory, "inventory-1")
        .await;

    // Three lamps in stock: the first order takes two, the second wants two more. Orders
    // travel on different partitions, so the test waits for the first before placing the second.
    let first = stack
        .place_order(&order_service, &order_of(&[("LT-006", 2)]))
        .await;
    let first = eventually("inventory to decide the first order", PATIENCE, || {
        stack.get_json(
            &inventory,
            format!("/reservations/{}", first["id"].as_str().unwrap()),
        )
    })
    .await;
    let second = stack
        .place_order(&order_service, &order_of(&[("LT-006", 2), ("KB-001", 1)]))
        .await;
    let rejected = eventually("inventory to decide the second order", PATIENCE, || {
        stack.get_json(
            &inventory,
            format!("/reservations/{}", second["id"].as_str().unwrap()),
        )
    })
    .await;

    assert_eq!(first["status"], "reserved");
    assert_eq!(rejected["status"], "rejected");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("LT-006: 2 wanted, 1 available"),
        "{rejected}"
    );
    assert_eq!(stock_of(&stack, &inventory, "LT-006").await, 1);
    assert_eq!(
        stock_of(&stack, &inventory, "KB-001").await,
        1_000,
        "a rejected order takes nothing"
    );

    order_service.stop().await;
    inventory.stop().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_of_one_service_split_the_partitions_and_together_process_every_event_once() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let first = stack
        .start_consumer(Consumer::Inventory, "inventory-1")
        .await;
    let second = stack
        .start_consumer(Consumer::Inventory, "inventory-2")
        .await;
    let payment = stack.start_consumer(Consumer::Payment, "payment-1").await;

    let partitions_of = |instance: &Running| {
        let stack = &stack;
        let url = instance.url("/assignment");
        async move {
            let snapshot: Value = stack.http.get(url).send().await.ok()?.json().await.ok()?;
            let partitions: Vec<i64> = snapshot["partitions"]
                .as_array()?
                .iter()
                .map(|p| p["partition"].as_i64().unwrap())
                .collect();
            Some(partitions)
        }
    };
    let (held_by_first, held_by_second) = eventually(
        "the two instances to share all six partitions",
        PATIENCE,
        || async {
            let (a, b) = (partitions_of(&first).await?, partitions_of(&second).await?);
            let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
            all.sort_unstable();
            (!a.is_empty() && !b.is_empty() && all == [0, 1, 2, 3, 4, 5]).then_some((a, b))
        },
    )
    .await;
    tracing::info!(
        ?held_by_first,
        ?held_by_second,
        "inventory-service partitions"
    );

    const ORDERS: usize = 30;
    for _ in 0..ORDERS {
        stack
            .place_order(&order_service, &order_of(&[("MS-002", 1)]))
            .await;
    }

    wait_for_count(&stack, &first, "/reservations", ORDERS).await;
    wait_for_count(&stack, &payment, "/payments", ORDERS).await;
    let by_first = stack.events_handled(&first, "processed").await;
    let by_second = stack.events_handled(&second, "processed").await;
    assert_eq!(
        by_first + by_second,
        ORDERS as u64,
        "every event handled by exactly one instance"
    );
    assert!(
        by_first > 0 && by_second > 0,
        "both instances did work: {by_first} + {by_second}"
    );
    assert_eq!(
        stack.events_handled(&payment, "processed").await,
        ORDERS as u64,
        "the other group saw every event"
    );
    assert_eq!(
        stock_of(&stack, &first, "MS-002").await,
        1_000 - ORDERS as i64
    );

    for service in [order_service, first, second, payment] {
        service.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_that_was_down_while_orders_were_placed_processes_all_of_them_when_it_comes_back()
 {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let email = stack.start_consumer(Consumer::Email, "email-1").await;
    stack
        .place_order(&order_service, &order_of(&[("HS-004", 1)]))
        .await;
    wait_for_count(&stack, &email, "/emails", 1).await;

    email.stop().await;
    for _ in 0..5 {
        stack
            .place_order(&order_service, &order_of(&[("HS-004", 1)]))
            .await;
    }
    let email = stack.start_consumer(Consumer::Email, "email-1").await;

    wait_for_count(&stack, &email, "/emails", 6).await;
    assert_eq!(
        stack.events_handled(&email, "processed").await,
        5,
        "it resumed after its committed offset"
    );

    order_service.stop().await;
    email.stop().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_consumer_group_started_later_replays_the_topic_from_the_beginning() {
    let stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let analytics = stack
        .start_consumer(Consumer::Analytics, "analytics-1")
        .await;
    for _ in 0..5 {
        stack
            .place_order(&order_service, &order_of(&[("MN-003", 1)]))
            .await;
    }
    let orders_counted_by = |service: &Running| {
        let stack = &stack;
        let url = service.url("/stats");
        async move {
            stack
                .http
                .get(url)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()?["orders"]
                .as_i64()
        }
    };
    eventually("the first group to count 5 orders", PATIENCE, || async {
        (orders_counted_by(&analytics).await? == 5).then_some(())
    })
    .await;

    let replay_database = stack
        .database
        .url(&format!("{}analytics_replay", stack.prefix));
    let replay = stack
        .start_consumer_with(Consumer::Analytics, "analytics-replay", |settings| {
            settings.kafka.group_id = "analytics-replay".to_owned();
            settings.database_url = replay_database;
        })
        .await;

    eventually(
        "the new group to count all 5 orders from history",
        PATIENCE,
        || async { (orders_counted_by(&replay).await? == 5).then_some(()) },
    )
    .await;

    for service in [order_service, analytics, replay] {
        service.stop().await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_while_the_broker_is_down_is_published_once_the_broker_returns() {
    let mut stack = Stack::start().await;
    let order_service = stack.start_order_service().await;
    let payment = stack.start_consumer(Consumer::Payment, "payment-1").await;
    stack
        .place_order(&order_service, &order_of(&[("KB-001", 1)]))
        .await;
    wait_for_count(&stack, &payment, "/payments", 1).await;

    stack.broker.stop().await;
    let placed = stack
        .place_order(&order_service, &order_of(&[("MS-002", 2)]))
        .await;
    let id = placed["id"].as_str().unwrap().to_owned();
    assert!(
        stack
            .get_json(&order_service, format!("/orders/{id}"))
            .await
            .is_some(),
        "the order is stored"
    );
    stack.broker.restart().await;

    let charge = eventually(
        "the order placed during the outage to be charged",
        PATIENCE,
        || stack.get_json(&payment, format!("/payments/{id}")),
    )
    .await;
    assert_eq!(charge["amount_cents"], placed["total_cents"]);
    wait_for_count(&stack, &payment, "/payments", 2).await;

    order_service.stop().await;
    payment.stop().await;
    stack.finish().await;
}

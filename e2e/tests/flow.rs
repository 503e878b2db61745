//! The e-commerce flow end to end: orders placed over HTTP reach every consumer group
//! through a real broker, once each, and each ends confirmed or cancelled in every service.

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

/// The Order Service and one instance of every consumer.
struct Shop {
    order: Running,
    inventory: Running,
    payment: Running,
    email: Running,
    analytics: Running,
}

impl Shop {
    async fn start(stack: &Stack) -> Shop {
        Shop {
            order: stack.start_order_service().await,
            inventory: stack
                .start_consumer(Consumer::Inventory, "inventory-1")
                .await,
            payment: stack.start_consumer(Consumer::Payment, "payment-1").await,
            email: stack.start_consumer(Consumer::Email, "email-1").await,
            analytics: stack
                .start_consumer(Consumer::Analytics, "analytics-1")
                .await,
        }
    }

    async fn stop(self) {
        for service in [
            self.order,
            self.inventory,
            self.payment,
            self.email,
            self.analytics,
        ] {
            service.stop().await;
        }
    }
}

/// Waits until the order is decided and its timeline holds `last`; returns the order.
async fn ends(stack: &Stack, shop: &Shop, id: &str, status: &str, last: &str) -> Value {
    let order = eventually(
        &format!("order {id} to end {status} with {last} in its timeline"),
        PATIENCE,
        || async {
            let order = stack.get_json(&shop.order, format!("/orders/{id}")).await?;
            let steps = order["timeline"].as_array()?;
            (order["status"] != "pending" && steps.iter().any(|s| s["event"] == last))
                .then_some(order)
        },
    )
    .await;
    assert_eq!(order["status"], status, "{order:#}");
    order
}

fn steps(order: &Value) -> Vec<&str> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["event"].as_str().unwrap())
        .collect()
}

/// The one mail file of `id`: its mail record and text.
async fn mail_of(stack: &Stack, shop: &Shop, id: &str) -> (Value, String) {
    let mail = eventually("email to send its one mail", PATIENCE, || {
        stack.get_json(&shop.email, format!("/emails/{id}"))
    })
    .await;
    let eml = std::fs::read_to_string(stack.mail_dir.path().join(format!("{id}.eml")))
        .expect("the .eml file");
    (mail, eml)
}

async fn stats_when(stack: &Stack, shop: &Shop, done: impl Fn(&Value) -> bool) -> Value {
    eventually("analytics to count the orders", PATIENCE, || async {
        let stats = stack.get_json(&shop.analytics, "/stats").await?;
        done(&stats).then_some(stats)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_in_stock_ends_confirmed_with_stock_taken_payment_captured_one_confirmation_and_counted()
 {
    let stack = Stack::start().await;
    let shop = Shop::start(&stack).await;

    let placed = stack
        .place_order(&shop.order, &order_of(&[("KB-001", 2), ("CB-005", 3)]))
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
    assert_eq!(placed["status"], "pending", "answered before the saga ends");

    let order = ends(&stack, &shop, &id, "confirmed", "payment_captured").await;
    let mut saga = steps(&order);
    saga[1..3].sort_unstable();
    assert_eq!(
        saga,
        [
            "order_placed",
            "payment_authorized",
            "stock_reserved",
            "order_confirmed",
            "payment_captured"
        ],
        "the two answers come in either order"
    );

    let reservation = stack
        .get_json(&shop.inventory, format!("/reservations/{id}"))
        .await
        .expect("a reservation");
    assert_eq!(reservation["status"], "reserved");
    assert_eq!(stock_of(&stack, &shop.inventory, "KB-001").await, 1_000 - 2);
    assert_eq!(stock_of(&stack, &shop.inventory, "CB-005").await, 5_000 - 3);
    let payment = stack
        .get_json(&shop.payment, format!("/payments/{id}"))
        .await
        .expect("a payment");
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_cents"], placed["total_cents"]);

    let (mail, eml) = mail_of(&stack, &shop, &id).await;
    assert_eq!(mail["recipient"], "ada@example.com");
    assert_eq!(mail["kind"], "confirmation");
    assert!(
        eml.contains("To: ada@example.com")
            && eml.contains("is confirmed")
            && eml.contains("Total: 218.95 EUR"),
        "{eml}"
    );

    let stats = stats_when(&stack, &shop, |s| s["orders"]["confirmed"] == 1).await;
    assert_eq!(stats["orders"]["placed"], 1);
    assert_eq!(stats["orders"]["cancelled"], 0);
    assert_eq!(stats["revenue"][0]["revenue_cents"], placed["total_cents"]);
    assert_eq!(stats["top_items"][0]["sku"], "CB-005");

    // order_placed and order_confirmed, once each (email and analytics claim both too).
    for service in [&shop.inventory, &shop.payment, &shop.email, &shop.analytics] {
        assert_eq!(
            stack.events_handled(service, "processed").await,
            2,
            "{} handled each event once",
            service.name
        );
    }
    shop.stop().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_the_stock_cannot_cover_is_cancelled_with_stock_unchanged_nothing_captured_and_one_cancellation_mail()
 {
    let stack = Stack::start().await;
    let shop = Shop::start(&stack).await;

    // Three lamps in stock: the first order takes two, the second wants two more. Orders
    // travel on different partitions, so the test waits for the first before placing the second.
    let first = stack
        .place_order(&shop.order, &order_of(&[("LT-006", 2)]))
        .await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    ends(&stack, &shop, &first_id, "confirmed", "payment_captured").await;
    let second = stack
        .place_order(&shop.order, &order_of(&[("LT-006", 2), ("KB-001", 1)]))
        .await;
    let id = second["id"].as_str().unwrap().to_owned();

    let order = ends(&stack, &shop, &id, "cancelled", "payment_voided").await;
    let reason = order["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("LT-006: 2 wanted, 1 available"),
        "{order:#}"
    );
    assert!(steps(&order).contains(&"stock_rejected"), "{order:#}");
    assert!(!steps(&order).contains(&"order_confirmed"), "{order:#}");

    assert_eq!(stock_of(&stack, &shop.inventory, "LT-006").await, 1);
    assert_eq!(
        stock_of(&stack, &shop.inventory, "KB-001").await,
        1_000,
        "a rejected order takes nothing"
    );
    let payment = stack
        .get_json(&shop.payment, format!("/payments/{id}"))
        .await
        .expect("a payment");
    assert_eq!(
        payment["status"], "voided",
        "authorized, then voided: nothing captured"
    );

    let (mail, eml) = mail_of(&stack, &shop, &id).await;
    assert_eq!(mail["kind"], "cancellation");
    assert!(
        eml.contains("is cancelled") && eml.contains("LT-006"),
        "{eml}"
    );
    let stats = stats_when(&stack, &shop, |s| s["orders"]["cancelled"] == 1).await;
    assert_eq!(stats["orders"]["confirmed"], 1);
    assert_eq!(
        stats["revenue"][0]["revenue_cents"], first["total_cents"],
        "revenue counts the confirmed order only"
    );

    shop.stop().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_payment_cancels_the_order_and_its_reserved_stock_comes_back() {
    let stack = Stack::start().await;
    let shop = Shop::start(&stack).await;

    // Five monitors: 1,245.00 EUR, over the sandbox card's 1,000.00 EUR limit.
    let placed = stack
        .place_order(&shop.order, &order_of(&[("MN-003", 5)]))
        .await;
    let id = placed["id"].as_str().unwrap().to_owned();

    let order = ends(&stack, &shop, &id, "cancelled", "order_cancelled").await;
    assert!(
        order["status_reason"]
            .as_str()
            .unwrap()
            .contains("card limit"),
        "{order:#}"
    );
    let payment = stack
        .get_json(&shop.payment, format!("/payments/{id}"))
        .await
        .expect("a payment");
    assert_eq!(payment["status"], "declined");

    // Inventory reserved the monitors (it reads order_placed before order_cancelled), and
    // gives them back once the order is cancelled.
    let order = ends(&stack, &shop, &id, "cancelled", "stock_released").await;
    assert!(steps(&order).contains(&"stock_reserved"), "{order:#}");
    assert!(!steps(&order).contains(&"order_confirmed"), "{order:#}");
    let reservation = stack
        .get_json(&shop.inventory, format!("/reservations/{id}"))
        .await
        .expect("a reservation");
    assert_eq!(reservation["status"], "released", "{reservation}");
    assert_eq!(stock_of(&stack, &shop.inventory, "MN-003").await, 500);

    let (mail, eml) = mail_of(&stack, &shop, &id).await;
    assert_eq!(mail["kind"], "cancellation");
    assert!(eml.contains("card limit"), "{eml}");
    let files = std::fs::read_dir(stack.mail_dir.path()).unwrap().count();
    assert_eq!(files, 1, "one mail, the cancellation");

    shop.stop().await;
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
    // Each order's order_placed and order_confirmed.
    let events = 2 * ORDERS as u64;
    let (by_first, by_second) = eventually(
        "the instances to handle every order's two events",
        PATIENCE,
        || async {
            let by_first = stack.events_handled(&first, "processed").await;
            let by_second = stack.events_handled(&second, "processed").await;
            (by_first + by_second >= events).then_some((by_first, by_second))
        },
    )
    .await;
    assert_eq!(
        by_first + by_second,
        events,
        "every event handled by exactly one instance"
    );
    assert!(
        by_first > 0 && by_second > 0,
        "both instances did work: {by_first} + {by_second}"
    );
    // The other group reads the same events at its own pace: wait for it, then count.
    let by_payment = eventually("payment to handle every event", PATIENCE, || async {
        let handled = stack.events_handled(&payment, "processed").await;
        (handled >= events).then_some(handled)
    })
    .await;
    assert_eq!(by_payment, events, "the other group saw every event, once");
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
    // The saga decides each order; email mails the decision.
    let inventory = stack
        .start_consumer(Consumer::Inventory, "inventory-1")
        .await;
    let payment = stack.start_consumer(Consumer::Payment, "payment-1").await;
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
        10,
        "it resumed after its committed offset: five orders, placed and confirmed"
    );

    for service in [order_service, inventory, payment, email] {
        service.stop().await;
    }
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
                .ok()?["orders"]["placed"]
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
            settings.database_url = shop_runtime::secret::Secret::new(replay_database);
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
        "the order placed during the outage to be authorized",
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

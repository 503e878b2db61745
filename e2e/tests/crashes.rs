//! The services as separate processes, killed and stopped under load: every accepted order
//! still ends confirmed or cancelled, every service agrees, every effect happens once, and
//! partitions move to the survivors quickly.
//!
//! These tests run the real binaries (`cargo build --workspace --bins` first; scripts/test.sh
//! does), configured through their environment with the production defaults.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use e2e::{Consumer, Load, Service, ServiceProcess, Stack, eventually};
use serde_json::Value;
use shop_runtime::kafka::dead_letters;
use shop_runtime::{catalog, topics};

const PATIENCE: Duration = Duration::from_secs(90);

/// These tests time partition hand-over, so they run alone: nextest gives each the whole
/// machine (.config/nextest.toml), and under `cargo test` this lock keeps them apart.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The list endpoints' page limit; the tests place fewer orders than this.
const MAX_ORDERS: usize = 500;

fn id_of(order: &Value) -> String {
    order["id"].as_str().expect("an order has an id").to_owned()
}

/// The order ids a list endpoint returns, each as many times as it appears.
async fn order_ids_at(stack: &Stack, service: &impl Service, path: &str) -> Option<Vec<String>> {
    let list = stack.get_json(service, path).await?;
    Some(
        list.as_array()?
            .iter()
            .map(|item| item["order_id"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// Waits until `path` lists exactly the `expected` orders, each once.
async fn lists_each_order_once(
    stack: &Stack,
    service: &impl Service,
    path: &str,
    expected: &HashSet<String>,
) {
    let ids = eventually(
        &format!("{} to list all {} orders", service.name(), expected.len()),
        PATIENCE,
        || async {
            let ids = order_ids_at(stack, service, path).await?;
            (ids.len() >= expected.len()).then_some(ids)
        },
    )
    .await;
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "{} lists an order twice",
        service.name()
    );
    assert_eq!(&unique, expected, "{} lists other orders", service.name());
}

/// Which orders ended how, as the Order Service decided them.
struct Decided<'a> {
    all: &'a HashSet<String>,
    confirmed: &'a HashSet<String>,
}

impl Decided<'_> {
    /// `Some` once a service's rows name every order exactly once, each in a state that
    /// agrees with its decision (`field` is one of `when_confirmed` or `when_cancelled`).
    /// Panics on an order listed twice: that is an effect applied twice, not one to wait for.
    fn agree(
        &self,
        rows: &[Value],
        field: &str,
        when_confirmed: &[&str],
        when_cancelled: &[&str],
    ) -> Option<()> {
        let ids: Vec<&str> = rows
            .iter()
            .map(|row| row["order_id"].as_str().unwrap())
            .collect();
        let unique: HashSet<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(
            ids.len(),
            unique.len(),
            "an order is listed twice: {rows:?}"
        );
        if &unique != self.all {
            return None;
        }
        rows.iter()
            .all(|row| {
                let id = row["order_id"].as_str().unwrap();
                let state = row[field].as_str().unwrap_or_default();
                if self.confirmed.contains(id) {
                    when_confirmed.contains(&state)
                } else {
                    when_cancelled.contains(&state)
                }
            })
            .then_some(())
    }
}

/// This test's broker and databases, with an Order Service process running.
async fn stack_with_order_service() -> (Stack, ServiceProcess) {
    let stack = Stack::start().await;
    let mut order_service = stack.order_service_process("1");
    order_service.start().await;
    (stack, order_service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_order_ends_confirmed_or_cancelled_in_every_service_once_while_each_service_is_killed_and_restarted()
 {
    let _alone = ALONE.lock().await;
    let (stack, mut order_service) = stack_with_order_service().await;
    let mut consumers: Vec<ServiceProcess> = Consumer::ALL
        .into_iter()
        .map(|consumer| stack.consumer_process(consumer, "1"))
        .collect();
    for consumer in &mut consumers {
        consumer.start().await;
    }
    let load = Load::start(
        stack.http.clone(),
        order_service.url("/orders"),
        Duration::from_millis(100),
    );
    load.wait_for_accepted(10).await;

    // kill -9 each consumer in turn while orders keep coming, then bring it back.
    for consumer in &mut consumers {
        consumer.kill().await;
        load.wait_for_accepted(10).await;
        consumer.start().await;
        load.wait_for_accepted(10).await;
    }
    // And the Order Service: customers are turned away, retry with their Idempotency-Key
    // and get in once it is back.
    order_service.kill().await;
    load.wait_for_refused(5).await;
    order_service.start().await;
    load.wait_for_accepted(10).await;
    let accepted = load.finish().await;
    assert!(accepted.len() < MAX_ORDERS, "keep the test within one page");
    tracing::info!(orders = accepted.len(), "load finished");

    let expected: HashSet<String> = accepted.iter().map(id_of).collect();
    assert_eq!(
        expected.len(),
        accepted.len(),
        "every 201 names a new order"
    );
    // Every order ends: nothing is left pending.
    let orders: Vec<Value> = eventually("every order to be decided", PATIENCE, || async {
        let orders = stack
            .get_json(&order_service, format!("/orders?limit={MAX_ORDERS}"))
            .await?;
        let orders = orders.as_array()?.clone();
        orders
            .iter()
            .all(|order| order["status"] != "pending")
            .then_some(orders)
    })
    .await;
    let stored: HashSet<String> = orders.iter().map(id_of).collect();
    assert_eq!(
        stored, expected,
        "the Order Service stored each accepted order once, and no other"
    );
    let confirmed: HashSet<String> = orders
        .iter()
        .filter(|order| order["status"] == "confirmed")
        .map(id_of)
        .collect();
    let cancelled = orders.len() - confirmed.len();
    tracing::info!(confirmed = confirmed.len(), cancelled, "orders decided");
    assert!(!confirmed.is_empty(), "most orders go through");
    assert!(
        cancelled > 0,
        "every seventh order is declined, so compensation ran under the kills too"
    );

    let (inventory, payment, email, analytics) =
        (&consumers[0], &consumers[1], &consumers[2], &consumers[3]);
    let page = format!("?limit={MAX_ORDERS}");

    // Each service agrees with each decision, once the compensations have run.
    let decided = Decided {
        all: &expected,
        confirmed: &confirmed,
    };
    let agreements = [
        (
            inventory,
            "/reservations",
            "status",
            &["reserved"][..],
            &["rejected", "released"][..],
        ),
        (
            payment,
            "/payments",
            "status",
            &["captured"],
            &["declined", "voided"],
        ),
        (
            email,
            "/emails",
            "kind",
            &["confirmation"],
            &["cancellation"],
        ),
    ];
    for (instance, path, field, when_confirmed, when_cancelled) in agreements {
        let path = format!("{path}?limit={MAX_ORDERS}");
        eventually(
            &format!("{} to agree with every decision", instance.name()),
            PATIENCE,
            || async {
                let rows = stack.get_json(instance, &path).await?;
                decided.agree(rows.as_array()?, field, when_confirmed, when_cancelled)
            },
        )
        .await;
    }

    // Stock went down once per confirmed order, by exactly what it ordered, and came back
    // for every cancelled one.
    let mut ordered: BTreeMap<String, i64> = BTreeMap::new();
    for order in accepted
        .iter()
        .filter(|order| confirmed.contains(&id_of(order)))
    {
        for item in order["items"].as_array().unwrap() {
            *ordered
                .entry(item["sku"].as_str().unwrap().to_owned())
                .or_default() += item["quantity"].as_i64().unwrap();
        }
    }
    let stock = stack
        .get_json(inventory, "/stock")
        .await
        .expect("GET /stock");
    for level in stock.as_array().unwrap() {
        let sku = level["sku"].as_str().unwrap();
        let product = catalog::PRODUCTS.iter().find(|p| p.sku == sku).unwrap();
        let initial = i64::from(product.initial_stock);
        assert_eq!(
            level["available"].as_i64().unwrap(),
            initial - ordered.get(sku).copied().unwrap_or(0),
            "stock of {sku}"
        );
    }

    // Captured exactly the confirmed orders' totals; one mail file per order; one count each.
    let captured: i64 = stack
        .get_json(payment, &format!("/payments{page}"))
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|payment| payment["status"] == "captured")
        .map(|payment| payment["amount_cents"].as_i64().unwrap())
        .sum();
    let total: i64 = accepted
        .iter()
        .filter(|order| confirmed.contains(&id_of(order)))
        .map(|order| order["total_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(
        captured, total,
        "captured exactly the confirmed orders' totals"
    );
    let mail_files = std::fs::read_dir(stack.mail_dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("eml".as_ref()))
        .count();
    assert_eq!(mail_files, accepted.len(), "one mail per order");
    let stats = eventually("analytics to count every decision", PATIENCE, || async {
        let stats = stack.get_json(analytics, "/stats").await?;
        let decided =
            stats["orders"]["confirmed"].as_u64()? + stats["orders"]["cancelled"].as_u64()?;
        (decided >= accepted.len() as u64).then_some(stats)
    })
    .await;
    assert_eq!(
        stats["orders"]["placed"],
        accepted.len(),
        "counted once each"
    );
    assert_eq!(stats["orders"]["confirmed"], confirmed.len());
    assert_eq!(stats["orders"]["cancelled"], cancelled);
    assert_eq!(stats["revenue"][0]["revenue_cents"], total);

    for topic in topics::ALL {
        let dead_letter_topic = topics::dead_letter_topic(topic);
        let parked = dead_letters::read_all(&stack.kafka(), &dead_letter_topic)
            .await
            .expect("the dead-letter topic is readable");
        assert!(
            parked.is_empty(),
            "nothing was parked on {dead_letter_topic}: {parked:?}"
        );
    }
    drop((order_service, consumers));
    stack.finish().await;
}

/// The partitions of `orders` an instance holds, from its `/assignment`.
async fn partitions_of(stack: &Stack, instance: &impl Service) -> Option<Vec<i64>> {
    let snapshot = stack.get_json(instance, "/assignment").await?;
    let mut partitions: Vec<i64> = snapshot["partitions"]
        .as_array()?
        .iter()
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    partitions.sort_unstable();
    Some(partitions)
}

const ALL_PARTITIONS: [i64; 6] = [0, 1, 2, 3, 4, 5];
/// How soon a killed instance's partitions must be processed again: a 6 s session timeout,
/// a heartbeat interval to notice, and a rebalance.
const RECOVERY: Duration = Duration::from_secs(10);

/// Starts two inventory instances and waits until they share the partitions.
async fn two_inventory_instances(stack: &Stack) -> (ServiceProcess, ServiceProcess) {
    let mut first = stack.consumer_process(Consumer::Inventory, "1");
    let mut second = stack.consumer_process(Consumer::Inventory, "2");
    first.start().await;
    second.start().await;
    eventually(
        "the two instances to share the partitions",
        PATIENCE,
        || async {
            let a = partitions_of(stack, &first).await?;
            let b = partitions_of(stack, &second).await?;
            let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
            all.sort_unstable();
            (!a.is_empty() && !b.is_empty() && all == ALL_PARTITIONS).then_some(())
        },
    )
    .await;
    (first, second)
}

/// Waits up to `within` for `survivor` to hold every partition; returns how long it took.
async fn takes_over_every_partition(
    stack: &Stack,
    survivor: &ServiceProcess,
    since: Instant,
    within: Duration,
) -> Duration {
    eventually(
        &format!("{} to hold every partition", survivor.name()),
        within.saturating_sub(since.elapsed()),
        || async { (partitions_of(stack, survivor).await? == ALL_PARTITIONS).then_some(()) },
    )
    .await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_stopped_with_sigterm_under_load_hands_over_its_partitions_at_once_and_nothing_is_processed_twice()
 {
    let _alone = ALONE.lock().await;
    let (stack, order_service) = stack_with_order_service().await;
    let (survivor, mut leaving) = two_inventory_instances(&stack).await;
    let load = Load::start(
        stack.http.clone(),
        order_service.url("/orders"),
        Duration::from_millis(50),
    );
    load.wait_for_accepted(20).await;

    let stopped_at = Instant::now();
    let status = leaving.terminate().await;
    assert!(status.success(), "SIGTERM is a clean exit, got {status}");
    // Well inside the 6 s session timeout: the instance left its group, nobody waited for it
    // to time out.
    let took =
        takes_over_every_partition(&stack, &survivor, stopped_at, Duration::from_secs(5)).await;
    tracing::info!(?took, "survivor holds every partition after SIGTERM");
    load.wait_for_accepted(20).await;
    let accepted = load.finish().await;

    let expected: HashSet<String> = accepted.iter().map(id_of).collect();
    lists_each_order_once(
        &stack,
        &survivor,
        &format!("/reservations?limit={MAX_ORDERS}"),
        &expected,
    )
    .await;
    assert_eq!(
        stack.events_handled(&survivor, "duplicate").await,
        0,
        "the survivor was handed no event the leaver had already handled"
    );
    drop((order_service, survivor, leaving));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instances_partitions_are_processed_by_the_survivor_within_ten_seconds() {
    let _alone = ALONE.lock().await;
    let (stack, order_service) = stack_with_order_service().await;
    let (survivor, mut killed) = two_inventory_instances(&stack).await;
    let orphaned = partitions_of(&stack, &killed).await.unwrap();

    let killed_at = Instant::now();
    killed.kill().await;
    // Orders keep coming, on every partition, the dead instance's included.
    let mut placed = HashSet::new();
    for _ in 0..24 {
        let order = stack
            .place_order(
                &order_service,
                &serde_json::json!({"customer_id": "c", "customer_email": "c@example.com",
                                    "items": [{"sku": "CB-005", "quantity": 1}]}),
            )
            .await;
        placed.insert(id_of(&order));
    }

    let took = takes_over_every_partition(&stack, &survivor, killed_at, RECOVERY).await;
    tracing::info!(
        ?took,
        ?orphaned,
        "survivor holds every partition after SIGKILL"
    );
    eventually(
        "the survivor to reserve every order placed since the kill",
        RECOVERY.saturating_sub(killed_at.elapsed()),
        || async {
            let ids: HashSet<String> = order_ids_at(&stack, &survivor, "/reservations?limit=100")
                .await?
                .into_iter()
                .collect();
            placed.is_subset(&ids).then_some(())
        },
    )
    .await;
    tracing::info!(took = ?killed_at.elapsed(), "every order placed since the kill is processed");
    drop((order_service, survivor, killed));
    stack.finish().await;
}

//! The dashboard shows what the stack does, live: every group with all the partitions of its
//! topics (fan-out), the group's instances sharing them (load-balancing), and the partitions
//! of a killed instance moving to the survivor. Checked through its API and in a real
//! headless Chromium (e2e/browser/dashboard-check.mjs), which leaves screenshots behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Consumer, Running, Service, Stack, eventually};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(90);

/// The group's view in the dashboard's current snapshot.
async fn group(stack: &Stack, dashboard: &Running, name: &str) -> Option<Value> {
    let state = stack.get_json(dashboard, "/api/state").await?;
    state["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"] == name)
        .cloned()
}

fn running_instances(group: &Value) -> Vec<String> {
    group["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == "running")
        .map(|i| i["instance_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The owner of each partition of `orders` in the group, in partition order.
fn owners(group: &Value) -> Vec<Option<String>> {
    group["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == "orders")
        .map(|p| p["owner"].as_str().map(str::to_owned))
        .collect()
}

/// Runs the browser check with `args`; panics with its output if it fails.
async fn browser_check(url: &str, screenshot: &Path, args: &[&str]) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("browser/dashboard-check.mjs");
    assert!(
        root.join("browser/node_modules/playwright-core").exists(),
        "the browser check's dependencies are missing: run scripts/install-browser.sh \
         (Chromium from Debian, then npm ci in e2e/browser)"
    );
    // Asynchronously: the services under test run on this very runtime.
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--url", url, "--screenshot"])
        .arg(screenshot)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|err| panic!("cannot run node (scripts/install-browser.sh): {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(summary).unwrap_or(Value::String(summary.to_owned()))
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("cannot create the screenshot directory");
    dir
}

#[tokio::test]
async fn the_dashboard_shows_fan_out_load_balancing_and_partitions_moving_off_a_killed_instance() {
    let stack = Stack::start().await;
    let order = stack.start_order_service().await;
    let mut inventory_a = stack.consumer_process(Consumer::Inventory, "a");
    let mut inventory_b = stack.consumer_process(Consumer::Inventory, "b");
    inventory_a.start().await;
    inventory_b.start().await;
    let payment = stack.start_consumer(Consumer::Payment, "pay-1").await;
    let email = stack.start_consumer(Consumer::Email, "email-1").await;
    let analytics = stack
        .start_consumer(Consumer::Analytics, "analytics-1")
        .await;
    let dashboard = stack.start_dashboard(&order).await;

    // Fan-out: every group holds all six partitions of `orders`; load-balancing: the two
    // inventory instances share them.
    let (a, b) = ("inventory-service-a", "inventory-service-b");
    eventually(
        "inventory's partitions shared by its two instances",
        PATIENCE,
        || async {
            let inventory = group(&stack, &dashboard, "inventory-service").await?;
            let owners = owners(&inventory);
            let shared = owners.len() == 6
                && owners
                    .iter()
                    .all(|o| o.as_deref() == Some(a) || o.as_deref() == Some(b))
                && owners.iter().any(|o| o.as_deref() == Some(a))
                && owners.iter().any(|o| o.as_deref() == Some(b));
            shared.then_some(())
        },
    )
    .await;
    for name in ["payment-service", "email-service", "analytics-service"] {
        eventually(
            &format!("{name} to hold all of orders"),
            PATIENCE,
            || async {
                let group = group(&stack, &dashboard, name).await?;
                let owners = owners(&group);
                (owners.len() == 6 && owners.iter().all(Option::is_some)).then_some(())
            },
        )
        .await;
    }

    let url = dashboard.url("/");
    let dir = screenshots();
    let live = dir.join("two-inventory-instances.png");
    let summary = browser_check(
        &url,
        &live,
        &["--expect", "inventory-service=2", "--place-order", "--load"],
    )
    .await;
    tracing::info!(%summary, screenshot = %live.display(), "browser check passed");

    // kill -9 one inventory instance: it falls silent, and once the group notices (the
    // session time-out), the survivor holds all six partitions.
    inventory_b.kill().await;
    eventually(
        "the killed instance to be gone and its partitions moved",
        PATIENCE,
        || async {
            let inventory = group(&stack, &dashboard, "inventory-service").await?;
            let gone = inventory["instances"]
                .as_array()?
                .iter()
                .any(|i| i["instance_id"] == b && i["status"] == "gone");
            let moved = owners(&inventory).iter().all(|o| o.as_deref() == Some(a));
            (gone && moved && running_instances(&inventory) == [a]).then_some(())
        },
    )
    .await;
    let after = dir.join("after-killing-one.png");
    browser_check(&url, &after, &["--expect", "inventory-service=1"]).await;
    tracing::info!(screenshot = %after.display(), "browser check after the kill passed");

    dashboard.stop().await;
    for service in [analytics, email, payment] {
        service.stop().await;
    }
    inventory_a.terminate().await;
    order.stop().await;
    stack.finish().await;
}

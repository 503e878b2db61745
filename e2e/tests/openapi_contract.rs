//! Every service's OpenAPI document, used the way a client generated from it would use it:
//! schemathesis generates requests from `/openapi.json` (valid ones, invalid ones, sequences
//! following the documented links) and checks that the server accepts every valid request,
//! refuses every invalid one with a 4xx, and answers only with what the document describes
//! (status, headers, content type, body). A document looser or stricter than its server fails
//! here, naming the request that shows it.
//!
//! schemathesis comes from PyPI (`scripts/install-schemathesis.sh`, cached); its hooks are in
//! `e2e/schemathesis/shop_hooks.py`. The seed is fixed so that CI runs the same cases each
//! time; run schemathesis by hand without `--seed` to explore further.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{Consumer, Service, Stack};

/// Cases per operation and phase: enough to cover every parameter's bounds, in seconds.
const EXAMPLES: &str = "25";
const SEED: &str = "2026";

fn schemathesis() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCHEMATHESIS_BIN") {
        return bin.into();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-schemathesis.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_document_states_what_its_service_accepts_and_every_answer_matches_it() {
    let schemathesis = schemathesis();
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let stack = Stack::start().await;
    let order = stack.start_order_service().await;
    let mut services = vec![stack.start_dashboard(&order).await];
    for consumer in [
        Consumer::Inventory,
        Consumer::Payment,
        Consumer::Email,
        Consumer::Analytics,
    ] {
        services.push(stack.start_consumer(consumer, "1").await);
    }
    services.insert(0, order);

    // schemathesis keeps a cache in its working directory: not in the repository.
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for service in &services {
        let document = service.url("/openapi.json");
        let run = tokio::process::Command::new(&schemathesis)
            .args(["run", &document, "--checks", "all", "--no-color"])
            .args(["--max-examples", EXAMPLES, "--seed", SEED])
            .env("SCHEMATHESIS_HOOKS", "shop_hooks")
            .env("PYTHONPATH", &hooks)
            .current_dir(scratch.path())
            .output()
            .await
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", schemathesis.display()));
        if !run.status.success() {
            failures.push(format!(
                "{}: {document}\n{}{}",
                service.name(),
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
        }
    }
    for service in services {
        service.stop().await;
    }
    stack.finish().await;
    assert!(
        failures.is_empty(),
        "documents that do not match their servers:\n\n{}",
        failures.join("\n\n")
    );
}

//! The shop on a secured cluster: every Kafka connection over TLS with SASL/SCRAM, a user per
//! service, PostgreSQL over TLS; and every way of getting that wrong ends start-up at once,
//! saying why.
//!
//! The broker is Tansu, started with `--authentication` and a certificate the test made. It
//! enforces TLS and authentication. It does **not** enforce ACLs (it accepts them and ignores
//! them), so these tests prove that each service connects as its own user, not what that
//! user may do: the grants are checked against the code in `compose.rs` and `k8s.rs`, and
//! only a real Kafka cluster enforces them.

use std::time::{Duration, Instant};

use e2e::secure::{Pki, postgres_tls_url};
use e2e::{Consumer, Service, Stack, eventually};
use serde_json::{Value, json};
use shop_runtime::access::{self, Principal};
use shop_runtime::config::KafkaSettings;

const PATIENCE: Duration = Duration::from_secs(60);
/// How soon a configuration that can never work must end start-up: well under the 30 s a
/// service waits for a broker that is merely not up yet.
const FAIL_FAST: Duration = Duration::from_secs(15);

fn order_of(sku: &str, quantity: i64) -> Value {
    json!({"customer_id": "cust-sec", "customer_email": "ada@example.com",
           "items": [{"sku": sku, "quantity": quantity}]})
}

async fn status_of(stack: &Stack, order: &impl Service, id: &str) -> Option<String> {
    let order = stack.get_json(order, format!("/orders/{id}")).await?;
    let status = order["status"].as_str()?.to_owned();
    (status != "pending").then_some(status)
}

/// Runs a tool or service binary to completion with `env` and `args`; its exit status and
/// everything it printed.
fn run_binary(binary: &str, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let output = std::process::Command::new(e2e::process::service_binary(binary))
        .env_clear()
        .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {binary}: {err}"));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// `shop-dlt`'s environment: the broker, and its own user.
fn dlt_env(stack: &Stack) -> Vec<(String, String)> {
    let secure = stack.secure.as_ref().expect("a secured stack");
    let mut env = secure
        .credentials
        .env(&access::SHOP_DLT, stack.log_dir.path());
    env.push((
        "KAFKA_BOOTSTRAP_SERVERS".into(),
        stack.broker.bootstrap_servers(),
    ));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_saga_runs_over_sasl_ssl_with_a_scram_user_per_service_and_postgres_over_tls() {
    let stack = Stack::start_secure().await;
    let order = stack.start_order_service().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "1").await;
    let payment = stack.start_consumer(Consumer::Payment, "1").await;
    let analytics = stack.start_consumer(Consumer::Analytics, "1").await;
    // Email's mail server is down at first: the decision it cannot mail is parked.
    let dead_smtp = format!("smtp://127.0.0.1:{}", e2e::broker::free_port());
    let broken_email = stack.start_email_via_smtp("1", &dead_smtp).await;

    let confirmed = stack.place_order(&order, &order_of("KB-001", 1)).await;
    let cancelled = stack.place_order(&order, &order_of("MN-003", 5)).await;
    let confirmed = confirmed["id"].as_str().unwrap().to_owned();
    let cancelled = cancelled["id"].as_str().unwrap().to_owned();
    for (id, expected) in [(&confirmed, "confirmed"), (&cancelled, "cancelled")] {
        let status = eventually(&format!("order {id} to be decided"), PATIENCE, || {
            status_of(&stack, &order, id)
        })
        .await;
        assert_eq!(status, expected, "order {id}");
    }
    // Fan-out over the secured cluster: every group saw both orders.
    eventually("analytics to count both orders", PATIENCE, || async {
        let stats = stack.get_json(&analytics, "/stats").await?;
        (stats["orders"]["confirmed"] == 1 && stats["orders"]["cancelled"] == 1).then_some(())
    })
    .await;
    eventually(
        "payment to capture one and decline the other",
        PATIENCE,
        || async {
            let a = stack
                .get_json(&payment, format!("/payments/{confirmed}"))
                .await?;
            let b = stack
                .get_json(&payment, format!("/payments/{cancelled}"))
                .await?;
            (a["status"] == "captured" && b["status"] == "declined").then_some(())
        },
    )
    .await;
    eventually(
        "inventory to release the cancelled order's stock",
        PATIENCE,
        || async {
            let r = stack
                .get_json(&inventory, format!("/reservations/{cancelled}"))
                .await?;
            (r["status"] == "released").then_some(())
        },
    )
    .await;

    // Both decisions are parked by email-service, and shop-dlt, as its own user, lists and
    // replays them once the mail server is "fixed".
    let parked = eventually("email-service to park both decisions", PATIENCE, || async {
        let (ok, listed) = run_binary(
            "shop-dlt",
            &["--topic", "orders.dlt", "list"],
            &dlt_env(&stack),
        );
        assert!(ok, "shop-dlt list failed:\n{listed}");
        (listed.matches("email-service").count() >= 2).then_some(listed)
    })
    .await;
    assert!(parked.contains("retries_exhausted"), "{parked}");
    broken_email.stop().await;
    let email = stack.start_consumer(Consumer::Email, "1").await;
    let (ok, replayed) = run_binary(
        "shop-dlt",
        &["replay", "--all", "--service", "email-service"],
        &dlt_env(&stack),
    );
    assert!(ok, "shop-dlt replay failed:\n{replayed}");
    // The replay is recorded: listed as replayed, and a second `replay --all` replays nothing.
    let (ok, listed) = run_binary(
        "shop-dlt",
        &["--topic", "orders.dlt", "list"],
        &dlt_env(&stack),
    );
    assert!(ok, "shop-dlt list failed:\n{listed}");
    assert!(
        listed.matches("replayed -> orders:").count() >= 2,
        "{listed}"
    );
    let (ok, again) = run_binary(
        "shop-dlt",
        &["replay", "--all", "--service", "email-service"],
        &dlt_env(&stack),
    );
    assert!(ok, "the second shop-dlt replay failed:\n{again}");
    assert!(again.contains("0 message(s) replayed"), "{again}");
    assert!(again.contains("replayed before and skipped"), "{again}");
    for id in [&confirmed, &cancelled] {
        eventually(
            &format!("the replayed decision of {id} to be mailed"),
            PATIENCE,
            || stack.get_json(&email, format!("/emails/{id}")),
        )
        .await;
    }

    // Every connection to PostgreSQL from this test's services is encrypted.
    let pool = sqlx::PgPool::connect(&stack.database.url("postgres"))
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname LIKE $1",
    )
    .bind(format!("{}%", stack.prefix))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(encrypted > 0, "no TLS connection from the services");
    assert_eq!(plain, 0, "a service connected to PostgreSQL without TLS");
    pool.close().await;

    // What each service published stays within its principal's grants.
    for (identity, principal) in [
        (order_service::IDENTITY, access::ORDER_SERVICE),
        (inventory_service::IDENTITY, access::INVENTORY_SERVICE),
        (payment_service::IDENTITY, access::PAYMENT_SERVICE),
    ] {
        let url = stack
            .database
            .url(&format!("{}{}", stack.prefix, identity.database));
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let published: Vec<String> = sqlx::query_scalar("SELECT DISTINCT topic FROM outbox")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert!(!published.is_empty(), "{} published nothing", identity.name);
        for topic in &published {
            assert!(
                principal.writes.contains(&topic.as_str()),
                "{} published to {topic}, which its principal may not write",
                identity.name
            );
        }
        pool.close().await;
    }

    for service in [order, inventory, payment, analytics, email] {
        service.stop().await;
    }
    stack.finish().await;
}

/// Builds the Inventory Service with `settings` and returns its start-up error and how long
/// it took to fail.
async fn failed_start(settings: shop_runtime::config::ServiceSettings) -> (String, Duration) {
    let started = Instant::now();
    let result = inventory_service::build(inventory_service::Settings::for_test(settings)).await;
    let error = match result {
        Ok(_) => panic!("the inventory service started with a broken configuration"),
        Err(err) => format!("{err:#}"),
    };
    (error, started.elapsed())
}

fn assert_fails_fast(what: &str, (error, took): &(String, Duration), cause: &str) {
    assert!(
        *took < FAIL_FAST,
        "{what}: start-up failed only after {took:?}, not within {FAIL_FAST:?}: {error}"
    );
    assert!(
        error.contains(cause),
        "{what}: the error does not say {cause:?}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_an_untrusted_ca_or_a_host_name_mismatch_ends_start_up_at_once_naming_the_cause()
 {
    let stack = Stack::start_secure().await;
    let secure = stack.secure.as_ref().unwrap();
    let base = || stack.settings(inventory_service::IDENTITY, "broken");

    let mut settings = base();
    settings.kafka.security = secure
        .credentials
        .security_as("inventory-service", "not-the-password");
    let failure = failed_start(settings).await;
    assert_fails_fast(
        "wrong password",
        &failure,
        "refused to authenticate user \"inventory-service\"",
    );
    assert!(!failure.0.contains("not-the-password"), "{}", failure.0);

    let stranger = Pki::new("stranger");
    let mut settings = base();
    let mut args = secure.credentials.args(
        "inventory-service",
        secure.credentials.password("inventory-service"),
    );
    args.kafka_ssl_ca_location = Some(stranger.ca.clone());
    settings.kafka.security =
        shop_runtime::kafka::security::KafkaSecurity::from_args(&args).unwrap();
    let failure = failed_start(settings).await;
    assert_fails_fast("untrusted CA", &failure, "TLS with the Kafka broker failed");

    // The certificate names localhost only.
    let mut settings = base();
    settings.kafka.bootstrap_servers = stack
        .broker
        .bootstrap_servers()
        .replace("localhost", "127.0.0.1");
    let failure = failed_start(settings).await;
    assert_fails_fast(
        "host name mismatch",
        &failure,
        "TLS with the Kafka broker failed",
    );

    // PostgreSQL: a root that did not sign its certificate, and a host it does not name.
    let database = stack.database.url(&format!("{}inventory", stack.prefix));
    let mut settings = base();
    settings.database_url =
        shop_runtime::secret::Secret::new(postgres_tls_url(&database, "localhost", &stranger.ca));
    let failure = failed_start(settings).await;
    assert_fails_fast("PostgreSQL CA", &failure, "cannot reach PostgreSQL");
    let mut settings = base();
    settings.database_url = shop_runtime::secret::Secret::new(postgres_tls_url(
        &database,
        "127.0.0.1",
        &secure.postgres_root,
    ));
    let failure = failed_start(settings).await;
    assert_fails_fast("PostgreSQL host name", &failure, "cannot reach PostgreSQL");

    stack.finish().await;
}

#[test]
fn an_unknown_sasl_mechanism_is_refused_before_anything_connects() {
    // Built (or found up to date) first, so the bound times the service, not Cargo.
    e2e::process::service_binary("inventory-service");
    let started = Instant::now();
    let env = vec![
        ("KAFKA_SECURITY_PROTOCOL".to_owned(), "SASL_SSL".to_owned()),
        ("KAFKA_SASL_MECHANISM".to_owned(), "SCRAM-SHA-1".to_owned()),
    ];
    let (ok, output) = run_binary("inventory-service", &[], &env);
    assert!(!ok, "started with an unknown mechanism:\n{output}");
    assert!(output.contains("SCRAM-SHA-1"), "{output}");
    assert!(
        output.contains("SCRAM-SHA-512"),
        "the error lists what is possible: {output}"
    );
    assert!(started.elapsed() < FAIL_FAST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_without_credentials_is_refused_by_the_broker() {
    let stack = Stack::start_secure().await;
    let secure = stack.secure.as_ref().unwrap();
    let quick = |security| KafkaSettings {
        startup_timeout: Duration::from_secs(5),
        security,
        ..stack.kafka()
    };
    // TLS with the right CA, but no SASL.
    let tls_only = shop_runtime::kafka::security::KafkaSecurityArgs {
        kafka_security_protocol: shop_runtime::kafka::security::SecurityProtocol::Ssl,
        kafka_ssl_ca_location: Some(secure.pki.ca.clone()),
        ..Default::default()
    };
    let tls_only = shop_runtime::kafka::security::KafkaSecurity::from_args(&tls_only).unwrap();
    for (what, security) in [
        ("TLS without credentials", tls_only),
        (
            "plaintext",
            shop_runtime::kafka::security::KafkaSecurity::plaintext(),
        ),
    ] {
        let refused =
            shop_runtime::kafka::EventProducer::connect(&quick(security), Duration::from_secs(5))
                .await;
        assert!(refused.is_err(), "a {what} client was let in");
    }
    // With credentials, the same client gets in.
    shop_runtime::kafka::check_connection(&quick(secure.credentials.security(&access::DASHBOARD)))
        .await
        .expect("a client with credentials is admitted");
    stack.finish().await;
}

/// What a GET of `url` answers, whatever its status.
async fn body_of(stack: &Stack, url: String) -> String {
    let response = stack.http.get(&url).send().await;
    let response = response.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    response.text().await.unwrap_or_default()
}

/// Every secret of a service's configuration, for looking for them where none may be.
fn assert_hidden(where_: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret appears in {where_}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_appears_in_logs_errors_metrics_pages_or_help() {
    let stack = Stack::start_secure().await;
    let secure = stack.secure.as_ref().unwrap();
    let database_password = format!("db-{}", uuid::Uuid::new_v4().simple());
    let passwords: Vec<&str> = [
        access::ORDER_SERVICE,
        access::INVENTORY_SERVICE,
        access::DASHBOARD,
    ]
    .iter()
    .map(|p: &Principal| secure.credentials.password(p.user))
    .chain([database_password.as_str()])
    .collect();

    // The services as processes, chatty, with a database password (trust auth ignores it).
    let mut order = stack
        .order_service_process("1")
        .with_env("RUST_LOG", "debug")
        .with_env("DATABASE_PASSWORD", &database_password);
    let mut inventory = stack
        .consumer_process(Consumer::Inventory, "1")
        .with_env("RUST_LOG", "debug")
        .with_env("DATABASE_PASSWORD", &database_password);
    order.start().await;
    inventory.start().await;
    let placed = stack.place_order(&order, &order_of("KB-001", 1)).await;
    let id = placed["id"].as_str().unwrap().to_owned();
    eventually("inventory to reserve the order", PATIENCE, || {
        stack.get_json(&inventory, format!("/reservations/{id}"))
    })
    .await;
    for service in [&order as &dyn Service, &inventory] {
        for path in [
            "/metrics",
            "/readyz",
            "/healthz",
            "/assignment",
            "/openapi.json",
            "/docs",
        ] {
            let body = body_of(&stack, service.url(path)).await;
            assert_hidden(&format!("{}{path}", service.name()), &body, &passwords);
        }
    }

    // The dashboard's page and what it shows.
    let dashboard = stack.start_dashboard(&order).await;
    for path in ["/", "/app.js", "/api/state", "/metrics"] {
        let body = body_of(&stack, dashboard.url(path)).await;
        assert_hidden(&format!("dashboard{path}"), &body, &passwords);
    }
    dashboard.stop().await;

    order.terminate().await;
    inventory.terminate().await;
    for entry in std::fs::read_dir(stack.log_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(!log.is_empty(), "{} is empty", path.display());
            assert_hidden(&path.display().to_string(), &log, &passwords);
        }
    }

    // --help shows every variable but never the value of a secret one.
    let mut env = secure
        .credentials
        .env(&access::INVENTORY_SERVICE, stack.log_dir.path());
    env.push(("KAFKA_SASL_PASSWORD".into(), passwords[1].to_owned()));
    env.push(("DATABASE_PASSWORD".into(), database_password.clone()));
    env.push((
        "DATABASE_URL".into(),
        format!("postgres://shop:{database_password}@localhost/x"),
    ));
    env.push((
        "SMTP_URL".into(),
        format!("smtps://u:{database_password}@mail"),
    ));
    env.push(("SMTP_PASSWORD".into(), database_password.clone()));
    for binary in [
        "order-service",
        "inventory-service",
        "payment-service",
        "email-service",
        "analytics-service",
        "dashboard",
        "shop-dlt",
        "shop-ceiling",
    ] {
        let (ok, help) = run_binary(binary, &["--help"], &env);
        assert!(ok, "{binary} --help failed:\n{help}");
        assert!(
            help.contains("KAFKA_SASL_PASSWORD"),
            "{binary} --help lists the variable"
        );
        assert_hidden(&format!("{binary} --help"), &help, &passwords);
    }

    // A service refused at start-up for a bad setting does not quote the secret either.
    let mut bad = env.clone();
    bad.retain(|(k, _)| k != "KAFKA_SASL_PASSWORD_FILE");
    bad.push(("KAFKA_SECURITY_PROTOCOL".into(), "SSL".into()));
    let (ok, refused) = run_binary("inventory-service", &[], &bad);
    assert!(
        !ok,
        "started with credentials on a protocol that sends none"
    );
    assert!(refused.contains("KAFKA_SECURITY_PROTOCOL"), "{refused}");
    assert_hidden("a refused start-up's error", &refused, &passwords);

    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_says_503_while_the_broker_shows_a_certificate_the_service_does_not_trust() {
    let mut stack = Stack::start_secure().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "1").await;
    let readyz = |http: reqwest::Client, url: String| async move {
        let response = http.get(url).send().await.ok()?;
        Some((
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ))
    };
    let url = inventory.url("/readyz");
    eventually("inventory to be ready", PATIENCE, || async {
        let (status, _) = readyz(stack.http.clone(), url.clone()).await?;
        (status == 200).then_some(())
    })
    .await;

    // The broker comes back with a certificate from a CA nobody here trusts.
    let stranger = Pki::new("stranger");
    let trusted = {
        let secure = stack.secure.as_ref().unwrap();
        (secure.pki.cert.clone(), secure.pki.key.clone())
    };
    stack.broker.stop().await;
    let e2e::Broker::Tansu(tansu) = &mut stack.broker else {
        unreachable!("a secured stack runs Tansu")
    };
    tansu.set_certificate(stranger.cert.clone(), stranger.key.clone());
    stack.broker.restart().await;
    let body = eventually("readyz to say 503", PATIENCE, || async {
        let (status, body) = readyz(stack.http.clone(), url.clone()).await?;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.to_lowercase().contains("kafka"), "{body}");

    // Trusted again: ready again.
    stack.broker.stop().await;
    let e2e::Broker::Tansu(tansu) = &mut stack.broker else {
        unreachable!("a secured stack runs Tansu")
    };
    tansu.set_certificate(trusted.0, trusted.1);
    stack.broker.restart().await;
    eventually("inventory to be ready again", PATIENCE, || async {
        let (status, _) = readyz(stack.http.clone(), url.clone()).await?;
        (status == 200).then_some(())
    })
    .await;
    inventory.stop().await;
    stack.finish().await;
}

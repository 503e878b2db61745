//! docker-compose.yml keeps the names DESIGN.md fixes: the five services built from the one
//! Dockerfile on their own ports and databases, a 3-broker KRaft cluster, and the topics.
//! Runs without Docker: it reads the file, resolving YAML anchors and merge keys itself.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile");
const POSTGRES_INIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/postgres-init.sql");

const BROKERS: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];

/// Each service with its HTTP port and its database (DESIGN.md, "Each service").
const SERVICES: [(&str, u16, &str); 5] = [
    ("order-service", 8080, "orders"),
    ("inventory-service", 8081, "inventory"),
    ("payment-service", 8082, "payments"),
    ("email-service", 8083, "email"),
    ("analytics-service", 8084, "analytics"),
];

fn compose() -> Value {
    let text = std::fs::read_to_string(COMPOSE_FILE)
        .unwrap_or_else(|e| panic!("reading {COMPOSE_FILE}: {e}"));
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    // Aliases are resolved by the parser; `<<` merge keys are not, until asked.
    doc.apply_merge()
        .expect("merge keys in docker-compose.yml resolve");
    doc
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("docker-compose.yml has a services mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A service's environment, from either the mapping or the `KEY=value` list form.
fn env(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment must be a mapping or a list, found {other:?}"),
    }
}

fn env_var(name: &str, service: &Value, key: &str) -> String {
    env(service)
        .remove(key)
        .unwrap_or_else(|| panic!("{name} does not set {key}"))
}

/// Published ports as (host, container), from the short (`[ip:]host:container[/proto]`) or long
/// syntax.
fn published_ports(service: &Value) -> Vec<(u16, u16)> {
    let Some(ports) = service.get("ports").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    ports
        .iter()
        .filter_map(|port| match port {
            Value::Mapping(long) => {
                let target = long.get("target").map(scalar)?.parse().ok()?;
                let published = long.get("published").map(scalar)?.parse().ok()?;
                Some((published, target))
            }
            short => {
                let short = scalar(short);
                let short = short.split('/').next().unwrap_or_default();
                let mut parts = short.rsplit(':');
                let container = parts.next()?.parse().ok()?;
                let host = parts.next()?.parse().ok()?;
                Some((host, container))
            }
        })
        .collect()
}

fn depends_on_condition(service: &Value, dependency: &str) -> Option<String> {
    match service.get("depends_on")? {
        Value::Mapping(map) => map.get(dependency)?.get("condition").map(scalar),
        // The list form only waits for the container to start.
        Value::Sequence(list) => list
            .iter()
            .any(|d| scalar(d) == dependency)
            .then(|| "service_started".to_owned()),
        _ => None,
    }
}

/// A command in either form (string or list) as whitespace-separated words, without quotes
/// or the `;` that ends a shell statement.
fn words(command: Option<&Value>) -> Vec<String> {
    let text = match command {
        Some(Value::Sequence(parts)) => parts.iter().map(scalar).collect::<Vec<_>>().join(" "),
        Some(other) => scalar(other),
        None => String::new(),
    };
    text.split_whitespace()
        .map(|w| w.trim_matches(|c| matches!(c, '"' | '\'' | ';')).to_owned())
        .collect()
}

/// What a container runs: its `entrypoint` then its `command`, as words.
fn command_words(service: &Value) -> Vec<String> {
    let mut all = words(service.get("entrypoint"));
    all.extend(words(service.get("command")));
    all
}

fn healthcheck_words(service: &Value) -> Vec<String> {
    words(service.get("healthcheck").and_then(|h| h.get("test")))
}

fn followed_by(words: &[String], flag: &str, value: &str) -> bool {
    words.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn every_service_is_built_from_the_one_dockerfile_with_its_name_as_the_service_arg() {
    let doc = compose();
    for (name, _, _) in SERVICES {
        let build = service(&doc, name)
            .get("build")
            .unwrap_or_else(|| panic!("{name} is not built from source"));
        let context = build.get("context").map(scalar);
        assert_eq!(
            context.as_deref(),
            Some("."),
            "{name} builds from the repository root"
        );
        let dockerfile = build
            .get("dockerfile")
            .map(scalar)
            .unwrap_or_else(|| "Dockerfile".into());
        assert_eq!(dockerfile, "Dockerfile", "{name} uses the one Dockerfile");
        let arg = build.get("args").and_then(|args| match args {
            Value::Mapping(map) => map.get("SERVICE").map(scalar),
            Value::Sequence(list) => list
                .iter()
                .map(scalar)
                .find_map(|kv| kv.strip_prefix("SERVICE=").map(str::to_owned)),
            _ => None,
        });
        assert_eq!(arg.as_deref(), Some(name), "{name} passes SERVICE={name}");
        assert!(
            service(&doc, name).get("image").is_none(),
            "{name} is built, not pulled"
        );
    }
}

#[test]
fn the_dockerfile_builds_and_runs_the_binary_named_by_the_service_arg() {
    let dockerfile = std::fs::read_to_string(DOCKERFILE).expect("reading the Dockerfile");
    assert!(
        dockerfile.contains("ARG SERVICE"),
        "the Dockerfile declares ARG SERVICE"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked -p \"${SERVICE}\""),
        "the Dockerfile builds the package named by SERVICE"
    );
    assert!(
        dockerfile.contains("ENTRYPOINT"),
        "the image runs the service binary"
    );
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_so_run_as_non_root_can_check_it() {
    let dockerfile = std::fs::read_to_string(DOCKERFILE).expect("reading the Dockerfile");
    let user = dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets USER");
    let (uid, gid) = user.trim().split_once(':').unwrap_or((user.trim(), ""));
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {user}: the uid must be a number"));
    assert!(uid != 0, "USER {user}: not root");
    assert!(
        gid.is_empty() || gid.parse::<u32>().is_ok_and(|gid| gid != 0),
        "USER {user}: a numeric, non-root group"
    );
}

#[test]
fn every_broker_caps_its_heap_and_so_does_kafka_ui() {
    let doc = compose();
    for broker in ["kafka-1", "kafka-2", "kafka-3"] {
        let heap = env_var(broker, service(&doc, broker), "KAFKA_HEAP_OPTS");
        assert!(heap.contains("-Xmx"), "{broker} caps its heap: {heap}");
    }
    let ui = env_var("kafka-ui", service(&doc, "kafka-ui"), "JAVA_OPTS");
    assert!(ui.contains("-Xmx"), "kafka-ui caps its heap: {ui}");
}

#[test]
fn every_service_publishes_its_design_port_and_sets_http_addr_to_it() {
    let doc = compose();
    for (name, port, _) in SERVICES {
        let svc = service(&doc, name);
        assert!(
            published_ports(svc).contains(&(port, port)),
            "{name} publishes {port}:{port}, found {:?}",
            published_ports(svc)
        );
        assert_eq!(env_var(name, svc, "HTTP_ADDR"), format!("0.0.0.0:{port}"));
    }
}

#[test]
fn every_service_reaches_all_three_brokers_and_its_own_database() {
    let doc = compose();
    for (name, _, database) in SERVICES {
        let svc = service(&doc, name);
        let bootstrap = env_var(name, svc, "KAFKA_BOOTSTRAP_SERVERS");
        let listed: Vec<&str> = bootstrap.split(',').map(str::trim).collect();
        for broker in BROKERS {
            assert!(
                listed.contains(&format!("{broker}:9092").as_str()),
                "{name} bootstraps from {broker}:9092, found {bootstrap}"
            );
        }

        let url = env_var(name, svc, "DATABASE_URL");
        assert!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "{url}"
        );
        let (authority, path) = url
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{name}: no database in {url}"));
        assert!(
            authority.ends_with("@postgres:5432"),
            "{name} talks to the postgres service: {url}"
        );
        let db = path.split('?').next().unwrap_or_default();
        assert_eq!(db, database, "{name} uses its own database");

        assert_eq!(
            env_var(name, svc, "KAFKA_TOPIC_REPLICATION_FACTOR"),
            "3",
            "{name}"
        );
        assert_eq!(
            env_var(name, svc, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS"),
            "2",
            "{name}"
        );
        assert_eq!(env_var(name, svc, "LOG_FORMAT"), "json", "{name}");
    }
}

#[test]
fn every_service_reports_readiness_and_restarts_unless_stopped() {
    let doc = compose();
    for (name, port, _) in SERVICES {
        let svc = service(&doc, name);
        let test = healthcheck_words(svc);
        assert!(
            test.contains(&format!("http://localhost:{port}/readyz")),
            "{name}'s healthcheck calls /readyz on {port}, found {test:?}"
        );
        assert_eq!(
            svc.get("restart").map(scalar).as_deref(),
            Some("unless-stopped"),
            "{name}"
        );
    }
}

#[test]
fn the_email_service_sends_through_mailpit() {
    let doc = compose();
    let email = service(&doc, "email-service");
    assert_eq!(
        env_var("email-service", email, "SMTP_URL"),
        "smtp://mailpit:1025"
    );
    assert!(!env_var("email-service", email, "MAIL_FROM").is_empty());
    assert!(
        services(&doc).contains_key("mailpit"),
        "an SMTP catcher named mailpit exists"
    );
}

#[test]
fn the_kafka_cluster_is_three_kraft_brokers_without_zookeeper() {
    let doc = compose();
    let with_roles: Vec<String> = services(&doc)
        .iter()
        .filter(|(_, svc)| env(svc).contains_key("KAFKA_PROCESS_ROLES"))
        .map(|(name, _)| scalar(name))
        .collect();
    assert_eq!(with_roles, BROKERS, "exactly the three brokers run Kafka");

    for (name, svc) in services(&doc) {
        let name = scalar(name);
        let image = svc.get("image").map(scalar).unwrap_or_default();
        assert!(
            !name.contains("zookeeper") && !image.contains("zookeeper"),
            "no ZooKeeper: found service {name} ({image})"
        );
    }

    let mut node_ids = Vec::new();
    let mut cluster_ids = Vec::new();
    for broker in BROKERS {
        let svc = service(&doc, broker);
        let image = svc.get("image").map(scalar).unwrap_or_default();
        assert!(
            image.starts_with("apache/kafka:4."),
            "{broker} runs apache/kafka 4.x: {image}"
        );
        let env = env(svc);
        let roles = &env["KAFKA_PROCESS_ROLES"];
        assert!(
            roles.contains("controller") && roles.contains("broker"),
            "{broker}: {roles}"
        );
        assert!(
            !env.contains_key("KAFKA_ZOOKEEPER_CONNECT"),
            "{broker} uses no ZooKeeper"
        );
        let voters = env
            .get("KAFKA_CONTROLLER_QUORUM_VOTERS")
            .cloned()
            .unwrap_or_default();
        for (id, voter) in BROKERS.iter().enumerate() {
            assert!(
                voters.contains(&format!("{}@{voter}:9093", id + 1)),
                "{broker}: {voters}"
            );
        }
        let advertised = env
            .get("KAFKA_ADVERTISED_LISTENERS")
            .cloned()
            .unwrap_or_default();
        assert!(
            advertised.contains(&format!("://{broker}:9092")),
            "{broker}: {advertised}"
        );
        node_ids.push(env.get("KAFKA_NODE_ID").cloned().unwrap_or_default());
        cluster_ids.push(env.get("CLUSTER_ID").cloned().unwrap_or_default());
    }
    assert_eq!(node_ids, ["1", "2", "3"], "each broker has its own node id");
    assert!(
        !cluster_ids[0].is_empty(),
        "the brokers are formatted with a CLUSTER_ID"
    );
    assert!(
        cluster_ids.iter().all(|id| *id == cluster_ids[0]),
        "one CLUSTER_ID: {cluster_ids:?}"
    );
}

#[test]
fn the_kafka_cluster_keeps_three_replicas_and_needs_two_in_sync() {
    let doc = compose();
    for broker in BROKERS {
        let env = env(service(&doc, broker));
        let get = |key: &str| env.get(key).cloned().unwrap_or_default();
        assert_eq!(get("KAFKA_DEFAULT_REPLICATION_FACTOR"), "3", "{broker}");
        assert_eq!(get("KAFKA_MIN_INSYNC_REPLICAS"), "2", "{broker}");
        assert_eq!(
            get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"),
            "3",
            "{broker}"
        );
        assert_eq!(get("KAFKA_AUTO_CREATE_TOPICS_ENABLE"), "false", "{broker}");
    }
}

#[test]
fn kafka_init_creates_every_topic_and_its_dead_letter_topic_with_six_partitions() {
    let doc = compose();
    let init = service(&doc, "kafka-init");
    let words = command_words(init);
    let expected = shared_events::topics::ALL
        .iter()
        .flat_map(|t| [(*t).to_owned(), shared_events::topics::dead_letter_topic(t)]);
    for topic in expected {
        assert!(
            words.contains(&topic),
            "kafka-init creates {topic}: {words:?}"
        );
    }
    assert!(
        words.iter().any(|w| w.ends_with("kafka-topics.sh")),
        "kafka-init uses kafka-topics.sh"
    );
    assert!(
        words.iter().any(|w| w == "--create"),
        "kafka-init creates topics"
    );
    assert!(
        words.iter().any(|w| w == "--if-not-exists"),
        "kafka-init can run again"
    );
    assert!(
        followed_by(&words, "--partitions", "6"),
        "6 partitions: {words:?}"
    );
    assert!(
        followed_by(&words, "--replication-factor", "3"),
        "3 replicas: {words:?}"
    );
    assert!(
        followed_by(&words, "--config", "min.insync.replicas=2"),
        "min ISR 2: {words:?}"
    );
    for broker in BROKERS {
        assert_eq!(
            depends_on_condition(init, broker).as_deref(),
            Some("service_healthy"),
            "kafka-init waits for {broker}"
        );
    }
}

#[test]
fn services_start_after_kafka_init_completes_and_postgres_is_healthy() {
    let doc = compose();
    for (name, _, _) in SERVICES {
        let svc = service(&doc, name);
        assert_eq!(
            depends_on_condition(svc, "kafka-init").as_deref(),
            Some("service_completed_successfully"),
            "{name} waits for the topics"
        );
        assert_eq!(
            depends_on_condition(svc, "postgres").as_deref(),
            Some("service_healthy"),
            "{name} waits for PostgreSQL"
        );
        for broker in BROKERS {
            assert_eq!(
                depends_on_condition(svc, broker).as_deref(),
                Some("service_healthy"),
                "{name} waits for {broker}"
            );
        }
    }
    let postgres = service(&doc, "postgres");
    let check = healthcheck_words(postgres);
    assert!(
        check.iter().any(|w| w == "pg_isready"),
        "postgres is healthy once pg_isready says so"
    );
}

#[test]
fn postgres_init_creates_one_database_per_service() {
    let sql = std::fs::read_to_string(POSTGRES_INIT).expect("reading docker/postgres-init.sql");
    let sql = sql.to_lowercase();
    for (name, _, database) in SERVICES {
        assert!(
            sql.contains(&format!("create database {database};")),
            "{name}: {database}"
        );
    }
    let doc = compose();
    let postgres = service(&doc, "postgres");
    let mounted = postgres
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(scalar)
        .any(|v| v.starts_with("./docker/postgres-init.sql:/docker-entrypoint-initdb.d/"));
    assert!(
        mounted,
        "postgres runs docker/postgres-init.sql on first start"
    );
}

//! docker-compose.yml keeps the names DESIGN.md fixes: the five services built from the one
//! Dockerfile on their own ports and databases, a 3-broker KRaft cluster, and the topics; the
//! consumers can be scaled, and every service is traced (Jaeger), scraped (Prometheus) and
//! charted (Grafana). The cluster enforces least privilege: every listener asks for a
//! password, each service logs in as its own user, kafka-init grants exactly what
//! `shop_runtime::access` declares, and the passwords come from `.env`, never from the
//! compose file. Runs without Docker: it reads the files (docker-compose.yml, `.env`, the
//! scripts under docker/kafka/), resolving YAML anchors and merge keys itself.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile");
const POSTGRES_INIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/postgres-init.sql");
const PROMETHEUS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docker/prometheus/prometheus.yml"
);
const GRAFANA_DATASOURCES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docker/grafana/provisioning/datasources/prometheus.yml"
);
const GRAFANA_DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docker/grafana/dashboards/shop.json"
);
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.env");
const DOCKERIGNORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.dockerignore");
const BROKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/kafka/broker.sh");
const KAFKA_INIT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/kafka/init.sh");

const BROKERS: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];

/// Each service with its HTTP port and its database (DESIGN.md, "Each service").
const SERVICES: [(&str, u16, &str); 5] = [
    ("order-service", 8080, "orders"),
    ("inventory-service", 8081, "inventory"),
    ("payment-service", 8082, "payments"),
    ("email-service", 8083, "email"),
    ("analytics-service", 8084, "analytics"),
];

/// The services that consume `orders`: any number of replicas may share their group.
const CONSUMERS: [&str; 4] = [
    "inventory-service",
    "payment-service",
    "email-service",
    "analytics-service",
];

/// The live view: built like the services, with no database.
const DASHBOARD: (&str, u16) = ("dashboard", 8088);

/// Every HTTP server built from the Dockerfile, with its port: the services and the dashboard.
fn http_servers() -> Vec<(&'static str, u16)> {
    SERVICES
        .iter()
        .map(|(name, port, _)| (*name, *port))
        .chain([DASHBOARD])
        .collect()
}

/// Where each service's traces go: Jaeger's OTLP/HTTP receiver.
const OTLP_ENDPOINT: &str = "http://jaeger:4318";

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

/// A port published on the host: the address it binds (empty for every address), the host
/// port, the container port.
#[derive(Debug, PartialEq)]
struct Published {
    host_ip: String,
    host: u16,
    container: u16,
}

/// Published ports, from the short (`[ip:]host:container[/proto]`) or long syntax. A port that
/// does not parse fails the test rather than disappearing from the list.
fn published(name: &str, service: &Value) -> Vec<Published> {
    let Some(ports) = service.get("ports") else {
        return Vec::new();
    };
    let ports = ports
        .as_sequence()
        .unwrap_or_else(|| panic!("{name}: ports must be a list"));
    let number = |text: &str| -> u16 {
        text.parse()
            .unwrap_or_else(|_| panic!("{name}: `{text}` is not a single port number"))
    };
    ports
        .iter()
        .map(|port| match port {
            Value::Mapping(long) => Published {
                host_ip: long.get("host_ip").map(scalar).unwrap_or_default(),
                host: number(&long.get("published").map(scalar).unwrap_or_default()),
                container: number(&long.get("target").map(scalar).unwrap_or_default()),
            },
            short => {
                let short = scalar(short);
                let short = short.split('/').next().unwrap_or_default();
                let mut parts: Vec<&str> = short.rsplitn(3, ':').collect();
                parts.reverse();
                match parts.as_slice() {
                    [ip, host, container] => Published {
                        host_ip: (*ip).to_owned(),
                        host: number(host),
                        container: number(container),
                    },
                    [host, container] => Published {
                        host_ip: String::new(),
                        host: number(host),
                        container: number(container),
                    },
                    _ => panic!("{name}: port `{short}` publishes no host port"),
                }
            }
        })
        .collect()
}

/// `mem_limit` in bytes (`512m`, `1g`, `268435456`).
fn mem_limit_bytes(name: &str, service: &Value) -> u64 {
    let limit = service
        .get("mem_limit")
        .map(scalar)
        .unwrap_or_else(|| panic!("{name} sets no mem_limit"));
    let lower = limit.to_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let number: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("{name}: mem_limit `{limit}` is not a size"));
    let scale = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => panic!("{name}: mem_limit `{limit}` has an unknown unit"),
    };
    number * scale
}

/// `build.args.SERVICE`, from the mapping or the `KEY=value` list form.
fn service_arg(service: &Value) -> Option<String> {
    service
        .get("build")?
        .get("args")
        .and_then(|args| match args {
            Value::Mapping(map) => map.get("SERVICE").map(scalar),
            Value::Sequence(list) => list
                .iter()
                .map(scalar)
                .find_map(|kv| kv.strip_prefix("SERVICE=").map(str::to_owned)),
            _ => None,
        })
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(scalar)
        .collect()
}

fn prometheus_config() -> Value {
    let text = std::fs::read_to_string(PROMETHEUS_CONFIG)
        .unwrap_or_else(|e| panic!("reading {PROMETHEUS_CONFIG}: {e}"));
    serde_yaml::from_str(&text).expect("docker/prometheus/prometheus.yml is valid YAML")
}

/// Every PromQL expression of the Grafana dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(GRAFANA_DASHBOARD)
        .unwrap_or_else(|e| panic!("reading {GRAFANA_DASHBOARD}: {e}"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("the Grafana dashboard is valid JSON");
    let panels = dashboard["panels"]
        .as_array()
        .expect("the dashboard has a list of panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel `{title}` has no queries"));
        assert!(!targets.is_empty(), "panel `{title}` has no queries");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a query of panel `{title}` has no expr"));
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    queries
}

/// The `name = "…"` of a Cargo.toml's `[package]`, and the names of its `[[bin]]` targets.
fn package_and_bins(manifest: &str) -> (String, Vec<String>) {
    let mut section = String::new();
    let mut package = String::new();
    let mut bins = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some(value) = line
            .strip_prefix("name")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match section.as_str() {
            "[package]" => package = value,
            "[[bin]]" => bins.push(value),
            _ => {}
        }
    }
    (package, bins)
}

/// The workspace's member directories, from the root Cargo.toml's `members = [...]`.
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(format!("{WORKSPACE}/Cargo.toml"))
        .expect("reading the workspace Cargo.toml");
    let start = manifest
        .find("members = [")
        .expect("the workspace lists its members");
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("the members list is closed")];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
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

/// What a container runs, as words: its `entrypoint` and `command`, followed by the words of
/// the script they run when that script is mounted from the repository (`./docker/kafka:/shop`
/// puts docker/kafka/init.sh at /shop/init.sh).
fn words_of_what_runs(name: &str, service: &Value) -> Vec<String> {
    let mut all = command_words(service);
    let mounts: Vec<(String, String)> = strings(service.get("volumes"))
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            let source = parts.next()?;
            let target = parts.next()?;
            source
                .starts_with("./")
                .then(|| (target.to_owned(), format!("{WORKSPACE}/{}", &source[2..])))
        })
        .collect();
    let scripts: Vec<String> = all
        .iter()
        .filter_map(|word| {
            mounts.iter().find_map(|(target, source)| {
                word.strip_prefix(&format!("{target}/"))
                    .map(|rest| format!("{source}/{rest}"))
            })
        })
        .collect();
    for script in scripts {
        let text = std::fs::read_to_string(&script)
            .unwrap_or_else(|e| panic!("{name} runs {script}, which cannot be read: {e}"));
        all.extend(words(Some(&Value::String(text))));
    }
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
    for (name, _) in http_servers() {
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
        let arg = service_arg(service(&doc, name));
        assert_eq!(arg.as_deref(), Some(name), "{name} passes SERVICE={name}");
        assert!(
            build.get("target").is_none_or(|t| scalar(t) == "runtime"),
            "{name} is built as the service image (the runtime stage)"
        );
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
        dockerfile.contains("for package in ${SERVICE}; do set -- \"$@\" -p \"${package}\"; done")
            && dockerfile.contains("cargo build --release --locked \"$@\""),
        "the Dockerfile builds the package (or packages) named by SERVICE"
    );
    assert!(
        dockerfile.contains("FROM runtime-base AS tools")
            && dockerfile.contains("COPY --from=builder /out/ /usr/local/bin/"),
        "the tools stage puts every binary it built on the PATH"
    );
    let last_stage = dockerfile
        .lines()
        .rfind(|line| line.starts_with("FROM "))
        .expect("the Dockerfile has stages");
    assert!(
        last_stage.ends_with(" AS runtime"),
        "a plain `docker build` makes a service image: the last stage is runtime, not {last_stage}"
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
fn every_service_listens_on_its_design_port() {
    let doc = compose();
    for (name, port) in http_servers() {
        let svc = service(&doc, name);
        assert_eq!(env_var(name, svc, "HTTP_ADDR"), format!("0.0.0.0:{port}"));
    }
}

#[test]
fn only_the_order_service_api_and_the_dashboard_publish_a_service_port() {
    let doc = compose();
    for (name, port) in [("order-service", 8080), DASHBOARD] {
        assert_eq!(
            published(name, service(&doc, name)),
            [Published {
                host_ip: "127.0.0.1".into(),
                host: port,
                container: port
            }],
            "{name} publishes 127.0.0.1:{port}:{port} and nothing else"
        );
    }
}

#[test]
fn the_consumers_can_be_scaled_because_they_publish_no_host_port_and_have_no_fixed_name() {
    let doc = compose();
    for name in CONSUMERS {
        let svc = service(&doc, name);
        // A fixed host port is taken by the first replica: the second fails to start with
        // "port is already allocated".
        assert!(
            published(name, svc).is_empty(),
            "{name} publishes no host port, found {:?}",
            published(name, svc)
        );
        assert!(
            svc.get("container_name").is_none(),
            "{name} has no container_name: replicas are named <project>-{name}-<n>"
        );
        assert!(
            svc.get("hostname").is_none(),
            "{name} has no fixed hostname: INSTANCE_ID defaults to the container's own"
        );
        assert!(
            svc.get("profiles").is_none(),
            "{name} starts with a plain `docker compose up`"
        );
    }
}

#[test]
fn every_published_port_listens_on_loopback_only() {
    let doc = compose();
    for (name, svc) in services(&doc) {
        let name = scalar(name);
        for port in published(&name, svc) {
            assert_eq!(
                port.host_ip, "127.0.0.1",
                "{name} publishes {port:?} on every interface; bind it to 127.0.0.1"
            );
        }
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
    for (name, port) in http_servers() {
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
fn kafka_init_creates_every_topic_its_dead_letter_topic_and_presence_with_six_partitions() {
    let doc = compose();
    let init = service(&doc, "kafka-init");
    let words = words_of_what_runs("kafka-init", init);
    let expected = shop_runtime::topics::ALL
        .iter()
        .flat_map(|t| [(*t).to_owned(), shop_runtime::topics::dead_letter_topic(t)])
        .chain([shop_runtime::topics::PRESENCE.to_owned()]);
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

#[test]
fn every_service_arg_names_a_workspace_package_whose_binary_has_its_name() {
    let doc = compose();
    let mut packages = BTreeMap::new();
    for member in workspace_members() {
        let manifest = std::fs::read_to_string(format!("{WORKSPACE}/{member}/Cargo.toml"))
            .unwrap_or_else(|e| panic!("reading {member}/Cargo.toml: {e}"));
        let (package, bins) = package_and_bins(&manifest);
        packages.insert(package, bins);
    }
    for (name, svc) in services(&doc) {
        let Some(arg) = service_arg(svc) else {
            continue;
        };
        // The Dockerfile runs `cargo build -p <package>` and copies target/release/<package>.
        for package in arg.split_whitespace() {
            let bins = packages.get(package).unwrap_or_else(|| {
                panic!(
                    "{}: SERVICE names `{package}`, which is no workspace package ({:?})",
                    scalar(name),
                    packages.keys().collect::<Vec<_>>()
                )
            });
            assert!(
                bins.is_empty() || bins.iter().any(|b| b == package),
                "{}: package {package} has no binary named {package} ({bins:?})",
                scalar(name)
            );
        }
    }
}

#[test]
fn the_dashboard_reads_kafka_and_asks_the_order_service_once_both_are_healthy() {
    let doc = compose();
    let (name, _) = DASHBOARD;
    let dashboard = service(&doc, name);
    let bootstrap = env_var(name, dashboard, "KAFKA_BOOTSTRAP_SERVERS");
    for broker in BROKERS {
        assert!(
            bootstrap
                .split(',')
                .any(|b| b.trim() == format!("{broker}:9092")),
            "{name} bootstraps from {broker}:9092, found {bootstrap}"
        );
        assert_eq!(
            depends_on_condition(dashboard, broker).as_deref(),
            Some("service_healthy"),
            "{name} waits for {broker}"
        );
    }
    assert_eq!(
        env_var(name, dashboard, "ORDER_SERVICE_URL"),
        "http://order-service:8080"
    );
    assert_eq!(
        depends_on_condition(dashboard, "order-service").as_deref(),
        Some("service_healthy"),
        "{name} waits for the Order Service"
    );
    assert_eq!(env_var(name, dashboard, "LOG_FORMAT"), "json");
    assert!(!env_var(name, dashboard, "RUST_LOG").is_empty());
    assert!(
        !env(dashboard).contains_key("DATABASE_URL"),
        "{name} has no database"
    );
    assert_eq!(
        depends_on_condition(dashboard, "postgres"),
        None,
        "{name} does not wait for PostgreSQL, which it does not use"
    );
}

#[test]
fn every_service_sends_its_traces_to_jaeger_over_otlp_http() {
    let doc = compose();
    for (name, _) in http_servers() {
        let svc = service(&doc, name);
        assert_eq!(
            env_var(name, svc, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            OTLP_ENDPOINT,
            "{name}"
        );
        assert!(
            !env(svc).contains_key("OTEL_SERVICE_NAME"),
            "{name} names itself in its traces; compose must not override it"
        );
    }
    let jaeger = service(&doc, "jaeger");
    let image = jaeger.get("image").map(scalar).unwrap_or_default();
    // Jaeger v2 listens for OTLP/HTTP on 4318 by default; v1 only with COLLECTOR_OTLP_ENABLED.
    let v1_with_otlp = image.starts_with("jaegertracing/all-in-one:1.")
        && env(jaeger)
            .get("COLLECTOR_OTLP_ENABLED")
            .map(String::as_str)
            == Some("true");
    assert!(
        image.starts_with("jaegertracing/jaeger:2.") || v1_with_otlp,
        "jaeger receives OTLP over HTTP on 4318: {image}"
    );
    assert!(
        published("jaeger", jaeger)
            .iter()
            .any(|p| p.container == 16686),
        "jaeger's UI is published"
    );
}

#[test]
fn prometheus_scrapes_every_replica_of_every_service_on_its_port_every_five_seconds() {
    let config = prometheus_config();
    assert_eq!(
        config["global"]["scrape_interval"].as_str(),
        Some("5s"),
        "scrape interval"
    );
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("prometheus.yml has scrape_configs");
    let doc = compose();
    // Every service built from the Dockerfile that `up` starts, not just the ones listed here:
    // a new service without a scrape job fails this test.
    let started: BTreeSet<String> = services(&doc)
        .iter()
        .filter(|(_, svc)| svc.get("build").is_some() && svc.get("profiles").is_none())
        .map(|(name, _)| scalar(name))
        .collect();
    let known: BTreeSet<String> = http_servers()
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        started, known,
        "the services `up` builds from the Dockerfile are the five and the dashboard"
    );
    for (name, port) in http_servers() {
        let job = jobs
            .iter()
            .find(|job| job["job_name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("prometheus.yml has no job {name}"));
        assert!(
            job.get("static_configs").is_none(),
            "{name}: a static target would find one replica only"
        );
        let discovery = job["dns_sd_configs"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: found by DNS, one A record per replica"));
        let found = discovery.iter().any(|sd| {
            strings(sd.get("names")) == [name]
                && sd["type"].as_str() == Some("A")
                && sd["port"].as_u64() == Some(u64::from(port))
        });
        assert!(
            found,
            "{name}: dns_sd_configs names [{name}], type A, port {port}"
        );
        let path = job
            .get("metrics_path")
            .map(scalar)
            .unwrap_or_else(|| "/metrics".into());
        assert_eq!(path, "/metrics", "{name}");
    }

    let prometheus = service(&doc, "prometheus");
    let image = prometheus.get("image").map(scalar).unwrap_or_default();
    assert!(image.starts_with("prom/prometheus:v3."), "{image}");
    assert!(
        strings(prometheus.get("volumes"))
            .iter()
            .any(|v| v
                .starts_with("./docker/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml")),
        "prometheus reads docker/prometheus/prometheus.yml"
    );
    let command = command_words(prometheus);
    assert!(
        command.contains(&"--config.file=/etc/prometheus/prometheus.yml".to_owned()),
        "prometheus is pointed at the mounted file: {command:?}"
    );
}

#[test]
fn grafana_provisions_prometheus_and_a_dashboard_of_every_service_metric() {
    let doc = compose();
    let grafana = service(&doc, "grafana");
    let volumes = strings(grafana.get("volumes"));
    for (source, target) in [
        (
            "./docker/grafana/provisioning/datasources",
            "/etc/grafana/provisioning/datasources",
        ),
        (
            "./docker/grafana/provisioning/dashboards",
            "/etc/grafana/provisioning/dashboards",
        ),
        ("./docker/grafana/dashboards", "/var/lib/grafana/dashboards"),
    ] {
        assert!(
            volumes
                .iter()
                .any(|v| v.starts_with(&format!("{source}:{target}"))),
            "grafana mounts {source} at {target}: {volumes:?}"
        );
    }
    let grafana_env = env(grafana);
    assert_eq!(
        grafana_env
            .get("GF_AUTH_ANONYMOUS_ENABLED")
            .map(String::as_str),
        Some("true"),
        "no login needed"
    );

    let text = std::fs::read_to_string(GRAFANA_DATASOURCES).expect("reading the data source");
    let datasources: Value = serde_yaml::from_str(&text).expect("the data source file is YAML");
    let prometheus = &datasources["datasources"][0];
    assert_eq!(prometheus["type"].as_str(), Some("prometheus"));
    assert_eq!(prometheus["url"].as_str(), Some("http://prometheus:9090"));
    let uid = prometheus["uid"]
        .as_str()
        .expect("the data source has a uid");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(GRAFANA_DASHBOARD).expect("reading the dashboard"),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(uid),
            "panel `{}` queries the provisioned Prometheus",
            panel["title"]
        );
    }

    // One name per measurement, whichever service makes it (the service is a label): the
    // panels name the metrics, never match `__name__` with a regular expression.
    let queries = dashboard_queries();
    for (title, expr) in &queries {
        assert!(
            !expr.contains("__name__"),
            "panel `{title}` selects metrics by a regular expression on their names: {expr}"
        );
    }
    for metric in [
        "shop_consumer_lag",
        "shop_consumer_events_total",
        "shop_outbox_backlog",
        "shop_outbox_oldest_age_seconds",
        "shop_http_requests_total",
        "shop_http_request_duration_seconds_bucket",
        "shop_order_to_effect_seconds_bucket",
        "shop_orders_placed_total",
    ] {
        assert!(
            queries.iter().any(|(_, expr)| expr.contains(metric)),
            "no panel charts {metric}"
        );
    }
    assert!(
        queries.iter().any(|(_, expr)| expr.contains("rate(")
            && expr.contains("_consumer_events_total")
            && expr.contains(r#"outcome="processed""#)),
        "a panel shows events processed per second"
    );
    for quantile in ["0.5", "0.99"] {
        assert!(
            queries.iter().any(|(_, expr)| expr
                .contains(&format!("histogram_quantile({quantile},"))
                && expr.contains("_order_to_effect_seconds_bucket")),
            "a panel shows the order→effect p{}",
            quantile.trim_start_matches("0.")
        );
    }
    // Replicas are told apart by the scrape's labels.
    assert!(
        queries
            .iter()
            .any(|(_, expr)| expr.contains("by (job, instance") && expr.contains("_consumer_lag")),
        "a panel shows lag per replica"
    );
}

#[test]
fn the_tools_run_inside_the_network_only_when_asked_for() {
    let doc = compose();
    let tools = service(&doc, "tools");
    assert_eq!(
        strings(tools.get("profiles")),
        ["tools"],
        "`docker compose up` leaves the tools out; `docker compose run --rm tools` runs them"
    );
    let build = tools.get("build").expect("tools are built from source");
    assert_eq!(build.get("target").map(scalar).as_deref(), Some("tools"));
    assert_eq!(
        build.get("dockerfile").map(scalar).as_deref(),
        Some("Dockerfile")
    );
    let arg = service_arg(tools).unwrap_or_default();
    for tool in ["shop-load", "shop-dlt"] {
        assert!(
            arg.split_whitespace().any(|a| a == tool),
            "the tools image has {tool}: SERVICE={arg}"
        );
    }
    // shop-dlt reads the brokers from the environment.
    let bootstrap = env_var("tools", tools, "KAFKA_BOOTSTRAP_SERVERS");
    for broker in BROKERS {
        assert!(bootstrap.contains(&format!("{broker}:9092")), "{bootstrap}");
    }
    assert!(
        published("tools", tools).is_empty(),
        "tools publish nothing"
    );
}

#[test]
fn every_container_has_a_memory_limit_above_its_heap() {
    let doc = compose();
    for (name, svc) in services(&doc) {
        let name = scalar(name);
        let limit = mem_limit_bytes(&name, svc);
        assert!(
            limit >= 128 << 20,
            "{name}: mem_limit {limit} bytes is too small to start"
        );
    }
    // A JVM needs room beside its heap: metaspace, threads, buffers.
    for broker in BROKERS {
        assert!(
            mem_limit_bytes(broker, service(&doc, broker)) >= 768 << 20,
            "{broker}: 512 MB of heap and the JVM's own memory"
        );
    }
    assert!(mem_limit_bytes("kafka-ui", service(&doc, "kafka-ui")) >= 384 << 20);
}

// --- Least privilege: who logs in as whom, and what kafka-init grants ----------------------

/// The Kafka clients built from the Dockerfile, each with the user it must log in as: the
/// five services and the dashboard as themselves, the `tools` service as shop-dlt (shop-load,
/// beside it, speaks only HTTP).
fn kafka_clients() -> Vec<(&'static str, &'static str)> {
    http_servers()
        .into_iter()
        .map(|(name, _)| (name, name))
        .chain([("tools", "shop-dlt")])
        .collect()
}

/// The `.env` variable holding a Kafka user's password: `ORDER_SERVICE_KAFKA_PASSWORD`.
fn password_variable(user: &str) -> String {
    format!("{}_KAFKA_PASSWORD", user.to_uppercase().replace('-', "_"))
}

/// `.env` as docker compose reads it: `KEY=value` lines, `#` comments.
fn env_file() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| panic!("reading .env: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!(".env: `{line}` is not KEY=value"));
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The variable named by a compose interpolation that is the whole value: `${NAME}`,
/// `${NAME:?message}`, `${NAME:-default}` and the like.
fn interpolated(value: &str) -> Option<&str> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    let name = inner
        .split([':', '?', '-'])
        .next()
        .filter(|n| !n.is_empty())?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// Every `${NAME...}` interpolation in a text.
fn interpolations(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
        rest = after;
    }
    names
}

/// A script's commands, one per logical line: continuation lines joined, comment lines
/// dropped, each split into words without their quotes.
fn script_commands(path: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                commands.push(
                    current
                        .split_whitespace()
                        .map(|w| w.trim_matches(|c| matches!(c, '"' | '\'')).to_owned())
                        .collect(),
                );
                current.clear();
            }
        }
    }
    commands
}

/// One ACL: principal, resource type, literal resource name, operation (as kafka-acls.sh
/// spells them: `User:order-service`, `topic`, `orders`, `Read`).
type Grant = (String, &'static str, String, String);

/// What `shop_runtime::access` declares, as the ACLs that express it.
fn declared_grants() -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for principal in shop_runtime::access::PRINCIPALS {
        let user = format!("User:{}", principal.user);
        for (topics, operation) in [(principal.reads, "Read"), (principal.writes, "Write")] {
            for topic in topics {
                for op in [operation, "Describe"] {
                    grants.insert((user.clone(), "topic", (*topic).to_owned(), op.to_owned()));
                }
            }
        }
        if let Some(group) = principal.group {
            grants.insert((user.clone(), "group", group.to_owned(), "Read".to_owned()));
        }
    }
    grants
}

/// The ACLs docker/kafka/init.sh adds, read from its `acl --add ...` lines as kafka-acls.sh
/// would apply them: every listed operation on every listed resource. Anything that could
/// widen a grant beyond literal names and the listed operations fails the test instead.
fn granted_by_kafka_init() -> BTreeSet<Grant> {
    let commands = script_commands(KAFKA_INIT_SCRIPT);
    let mut grants = BTreeSet::new();
    let mut acl_function = false;
    for command in &commands {
        let line = command.join(" ");
        if command.first().map(String::as_str) == Some("acl()") {
            acl_function = true;
            continue;
        }
        if command.iter().any(|w| w.ends_with("kafka-acls.sh")) {
            // Only inside `acl`, which adds nothing but where and how to log in.
            let options: Vec<&str> = command.iter().map(String::as_str).collect();
            assert!(
                matches!(
                    options.as_slice(),
                    [_, "--bootstrap-server", _, "--command-config", _, "$@"]
                ),
                "init.sh calls kafka-acls.sh other than through `acl`: {line}"
            );
            continue;
        }
        if command.first().map(String::as_str) != Some("acl") {
            continue;
        }
        let args = &command[1..];
        if args == ["--list"] {
            continue;
        }
        assert_eq!(
            args.first().map(String::as_str),
            Some("--add"),
            "an `acl` line adds or lists, nothing else: {line}"
        );
        let (mut principals, mut operations, mut resources) = (vec![], vec![], vec![]);
        let mut literal = false;
        let mut rest = args[1..].iter();
        while let Some(option) = rest.next() {
            let mut value = || {
                rest.next()
                    .cloned()
                    .unwrap_or_else(|| panic!("{option} without a value: {line}"))
            };
            match option.as_str() {
                "--allow-principal" => principals.push(value()),
                "--operation" => operations.push(value()),
                "--topic" => resources.push(("topic", value())),
                "--group" => resources.push(("group", value())),
                "--resource-pattern-type" => {
                    let pattern = value();
                    assert_eq!(pattern, "literal", "only literal names: {line}");
                    literal = true;
                }
                other => panic!(
                    "init.sh's ACLs may name a principal, operations, topics and groups, \
                     nothing else; found {other} in: {line}"
                ),
            }
        }
        assert!(literal, "say --resource-pattern-type literal: {line}");
        assert!(
            !principals.is_empty() && !operations.is_empty() && !resources.is_empty(),
            "{line}"
        );
        for (_, name) in &resources {
            assert!(
                !name.contains('*') && !name.is_empty(),
                "no wildcard resource: {line}"
            );
        }
        for operation in &operations {
            assert!(
                ["Read", "Write", "Describe"].contains(&operation.as_str()),
                "only Read, Write and Describe are granted (no All, no Create, no Alter): {line}"
            );
        }
        for principal in &principals {
            assert!(
                principal.starts_with("User:") && !principal.contains('*'),
                "a named user: {line}"
            );
            for (kind, name) in &resources {
                for operation in &operations {
                    grants.insert((principal.clone(), *kind, name.clone(), operation.clone()));
                }
            }
        }
    }
    assert!(
        acl_function,
        "init.sh defines `acl`, its one way to call kafka-acls.sh"
    );
    grants
}

fn describe(grants: &BTreeSet<Grant>) -> String {
    grants
        .iter()
        .map(|(principal, kind, name, operation)| {
            format!("\n  {principal} {operation} {kind} {name}")
        })
        .collect()
}

// The local test broker (Tansu) accepts ACLs but does not enforce them: the end-to-end tests
// pass whatever is granted here. Only a real Kafka cluster (this compose file, or the
// Strimzi cluster of k8s/) proves that the services work with these grants and no more.
#[test]
fn kafka_init_grants_exactly_the_acls_the_code_declares_no_more_and_no_less() {
    let declared = declared_grants();
    let granted = granted_by_kafka_init();
    let missing: BTreeSet<Grant> = declared.difference(&granted).cloned().collect();
    let extra: BTreeSet<Grant> = granted.difference(&declared).cloned().collect();
    assert!(
        missing.is_empty(),
        "docker/kafka/init.sh grants less than shop_runtime::access declares; missing:{}",
        describe(&missing)
    );
    assert!(
        extra.is_empty(),
        "docker/kafka/init.sh grants more than shop_runtime::access declares; extra:{}",
        describe(&extra)
    );

    // And kafka-init runs that script, mounted from the repository, as admin.
    let doc = compose();
    let init = service(&doc, "kafka-init");
    assert!(
        strings(init.get("volumes")).contains(&"./docker/kafka:/shop:ro".to_owned()),
        "kafka-init mounts docker/kafka at /shop"
    );
    assert!(
        command_words(init).contains(&"/shop/init.sh".to_owned()),
        "kafka-init runs /shop/init.sh: {:?}",
        command_words(init)
    );
    assert_eq!(
        interpolated(&env_var("kafka-init", init, "ADMIN_KAFKA_PASSWORD")),
        Some("ADMIN_KAFKA_PASSWORD")
    );
}

#[test]
fn only_admin_and_the_brokers_themselves_are_super_users_and_nothing_else_is_allowed_by_default() {
    let doc = compose();
    for broker in BROKERS {
        let svc = service(&doc, broker);
        assert_eq!(
            env_var(broker, svc, "KAFKA_AUTHORIZER_CLASS_NAME"),
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "{broker}: KRaft's authorizer"
        );
        assert_eq!(
            env_var(broker, svc, "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"),
            "false",
            "{broker}: no ACL, no access"
        );
        let supers: BTreeSet<String> = env_var(broker, svc, "KAFKA_SUPER_USERS")
            .split(';')
            .map(|s| s.trim().to_owned())
            .collect();
        let expected: BTreeSet<String> = [
            format!("User:{}", shop_runtime::access::ADMIN),
            "User:broker".to_owned(),
        ]
        .into();
        assert_eq!(supers, expected, "{broker}: super users");
        for principal in shop_runtime::access::PRINCIPALS {
            assert_ne!(
                principal.user, "broker",
                "the brokers' own user is nobody else's"
            );
        }
    }
}

#[test]
fn every_listener_asks_for_a_password_and_clients_log_in_with_scram_only() {
    let doc = compose();
    for broker in BROKERS {
        let env = env(service(&doc, broker));
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{broker} does not set {key}"))
        };
        let protocols: BTreeMap<String, String> = get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
            .split(',')
            .map(|pair| {
                let (name, protocol) = pair.split_once(':').expect("NAME:PROTOCOL");
                (name.trim().to_owned(), protocol.trim().to_owned())
            })
            .collect();
        let listeners: Vec<String> = get("KAFKA_LISTENERS")
            .split(',')
            .map(|l| l.split("://").next().unwrap_or_default().trim().to_owned())
            .collect();
        let controller = get("KAFKA_CONTROLLER_LISTENER_NAMES");
        let inter_broker = get("KAFKA_INTER_BROKER_LISTENER_NAME");
        for listener in &listeners {
            let protocol = protocols
                .get(listener)
                .unwrap_or_else(|| panic!("{broker}: listener {listener} has no protocol"));
            assert!(
                protocol.starts_with("SASL_"),
                "{broker}: {listener} is {protocol}; every listener asks for a password, \
                 or anyone reaching it would be User:ANONYMOUS"
            );
            assert!(
                !listener.starts_with("SASL_"),
                "{broker}: a listener named {listener} makes the image demand a JAAS file"
            );
            let mechanisms = get(&format!(
                "KAFKA_LISTENER_NAME_{listener}_SASL_ENABLED_MECHANISMS"
            ));
            let nodes_only = *listener == controller || *listener == inter_broker;
            let expected = if nodes_only { "PLAIN" } else { "SCRAM-SHA-512" };
            assert_eq!(
                mechanisms, expected,
                "{broker}: {listener} offers {expected} only"
            );
            let jaas_key = format!(
                "KAFKA_LISTENER_NAME_{listener}_{}_SASL_JAAS_CONFIG",
                expected.replace('-', "___")
            );
            let jaas = get(&jaas_key);
            if nodes_only {
                assert!(
                    jaas.contains("PlainLoginModule")
                        && jaas.contains("username=\"broker\"")
                        && jaas.contains("user_broker="),
                    "{broker}: {listener} logs the nodes in as, and accepts only, broker: {jaas}"
                );
                // Only the nodes' user: no client's password sits in the brokers' config.
                assert_eq!(jaas.matches("user_").count(), 1, "{broker}: {jaas}");
            } else {
                assert!(jaas.contains("ScramLoginModule"), "{broker}: {jaas}");
            }
        }
        assert_eq!(get("KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL"), "PLAIN");
        assert_eq!(get("KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"), "PLAIN");

        // The host reaches the SCRAM listener, never the nodes' own.
        let advertised = get("KAFKA_ADVERTISED_LISTENERS");
        for port in published(broker, service(&doc, broker)) {
            let listener = get("KAFKA_LISTENERS")
                .split(',')
                .find(|l| l.ends_with(&format!(":{}", port.container)))
                .map(|l| l.split("://").next().unwrap_or_default().to_owned())
                .unwrap_or_else(|| panic!("{broker}: no listener on {}", port.container));
            assert_eq!(
                get(&format!(
                    "KAFKA_LISTENER_NAME_{listener}_SASL_ENABLED_MECHANISMS"
                )),
                "SCRAM-SHA-512",
                "{broker}: the host port {} reaches {listener}",
                port.host
            );
            assert!(
                advertised.contains(&format!("{listener}://localhost:{}", port.host)),
                "{broker}: {advertised}"
            );
        }

        // The health check logs in as admin, with the file broker.sh writes.
        let check = healthcheck_words(service(&doc, broker));
        assert!(
            followed_by(&check, "--command-config", "/tmp/shop/admin.properties"),
            "{broker}: the health check logs in: {check:?}"
        );
        let starts = words_of_what_runs(broker, service(&doc, broker));
        assert!(
            starts.iter().any(|w| w == "/etc/kafka/docker/run"),
            "{broker} ends in the image's own start-up: {starts:?}"
        );
    }
    let script = std::fs::read_to_string(BROKER_SCRIPT).expect("reading docker/kafka/broker.sh");
    assert!(
        script.contains("--add-scram")
            && script.contains(&format!(
                "SCRAM-SHA-512=[name={},password=${{ADMIN_KAFKA_PASSWORD}}]",
                shop_runtime::access::ADMIN
            )),
        "the brokers are formatted with the admin's SCRAM credential"
    );
}

#[test]
fn every_service_logs_in_to_kafka_as_its_own_user_with_its_own_password() {
    let doc = compose();
    let mut users = BTreeSet::new();
    for (name, user) in kafka_clients() {
        let svc = service(&doc, name);
        let principal = shop_runtime::access::Principal::of_service(user)
            .unwrap_or_else(|| panic!("{name}: {user} is no principal of shop_runtime::access"));
        assert_eq!(
            env_var(name, svc, "KAFKA_SASL_USERNAME"),
            principal.user,
            "{name} logs in as {user}"
        );
        assert!(users.insert(principal.user), "{user} is used twice");
        assert_eq!(
            interpolated(&env_var(name, svc, "KAFKA_SASL_PASSWORD")),
            Some(password_variable(user).as_str()),
            "{name} takes its password from its own .env variable"
        );
        assert!(
            ["SASL_PLAINTEXT", "SASL_SSL"]
                .contains(&env_var(name, svc, "KAFKA_SECURITY_PROTOCOL").as_str()),
            "{name} logs in"
        );
        assert_eq!(
            env_var(name, svc, "KAFKA_SASL_MECHANISM"),
            "SCRAM-SHA-512",
            "{name}"
        );
        assert_eq!(
            env_var(name, svc, "KAFKA_CREATE_TOPICS"),
            "false",
            "{name} may not create topics: kafka-init does"
        );
        // Its group is the one it is granted; KAFKA_GROUP_ID would need a grant of its own.
        if let Some(group) = env(svc).get("KAFKA_GROUP_ID") {
            assert_eq!(Some(group.as_str()), principal.group, "{name}'s group");
        }
        if name != "tools" {
            assert_eq!(
                depends_on_condition(svc, "kafka-init").as_deref(),
                Some("service_completed_successfully"),
                "{name} starts once its user and ACLs exist"
            );
        }
    }

    // kafka-init creates each of those users with the same variable.
    let scram: BTreeMap<String, String> = script_commands(KAFKA_INIT_SCRIPT)
        .into_iter()
        .filter(|c| c.first().map(String::as_str) == Some("scram") && c.len() == 3)
        .map(|c| (c[1].clone(), c[2].clone()))
        .collect();
    let declared: BTreeMap<String, String> = shop_runtime::access::PRINCIPALS
        .iter()
        .map(|p| (p.user.to_owned(), password_variable(p.user)))
        .collect();
    assert_eq!(
        scram, declared,
        "init.sh gives every principal its SCRAM credential"
    );
    let init = service(&doc, "kafka-init");
    for variable in declared.values() {
        assert_eq!(
            interpolated(&env_var("kafka-init", init, variable)),
            Some(variable.as_str()),
            "kafka-init takes {variable} from .env"
        );
    }

    // Kafka UI has no login of its own: it logs in as admin and only looks.
    let ui = service(&doc, "kafka-ui");
    let ui_env = env(ui);
    assert_eq!(
        ui_env.get("KAFKA_CLUSTERS_0_READONLY").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ui_env
            .get("KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM")
            .map(String::as_str),
        Some("SCRAM-SHA-512")
    );
    let jaas = ui_env
        .get("KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG")
        .cloned()
        .unwrap_or_default();
    assert!(
        jaas.contains(&format!("username=\"{}\"", shop_runtime::access::ADMIN))
            && jaas.contains("password=\"${ADMIN_KAFKA_PASSWORD"),
        "kafka-ui: {jaas}"
    );
}

#[test]
fn no_secret_is_written_in_docker_compose_yml_every_one_comes_from_dot_env() {
    let text = std::fs::read_to_string(COMPOSE_FILE).expect("reading docker-compose.yml");
    let dot_env = env_file();

    // Every password has a value in .env that the scripts can splice in safely, and none of
    // those values is written anywhere but .env.
    let secrets: Vec<(&String, &String)> = dot_env
        .iter()
        .filter(|(key, _)| key.ends_with("PASSWORD"))
        .collect();
    assert!(!secrets.is_empty(), ".env holds the passwords");
    for (key, value) in &secrets {
        assert!(
            value.len() >= 12
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            ".env: {key} must be 12 or more letters, digits, '.', '_' or '-'"
        );
        for path in [COMPOSE_FILE, BROKER_SCRIPT, KAFKA_INIT_SCRIPT] {
            let file = std::fs::read_to_string(path).expect("readable");
            assert!(
                !file.contains(value.as_str()),
                "{path} contains the value of {key}; write ${{{key}}} instead"
            );
        }
    }
    for user in shop_runtime::access::PRINCIPALS
        .iter()
        .map(|p| p.user)
        .chain([shop_runtime::access::ADMIN, "broker"])
    {
        assert!(
            dot_env.contains_key(&password_variable(user)),
            ".env has no {}",
            password_variable(user)
        );
    }

    // Every interpolation has its value in .env, and .env holds nothing the file does not use.
    let used = interpolations(&text);
    let defined: BTreeSet<String> = dot_env.keys().cloned().collect();
    assert_eq!(
        used, defined,
        "the variables docker-compose.yml uses and those .env sets"
    );

    // Every variable that carries a secret is an interpolation, whole or inside a JAAS
    // configuration; no URL carries a password.
    let doc = compose();
    for (name, svc) in services(&doc) {
        let name = scalar(name);
        for (key, value) in env(svc) {
            if key.contains("PASSWORD") {
                assert!(
                    interpolated(&value).is_some(),
                    "{name}: {key} is written in the file; take it from .env"
                );
            }
            for marker in ["password=\"", "user_broker=\""] {
                for (at, _) in value.match_indices(marker) {
                    assert!(
                        value[at + marker.len()..].starts_with("${"),
                        "{name}: {key} writes a password in the file: take it from .env"
                    );
                }
            }
            if let Some((_, rest)) = value.split_once("://") {
                let authority = rest.split('/').next().unwrap_or_default();
                if let Some((userinfo, _)) = authority.rsplit_once('@') {
                    assert!(
                        !userinfo.contains(':'),
                        "{name}: {key} carries a password in its URL; use DATABASE_PASSWORD"
                    );
                }
            }
        }
    }

    // And no image is built with them.
    let ignored = std::fs::read_to_string(DOCKERIGNORE).expect("reading .dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == ".env"),
        ".dockerignore leaves .env out of the build context, so COPY . . cannot bake it in"
    );
}

#[test]
fn every_service_reaches_postgresql_as_its_own_role_owning_only_its_database() {
    let doc = compose();
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker/postgres-roles.sh"
    ))
    .expect("reading docker/postgres-roles.sh");
    let postgres_env = env(service(&doc, "postgres"));
    let mut variables = BTreeSet::new();
    for (name, _, database) in SERVICES {
        let svc = service(&doc, name);
        let url = env_var(name, svc, "DATABASE_URL");
        assert!(
            url.starts_with(&format!("postgres://{name}@postgres:5432/{database}")),
            "{name} logs in to PostgreSQL as its own role: {url}"
        );
        let password = env_var(name, svc, "DATABASE_PASSWORD");
        let variable = interpolated(&password)
            .unwrap_or_else(|| panic!("{name}: DATABASE_PASSWORD comes from .env: {password}"));
        assert!(
            variables.insert(variable.to_owned()),
            "{name} shares its password variable {variable}"
        );
        assert_eq!(
            postgres_env.get(variable).map(String::as_str),
            Some(password.as_str()),
            "the postgres container gets {variable} to create {name}'s role"
        );
        assert!(
            script.contains(&format!("role {name} {database} \"${variable}\"")),
            "docker/postgres-roles.sh creates {name} owning {database} with {variable}"
        );
    }
    let mounted = service(&doc, "postgres")
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(scalar)
        .any(|v| v.starts_with("./docker/postgres-roles.sh:/docker-entrypoint-initdb.d/20-"));
    assert!(
        mounted,
        "postgres runs postgres-roles.sh after the databases exist"
    );
}

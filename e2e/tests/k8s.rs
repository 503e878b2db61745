//! The Kubernetes manifests (k8s/) grant and create what the code declares, no more and no
//! less: each overlay is rendered with `kubectl kustomize` and its Strimzi `KafkaUser`s are
//! compared with `shop_runtime::access`, its `KafkaTopic`s with `shop_runtime::topics` (and
//! with what compose's kafka-init creates), its Deployments with each service's identity.
//!
//! Read this before trusting a green local run: **Tansu, the broker the other end-to-end
//! tests use, accepts ACLs but does not enforce them.** Nothing run against it proves that a
//! service is refused what it was not granted. Here the grants themselves are compared with
//! the code; a Kafka with `StandardAuthorizer` (compose's brokers, Strimzi's `simple`
//! authorization) is what enforces them, and no test here runs one on Kubernetes.
//!
//! Schemas and policies (probes, resources, security context, pinned images, references)
//! are `scripts/check-k8s.sh`'s; this file only needs kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml::Value;
use shop_runtime::access::{self, Principal};
use shop_runtime::config::ServiceIdentity;
use shop_runtime::topics;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every overlay, with the replication factor and `min.insync.replicas` of its topics.
const OVERLAYS: [(&str, i64, i64); 2] = [("laptop", 1, 1), ("production", 3, 2)];

/// The services with a database, from the code.
const SERVICES: [ServiceIdentity; 5] = [
    order_service::config::IDENTITY,
    inventory_service::config::IDENTITY,
    payment_service::config::IDENTITY,
    email_service::config::IDENTITY,
    analytics_service::config::IDENTITY,
];

/// The dashboard's name (its principal's user) and its default HTTP port.
const DASHBOARD: (&str, u16) = ("dashboard", 8088);

/// The Kafka cluster's name in k8s/base/kafka/kafka.yaml.
const KAFKA_CLUSTER: &str = "shop";

/// One rendered overlay: its objects by kind.
struct Rendered {
    name: &'static str,
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| text(o, &["kind"]) == kind)
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|o| text(o, &["metadata", "name"]) == name)
            .unwrap_or_else(|| panic!("{}: no {kind} named {name}", self.name))
    }
}

/// Every overlay, rendered once for all the tests in this file.
fn overlays() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let dir = Path::new(WORKSPACE).join("k8s/overlays");
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        let known: BTreeSet<String> = OVERLAYS.iter().map(|(n, ..)| (*n).to_owned()).collect();
        assert_eq!(
            present, known,
            "k8s/overlays/ and OVERLAYS here must name the same overlays"
        );
        OVERLAYS
            .iter()
            .map(|(name, ..)| Rendered {
                name,
                objects: kustomize(&dir.join(name)),
            })
            .collect()
    })
}

fn kustomize(dir: &PathBuf) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `kubectl kustomize {}`: {e}. kubectl (1.27 or newer, with its \
                 built-in kustomize) is needed to render the manifests; it is on the project's \
                 machine image, else install it",
                dir.display()
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize prints valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn text(value: &Value, path: &[&str]) -> String {
    match get(value, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn int(value: &Value, path: &[&str]) -> Option<i64> {
    get(value, path).and_then(Value::as_i64)
}

fn list<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    get(value, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// One ACL entry, flattened to one operation: (resource type, name, pattern, operation,
/// allow or deny, host).
type Grant = (String, String, String, String, String, String);

fn granted(user: &Value) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for acl in list(user, &["spec", "authorization", "acls"]) {
        for operation in list(acl, &["operations"]) {
            let or = |s: String, default: &str| if s.is_empty() { default.to_owned() } else { s };
            grants.insert((
                text(acl, &["resource", "type"]),
                text(acl, &["resource", "name"]),
                or(text(acl, &["resource", "patternType"]), "literal"),
                operation.as_str().unwrap_or_default().to_owned(),
                or(text(acl, &["type"]), "allow"),
                or(text(acl, &["host"]), "*"),
            ));
        }
    }
    grants
}

fn declared(principal: &Principal) -> BTreeSet<Grant> {
    let grant = |kind: &str, name: &str, operation: &str| -> Grant {
        (
            kind.to_owned(),
            name.to_owned(),
            "literal".to_owned(),
            operation.to_owned(),
            "allow".to_owned(),
            "*".to_owned(),
        )
    };
    let mut grants = BTreeSet::new();
    for topic in principal.reads {
        grants.insert(grant("topic", topic, "Read"));
        grants.insert(grant("topic", topic, "Describe"));
    }
    for topic in principal.writes {
        grants.insert(grant("topic", topic, "Write"));
        grants.insert(grant("topic", topic, "Describe"));
    }
    if let Some(group) = principal.group {
        grants.insert(grant("group", group, "Read"));
    }
    grants
}

/// The environment a Deployment's container gets: its ConfigMaps (envFrom) and its own env.
fn environment(overlay: &Rendered, deployment: &Value) -> BTreeMap<String, String> {
    let container = list(deployment, &["spec", "template", "spec", "containers"])[0];
    let mut env = BTreeMap::new();
    for source in list(container, &["envFrom"]) {
        let name = text(source, &["configMapRef", "name"]);
        let map = overlay.named("ConfigMap", &name);
        if let Some(data) = get(map, &["data"]).and_then(Value::as_mapping) {
            for (k, v) in data {
                env.insert(
                    k.as_str().unwrap_or_default().to_owned(),
                    v.as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }
    for var in list(container, &["env"]) {
        env.insert(text(var, &["name"]), text(var, &["value"]));
    }
    env
}

/// The Secret each file of a Deployment's projected credentials volume comes from.
fn projected_files(deployment: &Value) -> BTreeMap<String, (String, String)> {
    let mut files = BTreeMap::new();
    for volume in list(deployment, &["spec", "template", "spec", "volumes"]) {
        for source in list(volume, &["projected", "sources"]) {
            let secret = text(source, &["secret", "name"]);
            for item in list(source, &["secret", "items"]) {
                files.insert(
                    text(item, &["path"]),
                    (secret.clone(), text(item, &["key"])),
                );
            }
        }
    }
    files
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` has no port"))
}

#[test]
fn the_kafka_users_grant_each_principal_exactly_what_shop_runtime_access_declares() {
    for overlay in overlays() {
        let users = overlay.of_kind("KafkaUser");
        let names: BTreeSet<String> = users
            .iter()
            .map(|u| text(u, &["metadata", "name"]))
            .collect();
        let expected: BTreeSet<String> = access::PRINCIPALS
            .iter()
            .map(|p| p.user.to_owned())
            .chain([access::ADMIN.to_owned()])
            .collect();
        assert_eq!(
            names, expected,
            "{}: one KafkaUser per principal and the admin",
            overlay.name
        );
        for user in &users {
            let name = text(user, &["metadata", "name"]);
            assert_eq!(
                text(user, &["spec", "authentication", "type"]),
                "scram-sha-512",
                "{}: {name} authenticates with SCRAM-SHA-512",
                overlay.name
            );
            assert_eq!(
                text(user, &["metadata", "labels", "strimzi.io/cluster"]),
                KAFKA_CLUSTER,
                "{}: {name} belongs to the cluster",
                overlay.name
            );
        }
        for principal in access::PRINCIPALS {
            let user = overlay.named("KafkaUser", principal.user);
            assert_eq!(
                text(user, &["spec", "authorization", "type"]),
                "simple",
                "{}: {}",
                overlay.name,
                principal.user
            );
            let granted = granted(user);
            let declared = declared(&principal);
            let more: Vec<_> = granted.difference(&declared).collect();
            let less: Vec<_> = declared.difference(&granted).collect();
            assert!(
                more.is_empty() && less.is_empty(),
                "{}: KafkaUser {} grants more than shop_runtime::access declares: {more:?}; \
                 and less: {less:?}",
                overlay.name,
                principal.user
            );
        }
        // The admin has no ACL of its own: it is the one super user.
        let admin = overlay.named("KafkaUser", access::ADMIN);
        assert!(
            get(admin, &["spec", "authorization"]).is_none(),
            "{}: the admin is a super user, not a list of ACLs",
            overlay.name
        );
        let kafka = overlay.named("Kafka", KAFKA_CLUSTER);
        let authorization = get(kafka, &["spec", "kafka", "authorization"])
            .unwrap_or_else(|| panic!("{}: the Kafka cluster authorizes nothing", overlay.name));
        assert_eq!(text(authorization, &["type"]), "simple", "{}", overlay.name);
        let super_users: Vec<String> = list(authorization, &["superUsers"])
            .iter()
            .map(|u| u.as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(super_users, [access::ADMIN], "{}", overlay.name);
        // Every listener a client can reach checks who it is, over TLS.
        for listener in list(kafka, &["spec", "kafka", "listeners"]) {
            assert_eq!(
                text(listener, &["authentication", "type"]),
                "scram-sha-512",
                "{}: listener {}",
                overlay.name,
                text(listener, &["name"])
            );
            assert_eq!(
                text(listener, &["tls"]),
                "true",
                "{}: listener {}",
                overlay.name,
                text(listener, &["name"])
            );
        }
    }
}

#[test]
fn every_topic_the_code_uses_is_a_kafka_topic_with_its_partitions_and_replicas() {
    for (overlay, (_, replicas, min_insync)) in overlays().iter().zip(OVERLAYS) {
        let kafka_topics = overlay.of_kind("KafkaTopic");
        let names: BTreeSet<String> = kafka_topics
            .iter()
            .map(|t| {
                let topic_name = text(t, &["spec", "topicName"]);
                if topic_name.is_empty() {
                    text(t, &["metadata", "name"])
                } else {
                    topic_name
                }
            })
            .collect();
        let expected: BTreeSet<String> = topics::EVERY.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(
            names, expected,
            "{}: the KafkaTopics are shop_runtime::topics::EVERY",
            overlay.name
        );
        for topic in kafka_topics {
            let name = text(topic, &["metadata", "name"]);
            assert_eq!(
                text(topic, &["metadata", "labels", "strimzi.io/cluster"]),
                KAFKA_CLUSTER,
                "{}: {name}",
                overlay.name
            );
            assert_eq!(
                int(topic, &["spec", "partitions"]),
                Some(i64::from(topics::PARTITIONS)),
                "{}: {name}",
                overlay.name
            );
            assert_eq!(
                int(topic, &["spec", "replicas"]),
                Some(replicas),
                "{}: {name}",
                overlay.name
            );
            assert_eq!(
                int(topic, &["spec", "config", "min.insync.replicas"]),
                Some(min_insync),
                "{}: {name}",
                overlay.name
            );
            let retention = int(topic, &["spec", "config", "retention.ms"]);
            let wanted = (name == topics::PRESENCE).then_some(3_600_000);
            assert_eq!(
                retention, wanted,
                "{}: {name}: presence keeps an hour, the others the broker's default",
                overlay.name
            );
        }
        // Nodes enough for the replicas, and the broker's defaults agree with the topics.
        let pool = overlay.of_kind("KafkaNodePool");
        assert_eq!(pool.len(), 1, "{}", overlay.name);
        assert_eq!(
            int(pool[0], &["spec", "replicas"]),
            Some(replicas),
            "{}",
            overlay.name
        );
        let config = get(
            overlay.named("Kafka", KAFKA_CLUSTER),
            &["spec", "kafka", "config"],
        )
        .expect("the Kafka cluster has a config");
        assert_eq!(int(config, &["default.replication.factor"]), Some(replicas));
        assert_eq!(int(config, &["min.insync.replicas"]), Some(min_insync));
        assert_eq!(text(config, &["auto.create.topics.enable"]), "false");
    }
}

#[test]
fn the_production_topics_are_those_compose_creates_with_the_same_settings() {
    // Compose's kafka-init runs docker/kafka/init.sh: its topic loop and its flags.
    let path = Path::new(WORKSPACE).join("docker/kafka/init.sh");
    let command = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
        .replace([';', '\\', '"'], " ");
    let words: Vec<&str> = command.split_whitespace().collect();
    let followed_by = |flag: &str, value: &str| words.windows(2).any(|w| w == [flag, value]);
    let production = overlays()
        .iter()
        .find(|o| o.name == "production")
        .expect("a production overlay");
    for topic in production.of_kind("KafkaTopic") {
        let name = text(topic, &["metadata", "name"]);
        assert!(
            words.contains(&name.as_str()),
            "compose's kafka-init does not create {name}: {command}"
        );
        assert!(
            followed_by("--partitions", &text(topic, &["spec", "partitions"])),
            "{name}: kafka-init's partitions differ: {command}"
        );
        assert!(
            followed_by("--replication-factor", &text(topic, &["spec", "replicas"])),
            "{name}: kafka-init's replication factor differs: {command}"
        );
        let min_insync = format!(
            "min.insync.replicas={}",
            text(topic, &["spec", "config", "min.insync.replicas"])
        );
        assert!(
            followed_by("--config", &min_insync),
            "{name}: kafka-init does not set {min_insync}: {command}"
        );
        let retention = text(topic, &["spec", "config", "retention.ms"]);
        if !retention.is_empty() {
            assert!(
                command.contains(&format!("retention.ms={retention}")),
                "{name}: kafka-init does not keep it {retention} ms: {command}"
            );
        }
    }
}

#[test]
fn each_service_connects_as_its_own_kafka_user_and_database_role_on_its_own_port() {
    let with_database: BTreeMap<&str, ServiceIdentity> =
        SERVICES.iter().map(|s| (s.name, *s)).collect();
    for overlay in overlays() {
        let deployments: Vec<&Value> = overlay
            .of_kind("Deployment")
            .into_iter()
            .filter(|d| {
                text(d, &["metadata", "labels", "app.kubernetes.io/component"]) == "shop-service"
            })
            .collect();
        let names: BTreeSet<String> = deployments
            .iter()
            .map(|d| text(d, &["metadata", "name"]))
            .collect();
        let expected: BTreeSet<String> = SERVICES
            .iter()
            .map(|s| s.name.to_owned())
            .chain([DASHBOARD.0.to_owned()])
            .collect();
        assert_eq!(
            names, expected,
            "{}: a Deployment per service",
            overlay.name
        );
        for deployment in deployments {
            let name = text(deployment, &["metadata", "name"]);
            let env = environment(overlay, deployment);
            let files = projected_files(deployment);
            let var = |key: &str| {
                env.get(key)
                    .cloned()
                    .unwrap_or_else(|| panic!("{}: {name} does not set {key}", overlay.name))
            };
            let principal = Principal::of_service(&name).unwrap_or_else(|| {
                panic!(
                    "{}: {name} is no principal of shop_runtime::access",
                    overlay.name
                )
            });
            assert_eq!(
                var("KAFKA_SASL_USERNAME"),
                principal.user,
                "{}",
                overlay.name
            );
            assert_eq!(
                var("KAFKA_SECURITY_PROTOCOL"),
                "SASL_SSL",
                "{}: {name}",
                overlay.name
            );
            assert_eq!(
                var("KAFKA_SASL_MECHANISM"),
                "SCRAM-SHA-512",
                "{}: {name}",
                overlay.name
            );
            assert_eq!(
                var("KAFKA_CREATE_TOPICS"),
                "false",
                "{}: {name}",
                overlay.name
            );
            // The password file is the user's own Secret, written by Strimzi's User Operator.
            let password = files
                .get(&file_name(&var("KAFKA_SASL_PASSWORD_FILE")))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {name}: KAFKA_SASL_PASSWORD_FILE is not mounted",
                        overlay.name
                    )
                });
            assert_eq!(
                password,
                &(principal.user.to_owned(), "password".to_owned()),
                "{}: {name} reads another user's password",
                overlay.name
            );
            let ca = files
                .get(&file_name(&var("KAFKA_SSL_CA_LOCATION")))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {name}: KAFKA_SSL_CA_LOCATION is not mounted",
                        overlay.name
                    )
                });
            assert_eq!(
                ca,
                &(
                    format!("{KAFKA_CLUSTER}-cluster-ca-cert"),
                    "ca.crt".to_owned()
                ),
                "{}: {name}",
                overlay.name
            );
            // Its port, the same in its address, its container and its Service.
            let port = with_database
                .get(name.as_str())
                .map(|s| s.http_port)
                .unwrap_or(DASHBOARD.1);
            assert_eq!(port_of(&var("HTTP_ADDR")), port, "{}: {name}", overlay.name);
            let container = list(deployment, &["spec", "template", "spec", "containers"])[0];
            assert_eq!(
                list(container, &["ports"])
                    .first()
                    .and_then(|p| int(p, &["containerPort"])),
                Some(i64::from(port)),
                "{}: {name}",
                overlay.name
            );
            let service = overlay.named("Service", &name);
            assert_eq!(
                list(service, &["spec", "ports"])
                    .first()
                    .and_then(|p| int(p, &["port"])),
                Some(i64::from(port)),
                "{}: Service {name}",
                overlay.name
            );
            // Its own database, as its own role, over TLS checked against CloudNativePG's CA.
            match with_database.get(name.as_str()) {
                None => assert!(
                    !env.contains_key("DATABASE_URL"),
                    "{}: {name} has no database",
                    overlay.name
                ),
                Some(identity) => {
                    let url = var("DATABASE_URL");
                    let expected = format!(
                        "postgres://{name}@shop-postgres-rw:5432/{}?sslmode=verify-full&sslrootcert=",
                        identity.database
                    );
                    assert!(
                        url.starts_with(&expected),
                        "{}: {name}: DATABASE_URL {url} is not {expected}…",
                        overlay.name
                    );
                    let root_cert = url.rsplit("sslrootcert=").next().unwrap_or_default();
                    assert_eq!(
                        files.get(&file_name(root_cert)),
                        Some(&("shop-postgres-ca".to_owned(), "ca.crt".to_owned())),
                        "{}: {name}: sslrootcert is not CloudNativePG's CA",
                        overlay.name
                    );
                    assert_eq!(
                        files.get(&file_name(&var("DATABASE_PASSWORD_FILE"))),
                        Some(&(format!("postgres-{name}"), "password".to_owned())),
                        "{}: {name}: DATABASE_PASSWORD_FILE is not its role's Secret",
                        overlay.name
                    );
                    let database = overlay
                        .of_kind("Database")
                        .into_iter()
                        .find(|d| text(d, &["spec", "name"]) == identity.database)
                        .unwrap_or_else(|| {
                            panic!("{}: no Database {}", overlay.name, identity.database)
                        });
                    assert_eq!(text(database, &["spec", "owner"]), name, "{}", overlay.name);
                    let cluster = overlay.named("Cluster", "shop-postgres");
                    let role = list(cluster, &["spec", "managed", "roles"])
                        .into_iter()
                        .find(|r| text(r, &["name"]) == name)
                        .unwrap_or_else(|| panic!("{}: no managed role {name}", overlay.name));
                    assert_eq!(
                        text(role, &["passwordSecret", "name"]),
                        format!("postgres-{name}"),
                        "{}",
                        overlay.name
                    );
                    assert_eq!(text(role, &["login"]), "true", "{}: {name}", overlay.name);
                    for power in [
                        "superuser",
                        "createdb",
                        "createrole",
                        "replication",
                        "bypassrls",
                    ] {
                        assert_ne!(
                            text(role, &[power]),
                            "true",
                            "{}: role {name} needs no {power}",
                            overlay.name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn each_consumer_scales_on_the_lag_of_its_own_group_on_a_topic_it_reads() {
    for overlay in overlays() {
        let scaled: BTreeSet<String> = overlay
            .of_kind("ScaledObject")
            .iter()
            .map(|s| text(s, &["spec", "scaleTargetRef", "name"]))
            .collect();
        let hpa: BTreeSet<String> = overlay
            .of_kind("HorizontalPodAutoscaler")
            .iter()
            .map(|h| text(h, &["spec", "scaleTargetRef", "name"]))
            .collect();
        let order_service = order_service::config::IDENTITY.name;
        assert_eq!(
            hpa,
            BTreeSet::from([order_service.to_owned()]),
            "{}: the Order Service, and only it, scales on CPU",
            overlay.name
        );
        let consumers: BTreeSet<String> = access::PRINCIPALS
            .iter()
            .filter(|p| p.group.is_some() && p.user != order_service)
            .map(|p| p.user.to_owned())
            .collect();
        assert_eq!(
            scaled, consumers,
            "{}: a ScaledObject per consumer service",
            overlay.name
        );
        for scaled_object in overlay.of_kind("ScaledObject") {
            let target = text(scaled_object, &["spec", "scaleTargetRef", "name"]);
            let principal = Principal::of_service(&target).expect("a principal");
            assert!(
                int(scaled_object, &["spec", "maxReplicaCount"])
                    .is_some_and(|max| max <= i64::from(topics::PARTITIONS)),
                "{}: {target} may scale past the {} partitions",
                overlay.name,
                topics::PARTITIONS
            );
            for trigger in list(scaled_object, &["spec", "triggers"]) {
                assert_eq!(
                    text(trigger, &["type"]),
                    "kafka",
                    "{}: {target}",
                    overlay.name
                );
                assert_eq!(
                    Some(text(trigger, &["metadata", "consumerGroup"]).as_str()),
                    principal.group,
                    "{}: {target} scales on another group's lag",
                    overlay.name
                );
                let topic = text(trigger, &["metadata", "topic"]);
                assert!(
                    principal.reads.contains(&topic.as_str()),
                    "{}: {target} scales on {topic}, which it does not read",
                    overlay.name
                );
                // KEDA reads the lag as the service's own user: no grant of its own.
                let auth = overlay.named(
                    "TriggerAuthentication",
                    &text(trigger, &["authenticationRef", "name"]),
                );
                let secrets: BTreeSet<(String, String, String)> =
                    list(auth, &["spec", "secretTargetRef"])
                        .iter()
                        .map(|r| {
                            (
                                text(r, &["parameter"]),
                                text(r, &["name"]),
                                text(r, &["key"]),
                            )
                        })
                        .collect();
                assert!(
                    secrets.contains(&(
                        "password".to_owned(),
                        principal.user.to_owned(),
                        "password".to_owned()
                    )),
                    "{}: KEDA reads {target}'s lag with another password: {secrets:?}",
                    overlay.name
                );
                let username: Vec<(String, String)> = list(auth, &["spec", "env"])
                    .iter()
                    .map(|e| (text(e, &["parameter"]), text(e, &["containerName"])))
                    .collect();
                assert_eq!(
                    username,
                    [("username".to_owned(), target.clone())],
                    "{}: KEDA takes the user name from {target}'s own container",
                    overlay.name
                );
            }
        }
    }
}

#[test]
fn every_service_is_scraped_by_a_pod_monitor_on_its_metrics_endpoint() {
    for overlay in overlays() {
        let monitors = overlay.of_kind("PodMonitor");
        let services: Vec<String> = SERVICES
            .iter()
            .map(|s| s.name.to_owned())
            .chain([DASHBOARD.0.to_owned()])
            .collect();
        for name in services {
            let deployment = overlay.named("Deployment", &name);
            let labels = get(deployment, &["spec", "template", "metadata", "labels"])
                .and_then(Value::as_mapping)
                .expect("pod labels");
            let selecting: Vec<&&Value> = monitors
                .iter()
                .filter(|m| {
                    get(m, &["spec", "selector", "matchLabels"])
                        .and_then(Value::as_mapping)
                        .is_some_and(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
                })
                .collect();
            assert_eq!(
                selecting.len(),
                1,
                "{}: {name} is scraped by {} PodMonitors",
                overlay.name,
                selecting.len()
            );
            let container = list(deployment, &["spec", "template", "spec", "containers"])[0];
            let ports: BTreeSet<String> = list(container, &["ports"])
                .iter()
                .map(|p| text(p, &["name"]))
                .collect();
            for endpoint in list(selecting[0], &["spec", "podMetricsEndpoints"]) {
                assert!(
                    ports.contains(&text(endpoint, &["port"])),
                    "{}: {name}'s PodMonitor scrapes port {} it does not have",
                    overlay.name,
                    text(endpoint, &["port"])
                );
                assert_eq!(
                    text(endpoint, &["path"]),
                    "/metrics",
                    "{}: {name}",
                    overlay.name
                );
            }
            // The job is the service's name, as compose's Prometheus names it.
            let job_label = text(selecting[0], &["spec", "jobLabel"]);
            assert_eq!(
                labels.get(job_label.as_str()).and_then(Value::as_str),
                Some(name.as_str()),
                "{}: {name}'s job label",
                overlay.name
            );
        }
    }
}

//! One test's world: a broker, databases of its own, and the services started on demand.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use shop_runtime::app::App;
use shop_runtime::config::{ServiceIdentity, ServiceSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::{Backend, Broker, Service, ServiceProcess};

/// The four consumer services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Inventory,
    Payment,
    Email,
    Analytics,
}

impl Consumer {
    pub const ALL: [Consumer; 4] = [
        Consumer::Inventory,
        Consumer::Payment,
        Consumer::Email,
        Consumer::Analytics,
    ];

    pub fn identity(self) -> ServiceIdentity {
        match self {
            Consumer::Inventory => inventory_service::IDENTITY,
            Consumer::Payment => payment_service::IDENTITY,
            Consumer::Email => email_service::IDENTITY,
            Consumer::Analytics => analytics_service::IDENTITY,
        }
    }
}

pub struct Stack {
    pub backend: Backend,
    pub broker: Broker,
    pub database: Database,
    /// Sets this test's databases apart from every other test's.
    pub prefix: String,
    pub mail_dir: tempfile::TempDir,
    /// Where service processes log.
    pub log_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Set for a secured stack ([`Stack::start_secure`]).
    pub secure: Option<Secured>,
}

/// What a secured stack's clients need: each principal's credentials, the CA the broker's
/// certificate is signed by, and PostgreSQL's certificate.
pub struct Secured {
    pub pki: crate::secure::Pki,
    pub credentials: crate::secure::Credentials,
    /// The certificate PostgreSQL serves, trusted as a root.
    pub postgres_root: std::path::PathBuf,
}

/// A service running in this process.
pub struct Running {
    pub name: String,
    pub port: u16,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(name: String, port: u16, run: impl FnOnce(CancellationToken) -> F) -> Running
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Running {
            name,
            port,
            shutdown,
            task,
        }
    }

    /// Graceful shutdown, as on SIGTERM: finish the event in hand, commit, leave the group.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 30 s", self.name));
        result
            .expect("service task panicked")
            .unwrap_or_else(|err| panic!("{} failed: {err:#}", self.name));
    }
}

impl Service for Running {
    fn name(&self) -> &str {
        &self.name
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Stack {
    pub async fn start() -> Stack {
        crate::init_logging();
        let backend = Backend::from_env();
        let (broker, database) = tokio::join!(Broker::start(backend), Database::start(backend));
        Stack::new(backend, broker, database, None)
    }

    /// A stack where everything is secured: a broker that speaks only TLS and admits only
    /// SCRAM-SHA-512 users, one per principal, each service connecting as its own; and
    /// PostgreSQL over TLS, verifying the server's certificate and host name. The topics are
    /// created by the admin: the services create none. Always the local Tansu broker and
    /// PostgreSQL, whatever `SHOP_E2E_BACKEND` says.
    pub async fn start_secure() -> Stack {
        crate::init_logging();
        let backend = Backend::Tansu;
        let pki = crate::secure::Pki::new("shop");
        let credentials = crate::secure::Credentials::new(&pki.ca);
        let broker = Broker::Tansu(crate::broker::Tansu::start_secure(
            pki.cert.clone(),
            pki.key.clone(),
            &credentials.users(),
        ));
        let database = Database::start(backend).await;
        let postgres_root = crate::secure::postgres_certificate(&database.server_url).await;
        let secured = Secured {
            pki,
            credentials,
            postgres_root,
        };
        let stack = Stack::new(backend, broker, database, Some(secured));
        let mut admin = stack.kafka();
        let secure = stack.secure.as_ref().expect("secured");
        admin.security = secure.credentials.security_as(
            shop_runtime::access::ADMIN,
            secure.credentials.password("admin"),
        );
        admin.create_topics = true;
        shop_runtime::kafka::ensure_topics(&admin, &shop_runtime::topics::EVERY)
            .await
            .expect("the admin creates the topics");
        stack
    }

    fn new(backend: Backend, broker: Broker, database: Database, secure: Option<Secured>) -> Stack {
        let prefix = format!("e2e_{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        tracing::info!(?backend, bootstrap = %broker.bootstrap_servers(), %prefix, "test stack started");
        Stack {
            backend,
            broker,
            database,
            prefix,
            mail_dir: tempfile::Builder::new()
                .prefix("shop-mail-")
                .tempdir()
                .expect("cannot create a mail dir"),
            log_dir: tempfile::Builder::new()
                .prefix("shop-logs-")
                .tempdir()
                .expect("cannot create a log dir"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("an HTTP client"),
            secure,
        }
    }

    pub fn settings(&self, identity: ServiceIdentity, instance: &str) -> ServiceSettings {
        let database = self
            .database
            .url(&format!("{}{}", self.prefix, identity.database));
        let mut settings = ServiceSettings::for_test(
            identity,
            &self.broker.bootstrap_servers(),
            &database,
            instance,
        );
        if let Some(secure) = &self.secure {
            let principal = shop_runtime::access::Principal::of_service(identity.name)
                .unwrap_or_else(|| panic!("{} is no principal", identity.name));
            settings.kafka.security = secure.credentials.security(&principal);
            settings.kafka.create_topics = false;
            settings.database_url = shop_runtime::secret::Secret::new(
                crate::secure::postgres_tls_url(&database, "localhost", &secure.postgres_root),
            );
        }
        settings
    }

    pub async fn start_order_service(&self) -> Running {
        self.start_order_service_with(|_| {}).await
    }

    /// Starts the Order Service after `configure` adjusted its settings.
    pub async fn start_order_service_with(
        &self,
        configure: impl FnOnce(&mut order_service::Settings),
    ) -> Running {
        let identity = order_service::IDENTITY;
        let mut settings = order_service::Settings::for_test(self.settings(identity, "order-1"));
        configure(&mut settings);
        let app = order_service::build(settings)
            .await
            .expect("order-service failed to start");
        Running::spawn(identity.name.to_owned(), app.port(), |stop| {
            app.run_until_stopped(stop)
        })
    }

    /// Starts the dashboard, placing its orders on `order_service`.
    pub async fn start_dashboard(&self, order_service: &impl Service) -> Running {
        let mut settings = dashboard::Settings::for_test(
            &self.broker.bootstrap_servers(),
            order_service.url("").trim_end_matches('/'),
            "dashboard-1",
        );
        if let Some(secure) = &self.secure {
            settings.kafka.security = secure
                .credentials
                .security(&shop_runtime::access::DASHBOARD);
            settings.kafka.create_topics = false;
        }
        let app = dashboard::build(settings)
            .await
            .expect("the dashboard failed to start");
        Running::spawn("dashboard".to_owned(), app.port(), |stop| {
            app.run_until_stopped(stop)
        })
    }

    /// Starts one instance of a consumer service in its default group.
    pub async fn start_consumer(&self, consumer: Consumer, instance: &str) -> Running {
        self.start_consumer_with(consumer, instance, |_| {}).await
    }

    /// Starts one instance after `configure` adjusted its settings (another group, another
    /// database).
    pub async fn start_consumer_with(
        &self,
        consumer: Consumer,
        instance: &str,
        configure: impl FnOnce(&mut ServiceSettings),
    ) -> Running {
        let mut settings = self.settings(consumer.identity(), instance);
        configure(&mut settings);
        let name = format!("{}[{instance}]", settings.name);
        match consumer {
            Consumer::Inventory => spawn_consumer(
                name,
                inventory_service::build(inventory_service::Settings::for_test(settings)).await,
            ),
            Consumer::Payment => spawn_consumer(
                name,
                payment_service::build(payment_service::Settings::for_test(settings)).await,
            ),
            Consumer::Email => {
                let settings = email_service::Settings {
                    service: settings,
                    smtp: None,
                    mail_dir: self.mail_dir.path().to_owned(),
                    mail_from: "Shop <shop@example.com>".to_owned(),
                };
                spawn_consumer(name, email_service::build(settings).await)
            }
            Consumer::Analytics => spawn_consumer(name, analytics_service::build(settings).await),
        }
    }

    /// Starts an email-service instance that sends through `smtp_url` instead of the mail dir.
    pub async fn start_email_via_smtp(&self, instance: &str, smtp_url: &str) -> Running {
        let settings = email_service::Settings {
            service: self.settings(email_service::IDENTITY, instance),
            smtp: Some(email_service::mailer::SmtpSettings::url(smtp_url)),
            mail_dir: self.mail_dir.path().to_owned(),
            mail_from: "Shop <shop@example.com>".to_owned(),
        };
        spawn_consumer(
            format!("email-service[{instance}]"),
            email_service::build(settings).await,
        )
    }

    /// An Order Service process, configured as for a test run; call `start` to run it.
    pub fn order_service_process(&self, instance: &str) -> ServiceProcess {
        let mut env = self.process_env(order_service::IDENTITY, instance);
        env.push(("OUTBOX_POLL_INTERVAL_MS".into(), "200".into()));
        self.process(order_service::IDENTITY, instance, env)
    }

    /// A consumer service process in its default group; call `start` to run it.
    pub fn consumer_process(&self, consumer: Consumer, instance: &str) -> ServiceProcess {
        let identity = consumer.identity();
        let mut env = self.process_env(identity, instance);
        if consumer == Consumer::Email {
            let mail_dir = self.mail_dir.path().display().to_string();
            env.push(("MAIL_DIR".into(), mail_dir));
        }
        self.process(identity, instance, env)
    }

    fn process_env(&self, identity: ServiceIdentity, instance: &str) -> Vec<(String, String)> {
        let database = self
            .database
            .url(&format!("{}{}", self.prefix, identity.database));
        let log_filter = std::env::var("SHOP_E2E_SERVICE_LOG")
            .unwrap_or_else(|_| "info,rdkafka=warn,sqlx=warn,tower_http=warn".into());
        let mut env = vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                self.broker.bootstrap_servers(),
            ),
            (
                "INSTANCE_ID".into(),
                format!("{}-{instance}", identity.name),
            ),
            ("RUST_LOG".into(), log_filter),
        ];
        match &self.secure {
            None => env.push(("DATABASE_URL".into(), database)),
            Some(secure) => {
                let principal = shop_runtime::access::Principal::of_service(identity.name)
                    .unwrap_or_else(|| panic!("{} is no principal", identity.name));
                env.extend(secure.credentials.env(&principal, self.log_dir.path()));
                env.push(("KAFKA_CREATE_TOPICS".into(), "false".into()));
                let url =
                    crate::secure::postgres_tls_url(&database, "localhost", &secure.postgres_root);
                env.push(("DATABASE_URL".into(), url));
            }
        }
        env
    }

    fn process(
        &self,
        identity: ServiceIdentity,
        instance: &str,
        env: Vec<(String, String)>,
    ) -> ServiceProcess {
        let name = format!("{}[{instance}]", identity.name);
        let log = self.log_dir.path().join(format!("{name}.log"));
        ServiceProcess::new(name, identity.name, env, log)
    }

    /// Kafka settings for a plain client of this test's broker (tools, raw producers).
    pub fn kafka(&self) -> shop_runtime::config::KafkaSettings {
        self.settings(order_service::IDENTITY, "test-client").kafka
    }

    /// Produces raw bytes straight to `orders`, bypassing the Order Service.
    pub async fn produce_raw(&self, key: &str, payload: &[u8]) {
        let producer =
            shop_runtime::kafka::EventProducer::connect(&self.kafka(), Duration::from_secs(10))
                .await
                .expect("a raw producer connects");
        let record = shop_runtime::kafka::OutgoingRecord {
            topic: shop_runtime::topics::ORDERS,
            key: key.as_bytes(),
            payload,
            headers: &[],
        };
        producer
            .send(record)
            .await
            .expect("the raw message is acknowledged");
    }

    /// Places an order and returns the stored order from the 201 response.
    pub async fn place_order(&self, order_service: &impl Service, body: &Value) -> Value {
        let response = self
            .http
            .post(order_service.url("/orders"))
            .json(body)
            .send()
            .await
            .expect("POST /orders failed to send");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "POST /orders answered {status}: {text}");
        serde_json::from_str(&text).expect("POST /orders returned JSON")
    }

    /// GETs a JSON document, or `None` while the service answers anything but 200.
    pub async fn get_json(&self, service: &impl Service, path: impl AsRef<str>) -> Option<Value> {
        let response = self
            .http
            .get(service.url(path.as_ref()))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// How many events an instance handled, by outcome, from its `/metrics`. Panics when the
    /// counter is not there: a renamed metric must fail the test, not read as zero.
    pub async fn events_handled(&self, service: &impl Service, outcome: &str) -> u64 {
        let metrics = self
            .http
            .get(service.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap();
        consumer_events(&metrics, outcome).unwrap_or_else(|| {
            panic!(
                "{}'s /metrics has no `shop_consumer_events_total{{outcome=\"{outcome}\"}}` \
                 line: was the metric or the outcome renamed?\n{metrics}",
                service.name()
            )
        })
    }

    /// Drops this test's databases.
    pub async fn finish(self) {
        self.database.drop_databases(&self.prefix).await;
    }
}

/// The value of `shop_consumer_events_total{outcome="<outcome>"}` in a scrape, if it is there.
fn consumer_events(metrics: &str, outcome: &str) -> Option<u64> {
    crate::sample(
        metrics,
        "shop_consumer_events_total",
        &[("outcome", outcome)],
    )
    .map(|count| count as u64)
}

/// Runs a consumer app built by the test itself (a handler of its own, say).
pub fn spawn_consumer(name: String, app: anyhow::Result<App>) -> Running {
    let app = app.unwrap_or_else(|err| panic!("{name} failed to start: {err:#}"));
    Running::spawn(name, app.port(), |stop| app.run_until_stopped(stop))
}

//! How every service is assembled and run: one [`App`] of an HTTP server and background
//! tasks, started together and stopped together, and one [`ServiceBuilder`] that makes the
//! [`App`] of a service with a consumer.
//!
//! A service built by [`ServiceBuilder`] has an [`EventConsumer`] for its handler, the
//! [`OutboxRelay`] that publishes what it stores, its [`Presence`] heartbeat, its API routes
//! beside the operational ones (`/healthz`, `/readyz`, `/metrics`, `/assignment`), and any
//! tasks of its own (the Order Service's saga time-out sweep), all in one metrics registry.
//! The dashboard, which has no consumer group and no database, is an [`App`] of its own
//! routes and tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceSettings;
use crate::health::Liveness;
use crate::http::{self, ConsumerInfo, OpsState};
use crate::kafka::{self, EventConsumer, Handler};
use crate::metrics::{ConsumerMetrics, HttpMetrics};
use crate::outbox::{OutboxRelay, RelayMetrics};
use crate::presence::Presence;

/// A part of a service that runs until the token it is given is cancelled.
type Task = Box<dyn FnOnce(CancellationToken) -> TaskFuture + Send>;
type TaskFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A running service's parts: an HTTP server and tasks, and, for a service with an outbox,
/// the relay and heartbeat that stop after everything else.
pub struct App {
    listener: TcpListener,
    router: Router,
    limits: http::ServerLimits,
    tasks: Vec<Task>,
    /// Stopped last, once the server and every task have: events stored until then still
    /// go out, and the heartbeat says `stopping` once the consumer has left its group.
    relay: Option<(OutboxRelay, Presence)>,
}

impl App {
    /// Serves `router` on `listener`, with nothing else yet.
    pub fn new(listener: TcpListener, router: Router, limits: http::ServerLimits) -> Self {
        App {
            listener,
            router,
            limits,
            tasks: Vec::new(),
            relay: None,
        }
    }

    /// Adds a task run beside the server until shutdown; when it ends, for any reason, the
    /// others are stopped too.
    pub fn task<F>(mut self, task: impl FnOnce(CancellationToken) -> F + Send + 'static) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// Runs until `shutdown` is cancelled or any part ends; a failure stops the others and is
    /// returned. The relay and heartbeat stop last.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let last_stop = CancellationToken::new();
        let server = stop_on_exit(
            &stop,
            http::serve(self.listener, self.router, self.limits, stop.clone()),
        );
        let tasks = futures::future::join_all(
            self.tasks
                .into_iter()
                .map(|task| stop_on_exit(&stop, task(stop.clone()))),
        );
        let first = async {
            let (server, tasks) = tokio::join!(server, tasks);
            last_stop.cancel();
            tasks.into_iter().fold(server, anyhow::Result::and)
        };
        let last = async {
            let Some((relay, presence)) = self.relay else {
                return Ok(());
            };
            let presence = presence.run(last_stop.clone());
            let relay = async {
                let result = relay.run(last_stop.clone()).await;
                stop.cancel();
                result
            };
            let (presence, relay) = tokio::join!(presence, relay);
            presence.and(relay)
        };
        let (first, last) = tokio::join!(first, last);
        first.and(last)
    }
}

/// What a service's routes and tasks may use of what the builder made.
#[derive(Clone)]
pub struct Wiring {
    pub pool: PgPool,
    /// Wakes the outbox relay: notify it after committing events to the outbox, so they go
    /// out at once rather than at the next poll.
    pub relay_wake: Arc<Notify>,
}

/// Builds the [`App`] of a service that consumes with `H`: see the module's documentation.
pub struct ServiceBuilder<'a, H> {
    settings: &'a ServiceSettings,
    pool: PgPool,
    handler: H,
    retry: crate::retry::Policy,
    registry: Registry,
    routes: Box<dyn FnOnce(&Wiring) -> Router + Send + 'a>,
    tasks: Vec<Box<dyn FnOnce(Wiring) -> Task + Send + 'a>>,
}

impl<'a, H: Handler> ServiceBuilder<'a, H> {
    /// A service consuming with `handler` on `pool`, with no API routes of its own yet.
    pub fn new(settings: &'a ServiceSettings, pool: PgPool, handler: H) -> Self {
        ServiceBuilder {
            settings,
            pool,
            handler,
            retry: crate::retry::transient(),
            registry: crate::metrics::service_registry(settings.name),
            routes: Box::new(|_| Router::new()),
            tasks: Vec::new(),
        }
    }

    /// How the consumer retries an event that fails for a passing reason before it parks it
    /// (by default [`crate::retry::transient`]).
    pub fn retry(mut self, retry: crate::retry::Policy) -> Self {
        self.retry = retry;
        self
    }

    /// Registers metrics of the service's own, under the `shop_` namespace of its registry.
    pub fn metrics(mut self, register: impl FnOnce(&mut Registry)) -> Self {
        register(
            self.registry
                .sub_registry_with_prefix(crate::metrics::NAMESPACE),
        );
        self
    }

    /// The service's API routes, served beside the operational ones and limited to
    /// `HTTP_MAX_IN_FLIGHT` at once.
    pub fn routes(mut self, routes: impl FnOnce(&Wiring) -> Router + Send + 'a) -> Self {
        self.routes = Box::new(routes);
        self
    }

    /// A task run beside the consumer and stopped with it, before the relay.
    pub fn task<F>(
        mut self,
        task: impl FnOnce(Wiring, CancellationToken) -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push(Box::new(move |wiring| {
            Box::new(move |stop| Box::pin(task(wiring, stop)))
        }));
        self
    }

    /// Creates the topics if needed, connects to Kafka and binds the HTTP port.
    pub async fn build(self) -> anyhow::Result<App> {
        let settings = self.settings;
        settings.validate().map_err(anyhow::Error::msg)?;
        kafka::ensure_topics(&settings.kafka, &H::PRINCIPAL.topics()).await?;
        let mut registry = self.registry;
        let shop = registry.sub_registry_with_prefix(crate::metrics::NAMESPACE);
        let metrics = ConsumerMetrics::register(shop);
        let shed = Counter::default();
        shop.register(
            "http_requests_shed",
            "Requests answered 503 because HTTP_MAX_IN_FLIGHT were already being handled",
            shed.clone(),
        );
        let relay_metrics = RelayMetrics::register(shop);
        let http_metrics = HttpMetrics::register(shop);
        let liveness = Liveness::new(settings.stuck_after);
        let producer =
            kafka::EventProducer::connect(&settings.kafka, settings.message_timeout).await?;
        let wiring = Wiring {
            pool: self.pool.clone(),
            relay_wake: Arc::new(Notify::new()),
        };
        let relay = OutboxRelay {
            pool: self.pool.clone(),
            producer: producer.clone(),
            wake: wiring.relay_wake.clone(),
            poll_interval: settings.outbox_poll_interval,
            metrics: relay_metrics.clone(),
            beat: Some(liveness.register("relay")),
        };
        let consumer = EventConsumer::connect(
            &settings.kafka,
            self.pool.clone(),
            self.handler,
            self.retry,
            metrics.clone(),
            wiring.relay_wake.clone(),
        )
        .await?
        .with_liveness(liveness.register("consumer"));
        let presence = Presence::of(&consumer, producer.clone(), settings, metrics);
        let ops = OpsState {
            pool: self.pool,
            registry: Arc::new(registry),
            consumer: Some(ConsumerInfo {
                group: settings.kafka.group_id.clone(),
                instance_id: settings.instance_id.clone(),
                assignment: consumer.assignment(),
            }),
            kafka: producer,
            liveness,
            outbox: relay_metrics,
        };
        let api = http::limit_in_flight((self.routes)(&wiring), settings.http_in_flight, shed);
        let router = http::observe(
            http::with_problem_fallbacks(api.merge(http::ops_router(ops))),
            http_metrics,
        );
        let listener = http::bind(settings.http_addr).await?;
        tracing::info!(service = settings.name, addr = %listener.local_addr()?, "listening");
        let mut app =
            App::new(listener, router, settings.http_limits).task(move |stop| consumer.run(stop));
        for task in self.tasks {
            app.tasks.push(task(wiring.clone()));
        }
        app.relay = Some((relay, presence));
        Ok(app)
    }
}

/// Runs `task`, then cancels `stop` however it ended, so its siblings wind down too.
pub async fn stop_on_exit<T>(stop: &CancellationToken, task: impl Future<Output = T>) -> T {
    let result = task.await;
    stop.cancel();
    result
}

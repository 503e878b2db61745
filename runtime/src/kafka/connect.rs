//! The first thing every Kafka client does: make sure it can talk to the cluster, and if it
//! cannot, say why in one line.
//!
//! librdkafka retries forever on its own, whatever the cause: a broker still starting, but
//! also a wrong password or a certificate it will never trust. Waiting is right for the
//! first and wrong for the others, which no retry can fix: a service would sit there looking
//! healthy. So the check watches librdkafka's errors while it waits and gives up at once on
//! an authentication or TLS failure, naming the cause.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::config::KafkaSettings;
use crate::retry::{self, Retryable};

/// Remembers what librdkafka reported while connecting: the last error, and the first one no
/// retry can fix (a later "all brokers down" must not hide why they are).
#[derive(Default)]
struct Watch {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
    hopeless: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        let seen = Some((code, reason.to_owned()));
        if is_hopeless(code) {
            let mut hopeless = self.hopeless.lock().expect("watch lock poisoned");
            if hopeless.is_none() {
                *hopeless = seen.clone();
            }
        }
        *self.last.lock().expect("watch lock poisoned") = seen;
    }
}

fn is_hopeless(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
    )
}

/// librdkafka's hint that a disconnect may be a protocol mismatch (a plaintext client at a
/// TLS listener, say). It adds it to any early disconnect, a broker restarting included, so
/// only a hint that keeps coming while nothing answers is taken as the cause.
fn is_protocol_hint(reason: &str) -> bool {
    reason.contains("security.protocol")
}

/// How many protocol hints, over how long, make a mismatch rather than a broker starting.
const PROTOCOL_HINTS: u32 = 3;
const PROTOCOL_HINT_WINDOW: Duration = Duration::from_secs(5);

impl ConsumerContext for Watch {}

/// A failure no retry will fix, described for the operator; `None` while waiting may help.
fn explain(settings: &KafkaSettings, code: RDKafkaErrorCode, reason: &str) -> Option<String> {
    let security = &settings.security;
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(format!(
                "Kafka refused to authenticate user {:?} with {}: {reason} (check \
                 KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)",
                security.username().unwrap_or(""),
                security.mechanism().unwrap_or("no SASL mechanism"),
            ))
        }
        RDKafkaErrorCode::SSL => Some(format!(
            "TLS with the Kafka broker failed: {reason} (check KAFKA_SSL_CA_LOCATION, and \
             that the broker's certificate names the host in KAFKA_BOOTSTRAP_SERVERS)"
        )),
        // A plaintext client at a TLS or SASL listener, or the other way round.
        _ if is_protocol_hint(reason) => Some(format!(
            "the Kafka broker does not speak KAFKA_SECURITY_PROTOCOL={}: {reason}",
            security.protocol()
        )),
        _ => None,
    }
}

/// Waits until a broker answers a metadata request, retrying ([`retry::startup`]) for at most
/// the start-up timeout; fails within seconds, with the cause, when the credentials or the
/// TLS set-up are wrong.
pub async fn check_connection(settings: &KafkaSettings) -> anyhow::Result<()> {
    let config = super::base_config(settings);
    let consumer: BaseConsumer<Watch> = {
        let watch = Watch::default();
        match config.create_with_context(watch) {
            Ok(consumer) => consumer,
            Err(_) => {
                // Built again through the one path that reports configuration errors
                // without secrets.
                let _: BaseConsumer = super::create(&config, "client")?;
                bail!("invalid Kafka client configuration");
            }
        }
    };
    let consumer = std::sync::Arc::new(consumer);
    let started = Instant::now();
    let hints = AtomicU32::new(0);
    let attempt = || async {
        let client = consumer.clone();
        let result = super::blocking(move || {
            let result = client.fetch_metadata(None, Timeout::After(Duration::from_secs(2)));
            // Errors reach the context only when the client is polled: wait a moment for
            // the first, then take any others queued.
            let mut timeout = Duration::from_millis(100);
            for _ in 0..100 {
                if client.poll(Timeout::After(timeout)).is_none() {
                    break;
                }
                timeout = Duration::ZERO;
            }
            result
        })
        .await;
        let error = match result {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => "the cluster reported no brokers".to_owned(),
            Err(err) => err.to_string(),
        };
        let watch = consumer.context();
        let seen = watch
            .hopeless
            .lock()
            .expect("watch lock poisoned")
            .take()
            .or_else(|| watch.last.lock().expect("watch lock poisoned").take());
        let Some((code, reason)) = seen else {
            return Err(Failure::NotYet(error));
        };
        if is_protocol_hint(&reason) {
            hints.fetch_add(1, Ordering::Relaxed);
        }
        let mismatch = hints.load(Ordering::Relaxed) >= PROTOCOL_HINTS
            && started.elapsed() >= PROTOCOL_HINT_WINDOW;
        if (is_hopeless(code) || mismatch)
            && let Some(problem) = explain(settings, code, &reason)
        {
            return Err(Failure::Hopeless(problem));
        }
        Err(Failure::NotYet(reason))
    };
    let connected = attempt
        .retry(retry::startup(settings.startup_timeout))
        .when(|failure| matches!(failure, Failure::NotYet(_)))
        .notify(|failure, backoff| {
            tracing::warn!(error = %failure, ?backoff, "Kafka not reachable yet, retrying");
        })
        .await;
    match connected {
        Ok(()) => Ok(()),
        Err(Failure::Hopeless(problem)) => bail!(
            "cannot connect to Kafka at {}: {problem}",
            settings.bootstrap_servers
        ),
        Err(Failure::NotYet(cause)) => bail!(
            "cannot reach Kafka at {}: {cause} (is the broker running? set \
             KAFKA_BOOTSTRAP_SERVERS)",
            settings.bootstrap_servers
        ),
    }
}

/// Why an attempt to reach the cluster failed.
#[derive(Debug)]
enum Failure {
    /// Waiting may help: the cause as librdkafka reported it.
    NotYet(String),
    /// No retry will fix it: what is wrong, for the operator.
    Hopeless(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotYet(cause) | Failure::Hopeless(cause) => f.write_str(cause),
        }
    }
}

//! Traces across Kafka: the W3C `traceparent` of whatever caused an event travels in the
//! event's headers, so the span that handles it continues the same trace.
//!
//! An event is caused either by an HTTP request (`POST /orders`: the request's span) or by an
//! event being handled (an answer, a decision: that event's span). [`OutboxMessage::of`]
//! records the cause when the event is stored, and the relay sends it as the `traceparent`
//! header. A consumer handles each event in a span whose parent is that header's context.
//!
//! A consumer applies a batch of events in one transaction, so "the span current when the
//! reply was stored" would be the batch's; the replies are keyed by order instead: while a
//! batch is applied, each order's reply is caused by the span of the event about that order.
//!
//! Spans are recorded (OpenTelemetry spans built, with their attributes, for the exporter)
//! only while [`recording`]: when `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector. Otherwise
//! nobody would read them, and building one per event costs a fifth of a consumer's
//! throughput (docs/benchmarks.md), so each hop only mints its span id and passes the trace on
//! ([`child_of`]): the ids in the headers are the same either way.
//!
//! [`OutboxMessage::of`]: crate::outbox::OutboxMessage::of

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

/// The header, as W3C Trace Context names it.
pub const TRACEPARENT: &str = shop_contract::envelope::headers::TRACEPARENT;

static RECORDING: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    /// While a consumer applies a batch: the `traceparent` of each order's event span.
    static CAUSES: HashMap<Uuid, String>;
    /// While a request is served and spans are not recorded: its `traceparent`.
    static REQUEST: String;
}

/// Whether spans are recorded for an exporter; set once, at start-up, by
/// [`crate::telemetry::init`] (and by tests that look at spans).
pub fn record_spans(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The `traceparent` of a hop that does not record its span: `parent`'s trace (when it is a
/// well-formed `traceparent`) or a new one, with a span id of its own.
pub fn child_of(parent: Option<&str>) -> String {
    let ids = RandomIdGenerator::default();
    let (trace_id, flags) = parent
        .and_then(parse)
        .unwrap_or_else(|| (ids.new_trace_id(), 1));
    format!("00-{trace_id}-{}-{flags:02x}", ids.new_span_id())
}

/// The trace id and flags of a version-00 `traceparent`.
fn parse(traceparent: &str) -> Option<(TraceId, u8)> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((trace_id, u8::from_str_radix(flags, 16).ok()?))
}

/// Runs `work` (serving a request whose spans are not recorded) with `traceparent` as the
/// cause of what it stores.
pub(crate) async fn with_request<F: Future>(traceparent: String, work: F) -> F::Output {
    REQUEST.scope(traceparent, work).await
}

/// `span`'s context as a `traceparent` value, if it has one (it does when the
/// OpenTelemetry layer is installed, whether or not anything is exported).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Makes `span` continue the trace `traceparent` names; a missing or malformed value leaves
/// it the root of a trace of its own.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then there is nothing to continue.
        let _ = span.set_parent(context);
    }
}

/// Runs `work` (a handler applying a batch) with each order's cause known.
pub(crate) async fn with_causes<F: Future>(causes: HashMap<Uuid, String>, work: F) -> F::Output {
    CAUSES.scope(causes, work).await
}

/// What caused an event about `order_id`: the span of the event about that order being
/// handled, else the request being served, else the current span (a sweep).
pub(crate) fn cause_of(order_id: Uuid) -> Option<String> {
    CAUSES
        .try_with(|causes| causes.get(&order_id).cloned())
        .ok()
        .flatten()
        .or_else(|| REQUEST.try_with(Clone::clone).ok())
        .or_else(|| traceparent_of(&Span::current()))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn with_tracing<T>(test: impl FnOnce() -> T) -> T {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, test)
    }

    #[test]
    fn a_span_continuing_a_traceparent_has_its_trace_id_and_a_span_id_of_its_own() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let outgoing = with_tracing(|| {
            let span = tracing::info_span!("handle");
            continue_trace(&span, Some(incoming));
            traceparent_of(&span).unwrap()
        });
        assert!(
            outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{outgoing}"
        );
        assert!(
            !outgoing.contains("00f067aa0ba902b7"),
            "a new span id: {outgoing}"
        );
    }

    #[test]
    fn an_unrecorded_hop_keeps_the_trace_and_mints_its_own_span_id() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let outgoing = child_of(Some(incoming));
        assert!(
            outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{outgoing}"
        );
        assert!(outgoing.ends_with("-01"), "{outgoing}");
        assert!(!outgoing.contains("00f067aa0ba902b7"), "{outgoing}");
        assert!(parse(&outgoing).is_some(), "{outgoing}");
        for malformed in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let fresh = child_of(Some(malformed));
            assert!(
                !fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{malformed}"
            );
            assert!(parse(&fresh).is_some(), "{fresh}");
        }
    }

    #[test]
    fn a_malformed_traceparent_starts_a_trace_of_its_own() {
        let outgoing = with_tracing(|| {
            let span = tracing::info_span!("handle");
            continue_trace(&span, Some("not-a-traceparent"));
            traceparent_of(&span).unwrap()
        });
        assert_eq!(outgoing.len(), 55, "{outgoing}");
    }
}

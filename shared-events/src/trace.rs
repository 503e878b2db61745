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
//! [`OutboxMessage::of`]: crate::outbox::OutboxMessage::of

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

/// The header, as W3C Trace Context names it.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// While a consumer applies a batch: the `traceparent` of each order's event span.
    static CAUSES: HashMap<Uuid, String>;
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
/// handled, else the current span (an HTTP request, a sweep).
pub(crate) fn cause_of(order_id: Uuid) -> Option<String> {
    CAUSES
        .try_with(|causes| causes.get(&order_id).cloned())
        .ok()
        .flatten()
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
    fn a_malformed_traceparent_starts_a_trace_of_its_own() {
        let outgoing = with_tracing(|| {
            let span = tracing::info_span!("handle");
            continue_trace(&span, Some("not-a-traceparent"));
            traceparent_of(&span).unwrap()
        });
        assert_eq!(outgoing.len(), 55, "{outgoing}");
    }
}

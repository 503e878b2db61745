-- Each event carries the W3C traceparent of the span that caused it, sent as a Kafka header
-- so that the consumers' spans continue the trace (shared_events::trace). NULL for events
-- stored before, or with no span to name.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;

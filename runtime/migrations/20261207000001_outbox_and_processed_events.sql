-- The two tables this crate writes to in every service's database: the outbox its relay
-- publishes (crate::outbox) and the ledger of events its consumer has handled
-- (crate::db::claim_events).
--
-- Up to release 2026-12 each service created them in its own migrations, so a database from
-- then has them already, with exactly this shape: hence IF NOT EXISTS throughout, and the
-- traceparent column added on its own for a database from before it existed.

-- Transactional outbox: written in the transaction of what it announces, published by the
-- relay, marked published only once the broker has acknowledged the event.
CREATE TABLE IF NOT EXISTS outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    message_key  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ,
    attempts     INT NOT NULL DEFAULT 0,
    last_error   TEXT,
    -- The W3C traceparent of the span that caused the event, sent as a Kafka header so that
    -- the consumers' spans continue the trace (crate::trace). NULL when there was no span.
    traceparent  TEXT
);
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent TEXT;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Events already handled, written in the same transaction as their effects.
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

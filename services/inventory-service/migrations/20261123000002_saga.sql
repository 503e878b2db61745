-- The saga: a cancelled order gets its reserved stock back ('released'), and a cancellation
-- that comes before its placement leaves a 'released' reservation without items (a
-- tombstone), so that the late placement finds its order already decided.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations
    ADD CONSTRAINT reservations_status_check
        CHECK (status IN ('reserved', 'rejected', 'released')),
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE reservations SET updated_at = created_at;

-- Replies (stock_reserved, stock_rejected, stock_released), stored in the transaction of the
-- decision they announce and published by the shared relay (shared_events::outbox).
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, topic TEXT NOT NULL,
    message_key TEXT NOT NULL, event_type TEXT NOT NULL, payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ,
    attempts INT NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

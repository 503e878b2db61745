-- The saga: an order is mailed once it is decided, a confirmation or a cancellation notice,
-- still one mail per order (order_id stays the key). The mails sent before the saga were
-- all confirmations.
ALTER TABLE emails
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'confirmation'
        CONSTRAINT emails_kind_check CHECK (kind IN ('confirmation', 'cancellation'));

-- GET /emails lists the newest first.
CREATE INDEX emails_newest ON emails (sent_at DESC);

-- Every service has an outbox, so every service publishes the same way once it has something
-- to announce (shared_events::outbox); this one publishes nothing yet.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, topic TEXT NOT NULL,
    message_key TEXT NOT NULL, event_type TEXT NOT NULL, payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ,
    attempts INT NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

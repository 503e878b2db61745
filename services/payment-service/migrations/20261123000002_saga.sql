-- The saga: a payment is authorized (or declined) when the order is placed, then captured
-- when the order is confirmed or voided when it is cancelled. `charges` becomes `payments`;
-- the charges taken before the saga were taken at once, so they are captured.
ALTER TABLE charges RENAME TO payments;
ALTER TABLE payments RENAME CONSTRAINT charges_pkey TO payments_pkey;
ALTER TABLE payments RENAME CONSTRAINT charges_amount_cents_check TO payments_amount_cents_check;
ALTER TABLE payments RENAME COLUMN charged_at TO created_at;
ALTER TABLE payments
    -- Why it was declined or voided.
    ADD COLUMN reason TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE payments SET status = 'captured', updated_at = created_at WHERE status = 'charged';
-- A cancellation that comes before its placement leaves a 'voided' row (a tombstone), so
-- that the late placement finds its order already decided.
ALTER TABLE payments
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('authorized', 'declined', 'captured', 'voided'));

-- GET /payments lists the newest first.
CREATE INDEX payments_newest ON payments (created_at DESC);

-- Replies (payment_authorized, payment_declined, payment_captured, payment_voided), stored in
-- the transaction of the step they announce and published by the shared relay
-- (shared_events::outbox).
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, topic TEXT NOT NULL,
    message_key TEXT NOT NULL, event_type TEXT NOT NULL, payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ,
    attempts INT NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

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

-- The outbox, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

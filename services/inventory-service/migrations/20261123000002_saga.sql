-- The saga: a cancelled order gets its reserved stock back ('released'), and a cancellation
-- that comes before its placement leaves a 'released' reservation without items (a
-- tombstone), so that the late placement finds its order already decided.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations
    ADD CONSTRAINT reservations_status_check
        CHECK (status IN ('reserved', 'rejected', 'released')),
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE reservations SET updated_at = created_at;

-- The outbox, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

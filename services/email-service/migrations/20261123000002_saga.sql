-- The saga: an order is mailed once it is decided, a confirmation or a cancellation notice,
-- still one mail per order (order_id stays the key). The mails sent before the saga were
-- all confirmations.
ALTER TABLE emails
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'confirmation'
        CONSTRAINT emails_kind_check CHECK (kind IN ('confirmation', 'cancellation'));

-- GET /emails lists the newest first.
CREATE INDEX emails_newest ON emails (sent_at DESC);

-- The outbox, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

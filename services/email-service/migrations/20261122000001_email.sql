-- processed_events, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

-- One confirmation per order.
CREATE TABLE emails (
    order_id   UUID PRIMARY KEY,
    event_id   UUID NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    transport  TEXT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

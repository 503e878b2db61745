-- processed_events, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

-- At most one charge per order: the primary key is the last line of defence against
-- charging a customer twice.
CREATE TABLE charges (
    order_id     UUID PRIMARY KEY,
    event_id     UUID NOT NULL,
    customer_id  TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    charged_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

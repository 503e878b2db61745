-- Events already handled, written in the same transaction as their effects.
CREATE TABLE processed_events (
    event_id     UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

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

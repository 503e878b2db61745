-- The saga: every order ends `confirmed` or `cancelled`, decided here from the answers of
-- Inventory (stock) and Payment, and every step is kept in the order's timeline.
ALTER TABLE orders
    ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    -- Inventory's answer, once it came: reserved or rejected.
    ADD COLUMN stock TEXT CHECK (stock IN ('reserved', 'rejected')),
    -- Payment's answer, once it came: authorized or declined.
    ADD COLUMN payment TEXT CHECK (payment IN ('authorized', 'declined')),
    -- Why the order was cancelled, in words fit for the customer.
    ADD COLUMN status_reason TEXT,
    ADD COLUMN decided_at TIMESTAMPTZ,
    ADD CONSTRAINT decided_orders_have_a_time
        CHECK ((status = 'pending') = (decided_at IS NULL));

-- Orders placed before the saga were taken, charged and mailed at once: they went through.
UPDATE orders SET status = 'confirmed', decided_at = created_at;

-- The time-out sweep reads the oldest undecided orders.
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending';

-- What happened to each order, in order: its placement, every answer, the decision, the
-- compensations. One row per order and event type, which also makes every step idempotent:
-- an answer repeated under a new event id changes nothing.
CREATE TABLE order_timeline (
    order_id   UUID NOT NULL REFERENCES orders (id),
    event_type TEXT NOT NULL,
    -- When it happened, as its event says.
    at         TIMESTAMPTZ NOT NULL,
    -- The reason, or the amount, when there is one.
    detail     TEXT,
    recorded   BIGSERIAL,
    PRIMARY KEY (order_id, event_type)
);

INSERT INTO order_timeline (order_id, event_type, at)
SELECT id, 'order_placed', created_at FROM orders;

-- processed_events, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

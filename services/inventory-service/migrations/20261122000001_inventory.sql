-- processed_events, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

-- Seeded from shared_events::catalog at start-up; never negative.
CREATE TABLE stock (
    sku        TEXT PRIMARY KEY,
    available  INT NOT NULL CHECK (available >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One decision per order: stock reserved, or the order rejected and why.
CREATE TABLE reservations (
    order_id   UUID PRIMARY KEY,
    event_id   UUID NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('reserved', 'rejected')),
    reason     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE reservation_items (
    order_id UUID NOT NULL REFERENCES reservations (order_id),
    sku      TEXT NOT NULL,
    quantity INT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

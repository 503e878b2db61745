-- The catalog the shop sells from; seeded from shared_events::catalog at start-up.
CREATE TABLE products (
    sku              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    currency         TEXT NOT NULL
);

CREATE TABLE orders (
    id             UUID PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    total_cents    BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE order_items (
    order_id         UUID NOT NULL REFERENCES orders (id),
    line_no          INT NOT NULL,
    sku              TEXT NOT NULL REFERENCES products (sku),
    quantity         INT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- The outbox, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

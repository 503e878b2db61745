-- processed_events, created here up to release 2026-12, is shop-runtime's (runtime/migrations).

-- Every order counted, once: the source the aggregates below are kept in step with.
CREATE TABLE counted_orders (
    order_id    UUID PRIMARY KEY,
    total_cents BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    counted_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Running totals, updated in the same transaction as counted_orders.
CREATE TABLE revenue (
    currency      TEXT PRIMARY KEY,
    orders        BIGINT NOT NULL,
    revenue_cents BIGINT NOT NULL
);

CREATE TABLE item_sales (
    sku           TEXT PRIMARY KEY,
    quantity      BIGINT NOT NULL,
    revenue_cents BIGINT NOT NULL,
    orders        BIGINT NOT NULL
);

-- Idempotency-Key of POST /orders: a retried request with the same key and body gets the
-- original order back instead of placing a second one.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    -- The request as the server understood it (canonical JSON), to detect a reused key.
    request      TEXT NOT NULL,
    order_id     UUID REFERENCES orders (id),
    claimed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);

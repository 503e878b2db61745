-- order_cancelled version 2 names its cause: cancelled orders are counted per cause too, in
-- the same transaction as the other totals. Those counted before, and any version 1 event
-- (which did not say), count as 'unknown'.
CREATE TABLE cancellation_causes (
    cause  TEXT PRIMARY KEY
        CHECK (cause IN ('stock_rejected', 'payment_declined', 'timed_out', 'unknown')),
    orders BIGINT NOT NULL
);
INSERT INTO cancellation_causes (cause, orders)
SELECT 'unknown', orders FROM order_counts WHERE kind = 'cancelled' AND orders > 0;

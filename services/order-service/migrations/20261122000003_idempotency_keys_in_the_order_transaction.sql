-- A key is now stored only together with the order it placed, in the order's transaction
-- (concurrent requests are kept apart by an advisory lock on the key instead of a claim
-- row). Claims that never completed belonged to requests that failed: forget them.
DELETE FROM idempotency_keys WHERE order_id IS NULL;
ALTER TABLE idempotency_keys
    ALTER COLUMN order_id SET NOT NULL,
    DROP COLUMN completed_at;
ALTER TABLE idempotency_keys RENAME COLUMN claimed_at TO created_at;

-- Keys are now stored together with the order they placed, in the order's own transaction, and
-- concurrent requests are kept apart by an advisory lock on the key instead of a claim row.
--
-- Expand only: during a rolling deploy, replicas of the previous release still write claim
-- rows (order_id NULL until their order is stored), so no column changes. The new code fills
-- every column and treats a claim without an order as in flight, or as abandoned after 30 s.
-- A later release can drop claimed_at/completed_at and make order_id NOT NULL.
--
-- Claims that never completed belonged to requests that failed before this release.
DELETE FROM idempotency_keys
WHERE order_id IS NULL AND claimed_at < now() - interval '30 seconds';

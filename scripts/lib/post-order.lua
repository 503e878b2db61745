-- wrk script for scripts/bench.sh step (g): POST /orders as fast as the connections allow,
-- with no Idempotency-Key and no back-off, as a crowd of impatient clients would.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_id":"crowd","customer_email":"crowd@example.com",'
  .. '"items":[{"sku":"KB-001","quantity":1}]}'

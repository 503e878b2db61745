-- GET /orders lists the newest orders first: read them off an index instead of sorting the
-- whole table on every request.
CREATE INDEX orders_newest_first ON orders (created_at DESC, id);

-- An erasure rewrites every event of the case in the outbox, sent or not (kit.outbox.rewrite_case_events:
-- `WHERE key = $1 ORDER BY id`), and intake finds its case.submitted by key: without an index each of those read the
-- whole outbox. The key is the case id; (key, id) also gives the rows in the order the erasure takes them.
-- A plain CREATE INDEX (migrations run in a transaction): writes to the outbox wait while it is built, a short while
-- once sent rows are purged (kit.retention), longer the first time on an outbox that has kept every row until now.
CREATE INDEX IF NOT EXISTS outbox_by_case ON outbox (key, id);

-- The access log's keyed chain (kit.access_log): each row names the scheme that hashed it. Rows written before are
-- a plain SHA-256 ('sha256', the default, also for a writer that does not name one); kit.access_log writes
-- 'hmac-sha256', an HMAC under a key kept outside the database. A 'sha256' row after a keyed one is a break. The
-- anchor keeps the scheme of the last purged row, so that rule holds across a purge.
ALTER TABLE access_log
    ADD COLUMN IF NOT EXISTS scheme text NOT NULL DEFAULT 'sha256' CHECK (scheme IN ('sha256', 'hmac-sha256'));
ALTER TABLE access_log_anchor
    ADD COLUMN IF NOT EXISTS scheme text NOT NULL DEFAULT 'sha256' CHECK (scheme IN ('sha256', 'hmac-sha256'));

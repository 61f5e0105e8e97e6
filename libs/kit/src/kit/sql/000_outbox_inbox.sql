-- Transactional outbox: a service writes its events here in the same transaction as its business rows.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    event_type  text        NOT NULL,
    payload     bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Inbox: every consumed event_id, recorded in the same transaction as its effects; a duplicate is skipped.
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

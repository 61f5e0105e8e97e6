-- The access log (PIPA safety measures, Art. 8): who read or changed whose data, when, from where, doing what.
-- In every service's schema; those that hold personal data write to it. Hash-chained by kit.access_log: each
-- row's hash covers its fields and the previous row's hash.
CREATE TABLE IF NOT EXISTS access_log (
    seq           bigint PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    role          text NOT NULL,
    client        text NOT NULL,
    action        text NOT NULL,
    case_id       uuid,
    referral_id   uuid,
    previous_hash text NOT NULL,
    hash          text NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_case ON access_log (case_id, seq);
CREATE INDEX IF NOT EXISTS access_log_actor ON access_log (actor, seq);

-- After a retention purge: the last removed row, which the remaining chain is verified from.
CREATE TABLE IF NOT EXISTS access_log_anchor (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq       bigint NOT NULL,
    hash      text NOT NULL,
    purged_at timestamptz NOT NULL
);

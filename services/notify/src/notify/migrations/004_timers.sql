-- Durable timers: each fires once, whichever notify replica claims it first (FOR UPDATE SKIP LOCKED),
-- and one that fell due while notify was down fires when it is back.
CREATE TABLE timers (
    id          bigserial PRIMARY KEY,
    referral_id uuid NOT NULL REFERENCES referrals (referral_id),
    kind        text NOT NULL,  -- reminder | deadline
    due_at      timestamptz NOT NULL,
    fired_at    timestamptz,
    outcome     text,           -- fired, or why it was skipped
    UNIQUE (referral_id, kind)
);
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

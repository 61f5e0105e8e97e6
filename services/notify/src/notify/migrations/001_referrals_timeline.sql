-- The current state of every referral (FHIR Task / Primero states).
CREATE TABLE referrals (
    referral_id      uuid PRIMARY KEY,
    case_id          uuid NOT NULL,
    agency_id        text NOT NULL,
    needs            text[] NOT NULL DEFAULT '{}',
    state            text NOT NULL,
    reason           text,
    state_changed_at timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referrals_by_case ON referrals (case_id);

-- Every event of a case, in the order it happened; details hold ids and codes, never personal data.
CREATE TABLE timeline (
    id          bigserial PRIMARY KEY,
    case_id     uuid NOT NULL,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    producer    text NOT NULL,
    referral_id uuid,
    agency_id   text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX timeline_by_case ON timeline (case_id, occurred_at, id);

-- Every delivery attempt, with the agency's answer, and the answer that ended the delivery.
CREATE TABLE delivery_attempts (
    id            bigserial PRIMARY KEY,
    referral_id   uuid NOT NULL,
    case_id       uuid NOT NULL,
    agency_id     text NOT NULL,
    channel       text NOT NULL,
    attempt       integer NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'transient_failure', 'permanent_failure')),
    agency_status integer,
    detail        text NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_by_case ON delivery_attempts (case_id);

ALTER TABLE deliveries ADD COLUMN agency_answer text;

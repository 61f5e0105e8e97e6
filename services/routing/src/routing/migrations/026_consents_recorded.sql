-- Consents given (or overrides recorded) after the case was submitted (intake's consent.recorded): where each
-- agency's consent stands now, newest kept. Every later routing of the case reads the case's consents through it, and
-- a pending need is tried again when one comes. Kept apart from the case's facts, as it may come before the case
-- (two topics); purged with them on erasure (an override's reason is staff's free text).
CREATE TABLE consents_recorded (
    case_id     uuid NOT NULL,
    agency_id   text NOT NULL,
    consent     jsonb NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);

-- The outcome of delivering each referral: what the agency answered, after how many attempts.
CREATE TABLE deliveries (
    referral_id   uuid PRIMARY KEY,
    case_id       uuid NOT NULL,
    agency_id     text NOT NULL,
    channel       text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    attempts      integer NOT NULL,
    agency_status integer,
    reason        text,
    finished_at   timestamptz NOT NULL
);
CREATE INDEX deliveries_by_case ON deliveries (case_id);

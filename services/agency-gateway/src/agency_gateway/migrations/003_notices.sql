-- notify's notices about referrals (reminders, cancellations) and how delivering each to its agency ended.
-- A failed notice never fails its referral; it is kept here and in the agency's DLQ.
CREATE TABLE notices (
    event_id      uuid PRIMARY KEY,
    referral_id   uuid NOT NULL,
    case_id       uuid NOT NULL,
    agency_id     text NOT NULL,
    notice_type   text NOT NULL,
    channel       text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    attempts      integer NOT NULL,
    agency_status integer,
    detail        text NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notices_by_case ON notices (case_id);
CREATE INDEX notices_by_referral ON notices (referral_id);

-- Consents the victim withdrew (intake's consent.withdrawn): scope `all` keeps the agency out of every later routing
-- of the case; scope `sensitive` leaves it a candidate, without the sensitive items. Kept apart from the case's
-- facts, as a withdrawal may come before the case itself (two topics).
CREATE TABLE consent_withdrawals (
    case_id      uuid NOT NULL,
    agency_id    text NOT NULL,
    scope        text NOT NULL CHECK (scope IN ('all', 'sensitive')),
    withdrawn_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, agency_id, scope)
);

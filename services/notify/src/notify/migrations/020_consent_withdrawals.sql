-- Consents the victim withdrew from an agency (intake's consent.withdrawn, scope all): the case's open referrals to
-- it are cancelled, also one notify learns of only afterwards (routing may have chosen the agency just before).
CREATE TABLE consent_withdrawals (
    case_id      uuid NOT NULL,
    agency_id    text NOT NULL,
    withdrawn_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);

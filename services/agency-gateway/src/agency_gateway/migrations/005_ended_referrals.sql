-- Referrals no longer open to their agency, learnt from referral.events: declined, completed or cancelled, or
-- replaced (routing gave their needs to another agency). A replaced or cancelled referral is never delivered
-- again, not even when an operator replays it from the DLQ; an agency fetches personal items only while its
-- referral is open (none of these).
CREATE TABLE ended_referrals (
    referral_id uuid PRIMARY KEY,
    case_id     uuid NOT NULL,
    why         text NOT NULL,  -- replaced | declined | completed | cancelled
    ended_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ended_referrals_by_case ON ended_referrals (case_id);

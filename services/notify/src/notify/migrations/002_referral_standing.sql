-- Which fact a referral's state comes from, so that any arrival order of the same facts ends in the same row,
-- and what the acknowledgement deadline has done to it.
ALTER TABLE referrals
    ADD COLUMN state_event_id uuid,
    ADD COLUMN outcome        text,
    ADD COLUMN requested_at   timestamptz,           -- routing requested it (case.routed): the deadline's clock starts
    ADD COLUMN ack_due_at     timestamptz,           -- the acknowledgement deadline
    ADD COLUMN reminded_at    timestamptz,           -- the agency was reminded
    ADD COLUMN overdue_at     timestamptz,           -- the deadline passed unanswered
    ADD COLUMN replaced_by    uuid[] NOT NULL DEFAULT '{}';  -- referrals routing made for its needs afterwards

CREATE INDEX referrals_needing_attention ON referrals (case_id)
    WHERE state IN ('declined', 'failed') OR overdue_at IS NOT NULL;

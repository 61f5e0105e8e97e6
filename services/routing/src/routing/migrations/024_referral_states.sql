-- The latest state of each referral routing made, from referral.events (the gateway's delivery or failure, an
-- agency's answer, a staff cancel), with a completion's outcome: what a stage's rule for advancing a case's plan
-- looks at. The state of highest rank is kept (schemas.vocab.REFERRAL_STATE_RANK), so the order the events arrive in
-- does not matter. A referral made before this column existed counts as requested until its next event.
ALTER TABLE referrals
    ADD COLUMN state   text NOT NULL DEFAULT 'requested',
    ADD COLUMN outcome text;

-- The caseworker following the case (id and e-mail), told by notify when a referral needs them.
-- The victim's contact rules travel inside `victim`, with the contact details they govern.
ALTER TABLE cases ADD COLUMN caseworker jsonb;

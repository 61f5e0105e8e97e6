-- notify keeps the victim's contact rules, never their address: intake gives it at each send (contacts.py), and it
-- lives only in memory for that send. A victim's notice row has no address, which the CHECK holds to.
ALTER TABLE cases DROP COLUMN IF EXISTS victim_address;
UPDATE notifications SET address = NULL WHERE recipient = 'victim';
ALTER TABLE notifications
    ADD CONSTRAINT victim_notices_keep_no_address CHECK (recipient <> 'victim' OR address IS NULL);

-- Parked acknowledgements by case, so that an erasure finds them.
ALTER TABLE pending_acks ADD COLUMN case_id uuid;
UPDATE pending_acks SET case_id = (convert_from(payload, 'UTF8')::jsonb ->> 'case_id')::uuid;
CREATE INDEX pending_acks_by_case ON pending_acks (case_id);

-- Acknowledgements from an agency's Kafka topic about a referral notify does not know yet (its case.routed is
-- still on its way): kept, and applied by the rules of the acknowledgement API once the referral appears.
CREATE TABLE pending_acks (
    event_id    uuid PRIMARY KEY,
    referral_id uuid NOT NULL,
    agency_id   text NOT NULL,
    payload     bytea NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_acks_by_referral ON pending_acks (referral_id);

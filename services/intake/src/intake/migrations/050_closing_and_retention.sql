-- Closing a case (a caseworker, with a reason code) starts the centre's retention period; when it ends the case's
-- personal data is destroyed as on an erasure, by a durable timer: this column, read by every intake replica with
-- FOR UPDATE SKIP LOCKED, so a restart in between only delays it until intake is back.
ALTER TABLE cases
    ADD COLUMN closed_at       timestamptz,
    ADD COLUMN closed_reason   text,
    ADD COLUMN closed_by       text,
    ADD COLUMN retention_until timestamptz,
    ADD COLUMN erasure_cause   text CHECK (erasure_cause IN ('requested', 'retention_ended'));
UPDATE cases SET erasure_cause = 'requested' WHERE erased_at IS NOT NULL;
CREATE INDEX cases_retention_due ON cases (retention_until) WHERE erased_at IS NULL AND retention_until IS NOT NULL;

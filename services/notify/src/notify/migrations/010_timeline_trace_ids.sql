-- The trace and span each timeline entry was recorded in, so ops can go from a case's flow to its trace.
ALTER TABLE timeline ADD COLUMN IF NOT EXISTS trace_id text;
ALTER TABLE timeline ADD COLUMN IF NOT EXISTS span_id text;
CREATE INDEX IF NOT EXISTS timeline_by_referral ON timeline (referral_id, id) WHERE referral_id IS NOT NULL;

-- A staged case's plan as routing last published it (case.plan): shown on the case's status with each stage's
-- referrals and the time spent in it.
CREATE TABLE case_plans (
    case_id    uuid PRIMARY KEY,
    stages     jsonb NOT NULL,
    changed_at timestamptz NOT NULL
);

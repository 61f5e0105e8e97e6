-- A staged case's plan (its needs in the centre's stages, each waiting, under way or done, with when): made when the
-- case is routed, changed by a caseworker advancing it or moving needs between stages that have not started.
CREATE TABLE case_plans (
    case_id    uuid PRIMARY KEY,
    stages     jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);

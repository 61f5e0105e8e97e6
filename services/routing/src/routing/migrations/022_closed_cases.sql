-- Cases a caseworker closed (intake's case.closed): routing looks for no agency for them any more — their pending
-- needs are dropped, and a re-routing request that comes after the closing is ignored.
CREATE TABLE closed_cases (
    case_id   uuid PRIMARY KEY,
    closed_at timestamptz NOT NULL
);

-- One routing decision per case, with the explanation of every choice and skip.
CREATE TABLE decisions (
    case_id         uuid PRIMARY KEY,
    decided_at      timestamptz NOT NULL,
    decisions       jsonb NOT NULL,
    uncovered_needs text[] NOT NULL
);

CREATE TABLE referrals (
    referral_id uuid PRIMARY KEY,
    case_id     uuid NOT NULL REFERENCES decisions (case_id),
    agency_id   text NOT NULL,
    needs       text[] NOT NULL,
    UNIQUE (case_id, agency_id)
);

-- The case as routing received it (consents included), so that re-routing can refer its unmet needs.
CREATE TABLE cases (
    case_id     uuid PRIMARY KEY,
    received_at timestamptz NOT NULL,
    details     jsonb NOT NULL
);

-- When each referral was made, and which ended referral it replaces (re-routing).
ALTER TABLE referrals
    ADD COLUMN routed_at     timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN rerouted_from uuid;

-- One re-routing per ended referral, with its own explanation; the agency never gets the case again.
CREATE TABLE reroutings (
    rerouted_from   uuid PRIMARY KEY,
    case_id         uuid NOT NULL REFERENCES decisions (case_id),
    agency_id       text NOT NULL,
    cause           text NOT NULL,
    needs           text[] NOT NULL,
    decided_at      timestamptz NOT NULL,
    decisions       jsonb NOT NULL,
    uncovered_needs text[] NOT NULL
);
CREATE INDEX reroutings_by_case ON reroutings (case_id);

-- Places an agency reported free; each referral routing makes afterwards takes one, until the next report.
CREATE TABLE agency_capacity (
    agency_id   text PRIMARY KEY,
    reported    integer NOT NULL CHECK (reported >= 0),
    remaining   integer NOT NULL CHECK (remaining >= 0),
    reported_at timestamptz NOT NULL
);

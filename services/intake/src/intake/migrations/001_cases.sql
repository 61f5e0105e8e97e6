CREATE TABLE cases (
    case_id         uuid PRIMARY KEY,
    submitted_at    timestamptz NOT NULL,
    idempotency_key text UNIQUE,
    request_hash    text NOT NULL,
    crime_type      text NOT NULL,
    urgency         text NOT NULL,
    needs           text[] NOT NULL,
    region          text NOT NULL,
    language        text NOT NULL,
    intake_channel  text NOT NULL,
    -- Personal data, kept whole as submitted (encryption at rest: issue #8).
    victim          jsonb NOT NULL,
    summary         text
);

-- One consent decision per case and receiving agency (PIPA Art. 17), the sensitive-data consent beside it (Art. 23).
CREATE TABLE consents (
    case_id           uuid NOT NULL REFERENCES cases (case_id),
    agency_id         text NOT NULL,
    granted           boolean NOT NULL,
    sensitive_granted boolean NOT NULL,
    recorded_at       timestamptz NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);

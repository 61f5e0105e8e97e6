-- Needs routing could not give to any agency yet (case.routed's uncovered_needs): they keep the case on the
-- needing-attention list until an agency takes them (a later case.routed) or a caseworker closes them (need.closed).
CREATE TABLE pending_needs (
    case_id uuid NOT NULL,
    need    text NOT NULL,
    since   timestamptz NOT NULL,
    PRIMARY KEY (case_id, need)
);

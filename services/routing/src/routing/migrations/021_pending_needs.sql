-- Needs no agency could take when the case was routed (none open for a time-critical need, every candidate full,
-- none in the region, no consent): held open with why, retried on a timer and when an agency reports capacity, until
-- an agency takes them or a caseworker closes them (need.closed). A row holds no personal data.
CREATE TABLE pending_needs (
    case_id       uuid NOT NULL,
    need          text NOT NULL,
    reason        text NOT NULL,
    since         timestamptz NOT NULL,
    last_tried_at timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 1,
    PRIMARY KEY (case_id, need)
);
CREATE INDEX pending_needs_by_last_try ON pending_needs (last_tried_at);

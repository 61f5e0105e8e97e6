-- Follow-up tasks: a completed referral opens one for the case's caseworker (check with the victim, within their
-- contact rules; a review on file when they must not be contacted). A not_successful completion proposes re-routing
-- the referral's needs, which the caseworker accepts (closing `rerouted`) or declines (any other closing). Ids and
-- codes only: nothing personal beyond what the case's status shows.
CREATE TABLE follow_ups (
    task_id       uuid PRIMARY KEY,
    case_id       uuid NOT NULL,
    referral_id   uuid NOT NULL UNIQUE,  -- one task per completed referral
    agency_id     text NOT NULL,
    needs         text[] NOT NULL,
    outcome       text NOT NULL,         -- the completion's: successful, not_successful
    reason        text,                  -- a not_successful completion's reason
    caseworker_id text,                  -- the case's caseworker when the task was opened
    kind          text NOT NULL,         -- check_with_victim, review_without_contact
    no_contact    text,                  -- why not a contact task: do_not_contact, no_safe_channel
    due_at        timestamptz NOT NULL,  -- inside the victim's safe hours for a contact task
    proposal      text,                  -- reroute, for a not_successful completion
    opened_at     timestamptz NOT NULL,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
    closed_at     timestamptz,
    closed_by     text,                  -- the staff member's credential (or who closed the case)
    closing       text                   -- the follow-up outcome code
);
CREATE INDEX follow_ups_open ON follow_ups (due_at) WHERE state = 'open';
CREATE INDEX follow_ups_by_case ON follow_ups (case_id);

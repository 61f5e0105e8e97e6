-- What notify needs of each case: its urgency (for deadlines), its caseworker, and the victim's contact rules.
-- Of the victim's contact details only the safe channel's address is kept, and none when they are not to be contacted.
CREATE TABLE cases (
    case_id               uuid PRIMARY KEY,
    urgency               text NOT NULL,
    caseworker_id         text,
    caseworker_email      text,
    victim_do_not_contact boolean NOT NULL DEFAULT false,
    victim_channel        text,
    victim_address        text,
    victim_safe_hours     jsonb,
    submitted_at          timestamptz NOT NULL
);

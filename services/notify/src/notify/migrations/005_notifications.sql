-- Messages to caseworkers and victims, queued in the transaction that decided them and sent by a loop.
-- `address` is personal data for victims; it is NULL for a message deliberately withheld (`withheld` says why).
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    dedupe_key      text NOT NULL UNIQUE,  -- the event and the recipient: a replayed event queues nothing new
    case_id         uuid NOT NULL,
    referral_id     uuid,
    news            text NOT NULL,
    recipient       text NOT NULL,         -- caseworker | victim
    channel         text NOT NULL,         -- email | sms
    address         text,
    subject         text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL,         -- pending | sent | failed | undeliverable | withheld
    withheld        text,
    not_before      timestamptz NOT NULL,  -- a victim's safe hours
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_by_case ON notifications (case_id);

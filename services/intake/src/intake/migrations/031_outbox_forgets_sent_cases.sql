-- A sent case.submitted keeps no personal data in intake's outbox (issue #8): once the relay marks it sent, its
-- payload is cut down to a marker, so the cases table (encrypted) stays intake's only copy of the case.
-- A sent row is never published again (the relay reads only unsent rows), so nothing needs the payload after.
CREATE FUNCTION outbox_forget_sent_case() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := convert_to(
        jsonb_build_object('type', NEW.event_type, 'case_id', NEW.key, 'payload_removed_when_sent', true)::text, 'UTF8'
    );
    RETURN NEW;
END
$$;

CREATE TRIGGER outbox_forget_sent_case
    BEFORE UPDATE OF sent_at ON outbox
    FOR EACH ROW
    WHEN (OLD.sent_at IS NULL AND NEW.sent_at IS NOT NULL AND NEW.event_type = 'case.submitted')
    EXECUTE FUNCTION outbox_forget_sent_case();

-- Cases sent before this migration.
UPDATE outbox
SET payload = convert_to(
    jsonb_build_object('type', event_type, 'case_id', key, 'payload_removed_when_sent', true)::text, 'UTF8'
)
WHERE event_type = 'case.submitted' AND sent_at IS NOT NULL;

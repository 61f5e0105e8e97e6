-- The consent ledger (issue #8, PIPA Art. 17, 18(2), 23, 37): every consent given or refused per case and receiving
-- agency with the notice items the victim was shown, every withdrawal and every override, as a row appended and
-- never changed. The current state is derived from the rows in order (intake.consent_ledger).
CREATE TABLE consent_ledger (
    id                bigserial PRIMARY KEY,
    case_id           uuid NOT NULL REFERENCES cases (case_id),
    agency_id         text NOT NULL,
    action            text NOT NULL CHECK (action IN ('grant', 'withdraw', 'override')),
    recorded_by       text NOT NULL,                -- the credential that recorded it (`caseworker:cw-17`)
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    granted           boolean,                      -- grant: consent to provide the data (Art. 17)
    sensitive_granted boolean,                      -- grant: the separate consent for sensitive items (Art. 23)
    notice            jsonb,                        -- grant: recipient, purpose, items, retention, right to refuse
    scope             text CHECK (scope IN ('all', 'sensitive')),  -- withdraw
    legal_basis       text,                         -- override (Art. 18(2))
    decided_by        text,                         -- override: who decided it
    reason            text,                         -- override; blanked when the case is erased
    CHECK ((action = 'grant') = (granted IS NOT NULL AND sensitive_granted IS NOT NULL)),
    CHECK ((action = 'withdraw') = (scope IS NOT NULL)),
    CHECK ((action = 'override') = (legal_basis IS NOT NULL AND decided_by IS NOT NULL))
);
CREATE INDEX consent_ledger_by_case ON consent_ledger (case_id, id);

-- Append-only: no row changes or goes, except that erasing the case blanks an override's free-text reason, which may
-- describe the victim. The rest (who allowed which agency what, when, on which basis) stays as the record of it.
-- Both functions keep the schema they were made in: they also run for a session with another search_path.
CREATE FUNCTION consent_ledger_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.reason IS NULL
        AND to_jsonb(NEW) - 'reason' = to_jsonb(OLD) - 'reason'
        AND EXISTS (SELECT 1 FROM cases WHERE case_id = OLD.case_id AND erased_at IS NOT NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the consent ledger is append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER consent_ledger_append_only
    BEFORE UPDATE OR DELETE ON consent_ledger
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_append_only();

CREATE FUNCTION consent_ledger_forget_reasons() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE consent_ledger SET reason = NULL WHERE case_id = NEW.case_id AND reason IS NOT NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER consent_ledger_forget_reasons
    AFTER UPDATE OF erased_at ON cases
    FOR EACH ROW
    WHEN (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION consent_ledger_forget_reasons();

-- Consents recorded with cases before the ledger: their notice was not kept.
INSERT INTO consent_ledger (case_id, agency_id, action, recorded_by, recorded_at, granted, sensitive_granted)
SELECT case_id, agency_id, 'grant', 'recorded-before-the-ledger', recorded_at, granted, sensitive_granted
FROM consents
ORDER BY recorded_at, case_id, agency_id;

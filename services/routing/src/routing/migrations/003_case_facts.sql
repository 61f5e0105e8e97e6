-- Routing keeps a case's facts, never the victim's personal data (it stays encrypted in intake): cases stored
-- before case.submitted v2 lose their victim and summary here, keeping the contact rules and which items exist.
UPDATE cases
SET details = (details - 'victim' - 'summary')
    || jsonb_build_object(
        'contact_rules', details -> 'victim' -> 'contact_rules',
        'personal_items', to_jsonb(array_remove(ARRAY[
            CASE WHEN details -> 'victim' ->> 'name' IS NOT NULL THEN 'victim.name' END,
            CASE WHEN details -> 'victim' ->> 'phone' IS NOT NULL THEN 'victim.phone' END,
            CASE WHEN details -> 'victim' ->> 'email' IS NOT NULL THEN 'victim.email' END,
            CASE WHEN details ->> 'summary' IS NOT NULL THEN 'summary' END
        ], NULL))
    )
WHERE details ? 'victim';

-- Cases erased on request (case.erased), in every service's schema: the service purged what it held of each, and
-- keeps nothing personal from events about it that come later (kit/erasure.py).
CREATE TABLE erased_cases (
    case_id    uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now()
);

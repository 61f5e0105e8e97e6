"""A synthetic case (no real person's details), shared by the tests, the benchmark and the fault-injection load."""

import copy
from typing import Any

# Three needs and three consents: routing sends it to exactly these three agencies.
SAMPLE_AGENCIES = ("police", "legal-aid", "employment-center")

_SAMPLE_CASE: dict[str, Any] = {
    "crime_type": "violent_crime",
    "needs": ["safety", "legal", "employment"],
    "urgency": "high",
    "region": "seoul",
    "language": "ko",
    "intake_channel": "visit",
    "victim": {"name": "Kim Example", "phone": "+82 10-0000-0000", "email": "victim@example.org"},
    "consents": [
        {"agency_id": "police", "granted": True, "sensitive_granted": True},
        {"agency_id": "legal-aid", "granted": True, "sensitive_granted": False},
        {"agency_id": "employment-center", "granted": True, "sensitive_granted": False},
    ],
    "summary": "Assaulted near home; fears the offender knows the address.",
}


def sample_case_json(**overrides: Any) -> dict[str, Any]:
    """The sample case as `POST /cases` takes it (a fresh copy), with top-level fields replaced by `overrides`."""
    case = copy.deepcopy(_SAMPLE_CASE)
    case.update(overrides)
    return case

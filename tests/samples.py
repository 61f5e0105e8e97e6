"""Synthetic sample data for tests: no real person's details."""

from typing import Any

from schemas.events import CaseDetails


def sample_case_json(**overrides: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
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
    case.update(overrides)
    return case


def sample_case(**overrides: Any) -> CaseDetails:
    return CaseDetails.model_validate(sample_case_json(**overrides))

"""Synthetic sample data for tests: no real person's details."""

from typing import Any

from schemas.events import CaseDetails
from schemas.examples import sample_case_json

__all__ = ["sample_case", "sample_case_json"]


def sample_case(**overrides: Any) -> CaseDetails:
    return CaseDetails.model_validate(sample_case_json(**overrides))

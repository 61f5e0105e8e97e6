"""Property-based fuzzing of intake's and notify's OpenAPI on the real stack (schemathesis): every operation with
valid and with deliberately invalid requests, as the role that may call it. No answer is a server error; every
refusal is a 4xx `application/problem+json`; invalid input is always refused with a 4xx."""

from collections import Counter
from typing import Any
from uuid import uuid4

import httpx
import pytest
import schemathesis
from devstack.stack import Stack
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from kit.auth import Role, issue_token
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Examples per operation and mode: intake has 6 operations, notify 14: up to 20 × 2 × 40 requests, about 1300 as
# some operations have fewer distinct cases.
EXAMPLES = 40
AT_LEAST = 1000
SERVICES = ("intake", "notify")
AGENCY_ANSWERS = ("/accept", "/decline", "/start", "/complete")

sent: Counter[str] = Counter()


def caller_for(stack: Stack, path: str, method: str) -> dict[str, str]:
    """The role that may call the operation, with a credential of its own (its own rate-limit budget)."""
    if path.startswith("/access-log"):
        role, agency = Role.auditor, None
    elif method == "POST" and path.endswith(AGENCY_ANSWERS):
        role, agency = Role.agency, "police"
    else:
        role, agency = Role.supervisor, None  # staff who may do everything staff may (erasure too)
    subject = f"fuzz-{uuid4().hex[:8]}"
    return {"authorization": f"Bearer {issue_token(stack.env['AUTH_SECRET'], role, subject, agency=agency)}"}


def check(response: Any, what: str) -> None:
    """Beyond schemathesis's checks: every refusal is a problem document."""
    status = response.status_code
    assert status < 500, f"{what}: server error {status}"
    if status >= 400:
        content_type = response.headers.get("content-type")  # schemathesis gives each header as a list
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type == "application/problem+json", f"{what}: {status} not a problem"


def fuzzer(operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], service: str) -> Any:
    """One operation in one mode: `EXAMPLES` generated requests, each checked."""
    what = f"{service} {operation.method.upper()} {operation.path} ({mode.value})"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        # schemathesis's own checks: no 5xx, and (for invalid input it generated) a 4xx — it knows which parts of
        # a request it made invalid, and that an extra header or query parameter is not.
        response = case.call_and_validate(
            base_url=base_url, headers=headers, timeout=30, checks=[not_a_server_error, negative_data_rejection]
        )
        sent[service] += 1
        check(response, what)

    return fuzz


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_request_gets_a_server_error_and_invalid_input_is_refused(stack: Stack, service: str) -> None:
    base_url = stack.url(service)
    # The bearer token is this test's to give (tests/e2e/test_security_http.py tries bad ones): without the schema's
    # security scheme, schemathesis does not count a request it sent "without" the token as invalid input.
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    spec.get("components", {}).pop("securitySchemes", None)
    for path in spec["paths"].values():
        for operation in path.values():
            operation.pop("security", None)
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        headers = caller_for(stack, operation.path, operation.method.upper())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzer(operation, mode, base_url, headers, service)()
            except Unsatisfiable:
                # Nothing in the operation can be made invalid (no parameters, no body): nothing to send.
                assert mode is GenerationMode.NEGATIVE, f"{operation.path}: no valid request could be generated"


def test_the_fuzzers_sent_at_least_a_thousand_requests() -> None:
    """After the two above (pytest runs a file top to bottom)."""
    assert sum(sent.values()) >= AT_LEAST, dict(sent)

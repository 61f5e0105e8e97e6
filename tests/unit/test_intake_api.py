"""Intake rejects bad input with RFC 9457 problem details naming the fields, never echoing what was sent."""

import json

import pytest
from fastapi.testclient import TestClient
from intake.main import create_app
from intake.settings import IntakeSettings
from kit.auth import Role, issue_token

from tests.fakes import without_database
from tests.samples import sample_case_json

SECRET = "unit-test-signing-secret-of-32-bytes!"


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Not entered as a context manager: no lifespan, so no database is touched and validation is all that runs.
    staff = {"authorization": f"Bearer {issue_token(SECRET, Role.caseworker, 'cw-1')}"}
    app = without_database(create_app(IntakeSettings(auth_secret=SECRET)))
    return TestClient(app, raise_server_exceptions=False, headers=staff)


def test_malformed_json_gets_422_problem_json(client: TestClient) -> None:
    answer = client.post(
        "/cases", content=b'{"crime_type": "stalking", "needs": [', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid request"
    assert problem["errors"][0]["type"] == "json_invalid"


def test_invalid_fields_are_listed_by_path_without_their_values(client: TestClient) -> None:
    body = sample_case_json(urgency="whenever", needs=["safety", "tarot"])
    body["victim"]["phone"] = "CALL-ME-SECRET"
    body["consents"][0]["agency_id"] = "Not An Agency!"
    answer = client.post("/cases", json=body)
    assert answer.status_code == 422
    problem = answer.json()
    paths = {e["loc"] for e in problem["errors"]}
    assert paths == {"body.urgency", "body.needs.1", "body.victim.phone", "body.consents.0.agency_id"}
    text = json.dumps(problem)
    for sent in ("whenever", "tarot", "CALL-ME-SECRET", "Not An Agency!"):
        assert sent not in text


def test_a_missing_field_and_a_duplicate_need_are_reported(client: TestClient) -> None:
    body = sample_case_json(needs=["legal", "legal"])
    del body["victim"]
    answer = client.post("/cases", json=body)
    assert answer.status_code == 422
    assert {e["loc"] for e in answer.json()["errors"]} == {"body.victim", "body.needs"}


def test_an_unknown_case_id_format_is_422_not_500(client: TestClient) -> None:
    answer = client.get("/cases/not-a-uuid")
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == "path.case_id"


def test_the_batch_disclosure_is_for_the_gateway_only_and_names_each_referral_once(client: TestClient) -> None:
    url = "/cases/00000000-0000-4000-8000-000000000001/disclosures/batch"
    one = {"referral_id": "00000000-0000-4000-8000-000000000002", "agency_id": "police", "items": ["victim.name"]}
    as_notify = {"authorization": f"Bearer {issue_token(SECRET, Role.service, 'notify')}"}
    refused = client.post(url, json={"version": 1, "referrals": [one]}, headers=as_notify)
    assert refused.status_code == 403 and refused.json()["title"] == "Forbidden"
    as_gateway = {"authorization": f"Bearer {issue_token(SECRET, Role.service, 'agency-gateway')}"}
    for body in ({"referrals": [one, one]}, {"version": 2, "referrals": [one]}, {"referrals": []}):
        assert client.post(url, json=body, headers=as_gateway).status_code == 422, body
    assert client.post(url, json={"version": 1, "referrals": [one]}).status_code == 403, "staff are not the gateway"

"""The acknowledgement API rejects malformed answers with problem details naming the fields, never echoing them."""

from collections.abc import Iterator
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from kit.auth import Role, issue_token
from notify.main import create_app
from notify.settings import NotifySettings

from tests.fakes import without_database

SECRET = "unit-test-signing-secret-of-32-bytes!"
POLICE = {"authorization": f"Bearer {issue_token(SECRET, Role.agency, 'police', agency='police')}"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:9")
        app = without_database(create_app(NotifySettings(auth_secret=SECRET)))
    # Not entered as a context manager: no lifespan, so no database is touched and validation is all that runs.
    staff = {"authorization": f"Bearer {issue_token(SECRET, Role.caseworker, 'cw-1')}"}
    yield TestClient(app, raise_server_exceptions=False, headers=staff)


def test_every_state_change_has_a_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for action in ("accept", "decline", "start", "complete", "cancel"):
        assert "post" in paths[f"/referrals/{{referral_id}}/{action}"]
    for read in ("/cases/{case_id}/status", "/cases/needing-attention", "/cases/{case_id}/notifications"):
        assert "get" in paths[read]


@pytest.mark.parametrize(
    "body",
    [
        {"agency_id": "police", "outcome": "not_successful"},
        {"agency_id": "police", "outcome": "successful", "reason": "lack_of_capacity"},
    ],
)
def test_a_completion_needs_a_reason_exactly_when_it_was_not_successful(
    client: TestClient, body: dict[str, str]
) -> None:
    answer = client.post(f"/referrals/{uuid4()}/complete", json=body, headers=POLICE)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in answer.json()["errors"]] == ["body"]


def test_bad_values_are_named_by_path_and_never_echoed(client: TestClient) -> None:
    answer = client.post(f"/referrals/{uuid4()}/cancel", json={"reason": "SECRET-REASON", "agency_id": "police"})
    assert answer.status_code == 422
    assert {e["loc"] for e in answer.json()["errors"]} == {"body.reason", "body.<extra field>"}  # staff name no agency
    assert "SECRET-REASON" not in answer.text
    started = client.post(f"/referrals/{uuid4()}/start", json={"agency_id": "Not An Agency"}, headers=POLICE)
    assert started.status_code == 422 and "Not An Agency" not in started.text


@pytest.mark.parametrize(
    ("action", "body"),
    [("accept", {"note": "before\x00after"}), ("decline", {"reason": "other", "note": "\x00"})],
)
def test_a_nul_in_a_note_is_refused_at_the_edge_not_in_the_transaction(
    client: TestClient, action: str, body: dict[str, str]
) -> None:
    answer = client.post(f"/referrals/{uuid4()}/{action}", json=body, headers=POLICE)
    assert answer.status_code == 422 and "NUL" in answer.text and "before" not in answer.text


def test_the_inbox_of_open_referrals_is_for_an_agency_token_only(client: TestClient) -> None:
    """`GET /referrals` lists the calling agency's own referrals; staff (and anyone else) have the case routes."""
    assert "get" in client.get("/openapi.json").json()["paths"]["/referrals"]
    assert client.get("/referrals").status_code == 403  # the client's default token is a caseworker's
    assert client.get("/referrals", headers={"authorization": ""}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "not-a-code"},
        {},
        {"outcome": "needs_met", "closed_by": "caseworker:someone-else"},  # who closes it is the token's
        {"outcome": "needs_met", "note": "the victim's words"},  # codes only: no free text
    ],
)
def test_a_closing_with_bad_input_is_a_problem_before_anything_is_read(
    client: TestClient, body: dict[str, str]
) -> None:
    answer = client.post(f"/cases/{uuid4()}/follow-ups/{uuid4()}/done", json=body)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert "someone-else" not in answer.text and "the victim's words" not in answer.text


def test_follow_ups_are_for_staff_only(client: TestClient) -> None:
    assert client.get("/follow-ups", headers=POLICE).status_code == 403
    done = client.post(f"/cases/{uuid4()}/follow-ups/{uuid4()}/done", json={"outcome": "needs_met"}, headers=POLICE)
    assert done.status_code == 403
    assert client.post(f"/cases/{uuid4()}/follow-ups/{uuid4()}/reroute", headers=POLICE).status_code == 403
    assert client.get("/follow-ups?state=whatever").status_code == 422

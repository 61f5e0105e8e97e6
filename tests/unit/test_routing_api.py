"""Routing's HTTP API without a database: the preview explains the decision and carries each consent notice;
capacity reports are checked; errors are problem+json. A fake pool stands in for PostgreSQL."""

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.auth import Role, issue_token
from routing.main import create_app
from routing.settings import RoutingSettings

from tests.samples import sample_case_json

CATALOGUE = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"
MONDAY_11PM_SEOUL = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
SECRET = "unit-test-signing-secret-of-32-bytes!"


class FakePool:
    """Answers the capacity query with the reports set on it."""

    def __init__(self) -> None:
        self.remaining: dict[str, int] = {}

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        assert "agency_capacity" in query
        return [
            {"agency_id": a, "remaining": n, "reported": n, "reported_at": MONDAY_11PM_SEOUL}
            for a, n in sorted(self.remaining.items())
        ]


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, pool: FakePool) -> TestClient:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://127.0.0.1:1")
    settings = RoutingSettings(catalogue_dir=CATALOGUE, auth_secret=SECRET)
    app = create_app(settings, clock=lambda: MONDAY_11PM_SEOUL)
    app.state.runtime = SimpleNamespace(pool=pool, settings=settings)  # no lifespan: nothing connects
    supervisor = {"authorization": f"Bearer {issue_token(SECRET, Role.supervisor, 'sv-1')}"}
    return TestClient(app, raise_server_exceptions=False, headers=supervisor)


def test_the_preview_explains_the_choice_and_shows_each_consent_notice(client: TestClient) -> None:
    case = sample_case_json(
        crime_type="stalking",
        needs=["safety", "legal", "counselling"],
        consents=[{"agency_id": "seoul-stalking", "granted": True, "sensitive_granted": True}],
    )
    answer = client.post("/preview", json=case)
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    agencies = {a["agency_id"]: a for a in preview["agencies"]}
    assert {a: v["needs"] for a, v in agencies.items()} == {
        "seoul-stalking": ["safety", "counselling"],
        "legal-aid": ["legal"],
    }
    stalking, legal = agencies["seoul-stalking"], agencies["legal-aid"]
    assert stalking["consent"] == "recorded" and legal["consent"] == "to_ask"
    assert preview["consent_to_ask"] == ["legal-aid"]
    assert stalking["consent_notice"]["retention"] and legal["consent_notice"]["purpose"]
    assert "summary" in stalking["fields_shared"], "the sensitive-data consent is recorded"
    assert "summary" not in legal["fields_shared"] and legal["sensitive_fields_need_separate_consent"] == ["summary"]
    assert stalking["open_now"] is False, "the clock says Monday 23:00 in Seoul"
    reasons = {d["agency_id"]: d["reason"] for d in preview["decisions"] if d["chosen"]}
    assert "stalking hub" in reasons["seoul-stalking"] and "closed now" in reasons["seoul-stalking"]
    assert preview["uncovered_needs"] == []


def test_the_preview_skips_an_agency_that_reported_it_is_full(client: TestClient, pool: FakePool) -> None:
    pool.remaining["seoul-stalking"] = 0
    answer = client.post("/preview", json=sample_case_json(crime_type="stalking", needs=["safety"], consents=[]))
    preview = answer.json()
    assert [a["agency_id"] for a in preview["agencies"]] == ["police"]
    skipped = {d["agency_id"]: d["reason"] for d in preview["decisions"] if not d["chosen"]}
    assert "full" in skipped["seoul-stalking"]


def test_the_preview_rejects_bad_input_without_echoing_it(client: TestClient) -> None:
    answer = client.post("/preview", json=sample_case_json(urgency="SECRET-URGENCY"))
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert "SECRET-URGENCY" not in answer.text


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/agencies/no-such-agency/capacity", {"available": 3}, 404),
        ("/agencies/police/capacity", {"available": -1}, 422),
        ("/agencies/police/capacity", {"available": 3, "colour": "blue"}, 422),
        ("/agencies/Not An Agency/capacity", {"available": 3}, 422),
    ],
    ids=["unknown-agency", "negative", "unknown-field", "bad-id"],
)
def test_a_bad_capacity_report_is_refused(client: TestClient, path: str, body: dict[str, Any], status: int) -> None:
    answer = client.put(path, json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"

"""kit.auth, kit.limits and the access log's chain on a small app: who may call, what a refusal looks like (and
that it is logged without the token), body and rate limits."""

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import asyncpg
import jwt
import pytest
from devstack.stack import Stack, StackPorts
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from kit.access_log import GENESIS, Access, row_hash
from kit.auth import Principal, Role, issue_token, require, verify_token
from kit.http import install_problem_handlers
from kit.limits import RateLimiter, install_request_limits
from kit.settings import ServiceSettings
from pydantic import BaseModel, Field

SECRET = "unit-test-signing-secret-of-32-bytes!"


class Note(BaseModel):
    text: str = Field(max_length=100)


def make_app(**overrides: object) -> FastAPI:
    settings = ServiceSettings(
        service_name="t",
        db_schema="t",
        http_port=1,
        auth_secret=SECRET,
        **overrides,  # type: ignore[arg-type]
    )
    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=settings)
    install_problem_handlers(app)
    install_request_limits(app, settings)

    caseworker = Depends(require(Role.caseworker))

    @app.post("/notes")
    async def add(note: Note, who: Principal = caseworker) -> dict[str, str]:
        return {"by": who.credential}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_valid_token_of_an_allowed_role_passes(client: TestClient) -> None:
    answer = client.post("/notes", json={"text": "hi"}, headers=bearer(issue_token(SECRET, Role.caseworker, "cw-1")))
    assert answer.status_code == 200 and answer.json() == {"by": "caseworker:cw-1"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic dXNlcjpwYXNz"},
        bearer("not-a-jwt"),
        bearer(issue_token("another-secret-that-is-long-enough!!", Role.caseworker, "cw-1")),
        bearer(issue_token(SECRET, Role.caseworker, "cw-1", ttl_seconds=-600)),
        bearer(jwt.encode({"sub": "x", "role": "caseworker", "exp": time.time() + 60}, SECRET, algorithm="HS256")),
        bearer(jwt.encode({"sub": "x", "role": "caseworker"}, "", algorithm="none")),
    ],
    ids=["missing", "basic", "garbage", "other-secret", "expired", "no-audience", "alg-none"],
)
def test_a_missing_or_bad_token_is_401_with_a_bearer_challenge(
    client: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        answer = client.post("/notes", json={"text": "hi"}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert any("access refused: 401" in r.getMessage() for r in caplog.records)
    token = headers.get("authorization", "").removeprefix("Bearer ")
    assert not token or all(token not in r.getMessage() for r in caplog.records)  # the token is never logged


def test_a_valid_token_of_another_role_is_403_and_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    token = issue_token(SECRET, Role.agency, "agency-police", agency="police")
    with caplog.at_level(logging.WARNING):
        answer = client.post("/notes", json={"text": "hi"}, headers=bearer(token))
    assert answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
    assert any("403 wrong_role" in r.getMessage() for r in caplog.records)


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_an_agency_token_must_name_its_agency() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, Role.agency, "agency-x")
    forged = jwt.encode(
        {"iss": "onestop", "aud": "onestop", "sub": "x", "role": "agency", "iat": 0, "exp": time.time() + 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Exception, match="invalid"):
        verify_token(SECRET, forged)


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    token = bearer(issue_token(SECRET, Role.caseworker, "cw-1"))
    answer = client.post("/notes", content=b'{"text": "' + b"x" * 300_000 + b'"}', headers=token)
    assert answer.status_code == 413 and answer.headers["content-type"] == "application/problem+json"


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    token = bearer(issue_token(SECRET, Role.caseworker, "cw-1"))
    chunks = (b"x" * 65536 for _ in range(8))  # no Content-Length: counted while read
    answer = client.post("/notes", content=chunks, headers={**token, "content-type": "application/json"})
    assert answer.status_code == 413


def test_a_field_over_its_length_is_422(client: TestClient) -> None:
    token = bearer(issue_token(SECRET, Role.caseworker, "cw-1"))
    answer = client.post("/notes", json={"text": "x" * 101}, headers=token)
    assert answer.status_code == 422 and answer.json()["errors"][0]["loc"] == "body.text"


def test_too_many_requests_from_one_credential_is_429_with_retry_after() -> None:
    client = TestClient(make_app(rate_limit_burst=3, rate_limit_per_second=0.5), raise_server_exceptions=False)
    busy = bearer(issue_token(SECRET, Role.caseworker, "cw-busy"))
    statuses = [client.post("/notes", json={"text": "hi"}, headers=busy).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = client.post("/notes", json={"text": "hi"}, headers=busy)
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    other = bearer(issue_token(SECRET, Role.caseworker, "cw-calm"))  # another credential has its own budget
    assert client.post("/notes", json={"text": "hi"}, headers=other).status_code == 200


def test_the_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_second=2.0, burst=1)
    assert limiter.wait_needed("a", now=0.0) == 0
    assert limiter.wait_needed("a", now=0.1) == pytest.approx(0.4)
    assert limiter.wait_needed("a", now=0.6) == 0


def test_each_row_hash_covers_the_previous_one_and_every_field() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    access = Access("case.read", uuid4())
    first = row_hash(GENESIS, 1, at, "caseworker:cw-1", "caseworker", "10.0.0.1", access)
    assert first != row_hash(GENESIS, 1, at, "caseworker:cw-2", "caseworker", "10.0.0.1", access)
    assert first != row_hash(GENESIS, 1, at, "caseworker:cw-1", "caseworker", "10.0.0.2", access)
    assert first != row_hash(GENESIS, 1, at, "caseworker:cw-1", "caseworker", "10.0.0.1", Access("case.read"))
    second = row_hash(first, 2, at, "caseworker:cw-1", "caseworker", "10.0.0.1", access)
    assert second != row_hash("f" * 64, 2, at, "caseworker:cw-1", "caseworker", "10.0.0.1", access)


def test_the_dev_stack_writes_a_working_token_per_role_and_agency(tmp_path: Path) -> None:
    stack = Stack(tmp_path, StackPorts.free(), env={"PATH": "/usr/bin"})  # made, not started
    folder = stack.write_tokens()
    secret = stack.env["AUTH_SECRET"]
    assert len(secret) >= 32 and secret not in "".join(p.read_text() for p in folder.iterdir())
    assert verify_token(secret, (folder / "auditor").read_text().strip()).role is Role.auditor
    police = verify_token(secret, (folder / "agency-police").read_text().strip())
    assert (police.role, police.agency) == (Role.agency, "police")
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o600}
    # The simulator answers for each agency with that agency's own token.
    tokens = json.loads(stack.env["SIMULATOR_AGENCY_TOKENS"])
    assert verify_token(secret, tokens["legal-aid"]).agency == "legal-aid"


def test_text_postgresql_cannot_store_is_a_422_not_a_500() -> None:
    app = make_app()

    @app.get("/nul")
    async def nul() -> None:
        raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00")

    answer = TestClient(app, raise_server_exceptions=False).get("/nul")
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert "0x00" not in answer.text


def test_a_token_from_a_host_whose_clock_runs_ahead_is_taken(client: TestClient) -> None:
    """Services on hosts with skewed clocks still reach one another: a token issued 30 s "in the future" passes."""
    now = int(time.time()) + 30
    claims = {"iss": "onestop", "aud": "onestop", "sub": "cw-1", "role": "caseworker", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert client.post("/notes", json={"text": "hi"}, headers=bearer(token)).status_code == 200

"""The agency simulator as the gateway and notify see it: webhook in, acknowledgements out, records to read."""

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from agency_simulator.main import create_app
from agency_simulator.settings import Settings
from aiohttp import web
from schemas.events import ReferralCancelled, ReferralCase, ReferralReminded, ReferralRequested, encode_event
from schemas.vocab import CrimeType, Need, Urgency

from tests.samples import cancellation_for, reminder_for
from tests.servers import serving_aiohttp

SECRET = "Kim Secret-Victim 010-9999-0000"


# A step of FakeNotify's script: the connection dropped without an answer (notify going away mid-call).
DROP = "drop"


class FakeNotify:
    """Notify's acknowledgement API on a socket of its own: records each call and answers from a script (then 200)."""

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def answer(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.path, await request.json()))
        step = self.script.pop(0) if self.script else 200
        if step == DROP:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never sent: the connection is gone
        assert isinstance(step, int)
        return web.json_response({}, status=step)

    def serving(self) -> AbstractAsyncContextManager[str]:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.answer)
        return serving_aiohttp(app)


@asynccontextmanager
async def simulator(
    notify: FakeNotify,
    behaviour: dict[str, Any] | None = None,
    retry_seconds: float = 5.0,
    settings: Settings | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    async with notify.serving() as notify_url:
        settings = (
            settings
            or Settings(
                notify_url=notify_url,
                simulator_behaviour=behaviour or {"default": {"action": "accept", "delay_seconds": 0.05}},
                simulator_ack_retry_seconds=retry_seconds,
            )
        ).model_copy(update={"notify_url": notify_url})
        app = create_app(settings, ack_backoff=(0.02, 0.1))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test") as client,
        ):
            yield client
            await client.delete("/received")  # stops acknowledgements still pending


def referral(agency_id: str = "police") -> ReferralRequested:
    return ReferralRequested(
        case_id=uuid4(),
        producer="agency-gateway",
        referral_id=uuid4(),
        agency_id=agency_id,
        case=ReferralCase(
            crime_type=CrimeType.stalking,
            needs=[Need.safety],
            urgency=Urgency.urgent,
            region="seoul",
            victim_name="Kim Ji-woo",
            victim_phone="010-1234-5678",
        ),
    )


async def deliver(client: httpx.AsyncClient, event: ReferralRequested, agency_id: str | None = None) -> httpx.Response:
    return await client.post(
        f"/agencies/{agency_id or event.agency_id}/referrals",
        content=encode_event(event),
        headers={"Idempotency-Key": str(event.referral_id), "Content-Type": "application/json"},
    )


async def record_of(client: httpx.AsyncClient, event: ReferralRequested) -> dict[str, Any]:
    received = (await client.get(f"/agencies/{event.agency_id}/referrals")).json()
    [record] = [r for r in received["referrals"] if r["referral_id"] == str(event.referral_id)]
    return record  # type: ignore[no-any-return]


async def wait_for(
    client: httpx.AsyncClient, event: ReferralRequested, done: Callable[[dict[str, Any]], bool], seconds: float = 3
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        record = await record_of(client, event)
        if done(record) or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.02)


def _with(**changes: Any) -> bytes:
    """A referral's wire form with some fields replaced."""
    return json.dumps(json.loads(encode_event(referral())) | changes).encode()


def ack_final(record: dict[str, Any]) -> bool:
    return record["ack"]["status"] not in ("pending", "not_planned")


async def test_accepts_after_its_delay_and_tells_notify() -> None:
    notify = FakeNotify()
    async with simulator(notify, {"default": {"action": "accept", "delay_seconds": 0.2}}) as client:
        event = referral()
        response = await deliver(client, event)

        assert response.status_code == 202
        assert response.json() == {"referral_id": str(event.referral_id), "duplicate": False}
        assert notify.calls == []
        assert (await record_of(client, event))["ack"]["status"] == "pending"

        record = await wait_for(client, event, ack_final)

    assert record["ack"]["status"] == "sent"
    assert record["decision"] == "accept"
    assert record["fields"] == ["crime_type", "needs", "region", "urgency", "victim_name", "victim_phone"]
    [(path, body)] = notify.calls
    assert path == f"/referrals/{event.referral_id}/accept"
    assert body["agency_id"] == "police" and body["note"]
    [attempt] = record["ack"]["attempts"]
    waited = _seconds(attempt["at"]) - _seconds(record["first_received_at"])
    assert waited >= 0.2


async def test_declines_with_the_reason_configured_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SIMULATOR_BEHAVIOUR",
        json.dumps(
            {
                "default": {"action": "silent"},
                "police": {"action": "decline", "reason": "no_capacity", "delay_seconds": 0},
            }
        ),
    )
    monkeypatch.setenv("NOTIFY_URL", "http://notify.test")
    notify = FakeNotify()
    async with simulator(notify, settings=Settings()) as client:
        event = referral("police")
        assert (await deliver(client, event)).status_code == 202
        record = await wait_for(client, event, ack_final)

    assert record["decision"] == "decline"
    assert record["ack"] == record["ack"] | {"action": "decline", "reason": "no_capacity", "status": "sent"}
    [(path, body)] = notify.calls
    assert path == f"/referrals/{event.referral_id}/decline"
    assert body["agency_id"] == "police" and body["reason"] == "no_capacity" and body["note"]


async def test_a_silent_agency_takes_the_referral_and_never_acknowledges() -> None:
    notify = FakeNotify()
    async with simulator(notify) as client:
        put = await client.put("/behaviour/legal-aid", json={"action": "silent"})
        assert put.status_code == 200
        assert (await client.get("/behaviour")).json()["legal-aid"] == {"action": "silent"}

        event = referral("legal-aid")
        assert (await deliver(client, event)).status_code == 202
        await asyncio.sleep(0.3)
        record = await record_of(client, event)

    assert record["decision"] == "silent"
    assert record["ack"]["status"] == "not_planned" and record["ack"]["attempts"] == []
    assert notify.calls == []


async def test_a_duplicate_delivery_is_recorded_and_acted_on_once() -> None:
    notify = FakeNotify()
    async with simulator(notify) as client:
        event = referral()
        first, second = await asyncio.gather(deliver(client, event), deliver(client, event))
        third = await deliver(client, event)
        record = await wait_for(client, event, ack_final)
        await asyncio.sleep(0.2)  # time for a second acknowledgement, were one scheduled
        received = (await client.get("/received")).json()

    answers = sorted(r.json()["duplicate"] for r in (first, second, third))
    assert [r.status_code for r in (first, second, third)] == [202, 202, 202]
    assert answers == [False, True, True]
    assert record["deliveries"] == 3 and record["duplicates"] == 2
    assert received["deliveries"] == 3 and received["duplicates"] == 2
    assert [r["idempotency_key"] for r in received["receipts"]] == [str(event.referral_id)] * 3
    assert len(notify.calls) == 1


async def test_fails_the_first_n_deliveries_then_accepts() -> None:
    notify = FakeNotify()
    behaviour = {"default": {"action": "fail", "status": 503, "times": 2, "delay_seconds": 0}}
    async with simulator(notify, behaviour) as client:
        event = referral()
        answers = [await deliver(client, event) for _ in range(3)]
        record = await wait_for(client, event, ack_final)

    assert [a.status_code for a in answers] == [503, 503, 202]
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert answers[2].json()["duplicate"] is False
    assert record["failed_deliveries"] == 2 and record["duplicates"] == 0
    assert record["decision"] == "accept" and record["ack"]["status"] == "sent"
    assert [path for path, _ in notify.calls] == [f"/referrals/{event.referral_id}/accept"]


async def test_fails_every_delivery_when_times_is_null() -> None:
    notify = FakeNotify()
    async with simulator(notify, {"default": {"action": "fail", "status": 500, "times": None}}) as client:
        event = referral()
        answers = [await deliver(client, event) for _ in range(4)]
        await asyncio.sleep(0.1)
        record = await record_of(client, event)

    assert {a.status_code for a in answers} == {500}
    assert record["failed_deliveries"] == 4 and record["decision"] is None
    assert notify.calls == []


async def test_retries_the_acknowledgement_while_notify_is_down() -> None:
    notify = FakeNotify([DROP, 503, 503, 200])
    async with simulator(notify) as client:
        event = referral()
        await deliver(client, event)
        record = await wait_for(client, event, ack_final)

    attempts = record["ack"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "retry", "ok"]
    assert [a["status_code"] for a in attempts] == [None, 503, 503, 200]
    assert attempts[0]["error"] == "ServerDisconnectedError"
    assert record["ack"]["status"] == "sent"
    assert len(notify.calls) == 4


@pytest.mark.parametrize(("answer", "status"), [(409, "already_done"), (403, "rejected")])
async def test_a_final_answer_from_notify_ends_the_retries(answer: int, status: str) -> None:
    notify = FakeNotify([answer])
    async with simulator(notify) as client:
        event = referral()
        await deliver(client, event)
        record = await wait_for(client, event, ack_final)

    assert record["ack"]["status"] == status
    assert len(record["ack"]["attempts"]) == 1 and len(notify.calls) == 1


async def test_a_referral_notify_does_not_know_yet_is_acknowledged_again_later() -> None:
    notify = FakeNotify([404, 404, 200])
    async with simulator(notify) as client:
        event = referral()
        await deliver(client, event)
        record = await wait_for(client, event, ack_final)

    assert [a["status_code"] for a in record["ack"]["attempts"]] == [404, 404, 200]
    assert record["ack"]["status"] == "sent"


async def test_gives_up_on_the_acknowledgement_after_the_retry_window() -> None:
    notify = FakeNotify([503] * 1000)
    async with simulator(notify, retry_seconds=0.3) as client:
        event = referral()
        await deliver(client, event)
        record = await wait_for(client, event, ack_final)

    assert record["ack"]["status"] == "gave_up"
    assert 2 <= len(record["ack"]["attempts"]) == len(notify.calls)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (f"not json {SECRET}".encode(), "body"),
        (json.dumps({"type": SECRET, "version": 1}).encode(), "body.type"),
        (json.dumps({"type": "case.submitted", "version": 1, "note": SECRET}).encode(), "body.type"),
        (_with(case_id=SECRET), "body.case_id"),
        (_with(case={"crime_type": "stalking", "needs": ["safety"], "urgency": SECRET}), "body.case.urgency"),
        (
            _with(case={"crime_type": "stalking", "needs": ["safety"], "urgency": "high", "victim_name": 7}),
            "body.case.victim_name",
        ),
    ],
)
async def test_a_bad_body_is_a_problem_that_does_not_echo_it(body: bytes, loc: str) -> None:
    async with simulator(FakeNotify()) as client:
        response = await client.post(
            "/agencies/police/referrals", content=body, headers={"Idempotency-Key": str(uuid4())}
        )
        received = (await client.get("/received")).json()

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["type"] and problem["title"] and problem["detail"]
    assert loc in [e["loc"] for e in problem["errors"]]
    assert "Secret" not in response.text and "9999" not in response.text
    assert received["deliveries"] == 0


async def test_a_referral_for_another_agency_is_a_conflict() -> None:
    async with simulator(FakeNotify()) as client:
        response = await deliver(client, referral("police"), agency_id="legal-aid")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_idempotency_key_must_be_the_referral_id() -> None:
    event = referral()
    async with simulator(FakeNotify()) as client:
        missing = await client.post("/agencies/police/referrals", content=encode_event(event))
        other = await client.post(
            "/agencies/police/referrals", content=encode_event(event), headers={"Idempotency-Key": str(uuid4())}
        )
        received = (await client.get("/received")).json()

    assert missing.status_code == 400 and other.status_code == 422
    assert missing.json()["errors"][0]["loc"] == "header.Idempotency-Key"
    assert received["deliveries"] == 0


async def test_a_bad_behaviour_is_refused_and_the_old_one_kept() -> None:
    async with simulator(FakeNotify()) as client:
        response = await client.put("/behaviour/police", json={"action": "decline", "reason": "busy"})
        default = await client.put("/behaviour/default", json={"action": "silent"})
        behaviour = (await client.get("/behaviour")).json()

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == "body.decline.reason"
    assert default.status_code == 200
    assert behaviour == {"default": {"action": "silent"}}


async def test_reset_forgets_everything_received_and_health_answers() -> None:
    notify = FakeNotify()
    async with simulator(notify, {"default": {"action": "accept", "delay_seconds": 0.2}}) as client:
        await deliver(client, referral())
        assert (await client.delete("/received")).status_code == 204
        await asyncio.sleep(0.3)
        received = (await client.get("/received")).json()
        health = await client.get("/health")

    assert received["deliveries"] == 0 and received["referrals"] == []
    assert notify.calls == []  # the pending acknowledgement was stopped too
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


# --- webhook signatures ------------------------------------------------------------------------------------


def _signed(event: ReferralRequested, secret: str, at: float | None = None) -> dict[str, str]:
    body, timestamp = encode_event(event), str(int(at if at is not None else time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Idempotency-Key": str(event.referral_id),
        "X-Onestop-Timestamp": timestamp,
        "X-Onestop-Signature": f"sha256={digest}",
    }


def _with_secrets(**secrets: str) -> Settings:
    return Settings(
        notify_url="http://notify.test",
        simulator_behaviour={"default": {"action": "silent"}},
        simulator_webhook_secrets=secrets,
    )


async def test_an_agency_with_a_secret_takes_only_correctly_signed_referrals() -> None:
    async with simulator(FakeNotify(), settings=_with_secrets(police="s3cret")) as client:
        event = referral()
        unsigned = await deliver(client, event)
        wrong = await client.post(
            "/agencies/police/referrals", content=encode_event(event), headers=_signed(event, "guess")
        )
        stale = await client.post(
            "/agencies/police/referrals",
            content=encode_event(event),
            headers=_signed(event, "s3cret", at=time.time() - 3600),
        )
        before = (await client.get("/received")).json()
        signed = await client.post(
            "/agencies/police/referrals", content=encode_event(event), headers=_signed(event, "s3cret")
        )
        received = (await client.get("/received")).json()

    assert [r.status_code for r in (unsigned, wrong, stale)] == [401, 401, 401]
    assert unsigned.headers["content-type"] == "application/problem+json"
    assert unsigned.json()["errors"][0]["loc"] == "header.X-Onestop-Signature"
    assert before["deliveries"] == 0, "a refused request is not a delivery"
    assert signed.status_code == 202
    assert [r["signature"] for r in received["receipts"]] == ["valid"]


async def test_secrets_come_from_the_variables_the_catalogue_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://sim.test")
    monkeypatch.setenv("WEBHOOK_SECRET_POLICE", "from-the-environment")
    monkeypatch.delenv("WEBHOOK_SECRET_LEGAL_AID", raising=False)
    catalogue = Path(__file__).resolve().parents[2] / "catalogue" / "agencies"
    settings = Settings(notify_url="http://notify.test", catalogue_dir=catalogue)
    async with simulator(FakeNotify(), settings=settings) as client:
        police, legal_aid = referral("police"), referral("legal-aid")
        refused = await deliver(client, police)
        taken = await client.post(
            "/agencies/police/referrals", content=encode_event(police), headers=_signed(police, "from-the-environment")
        )
        unchecked = await deliver(client, legal_aid)  # its variable is not set: nothing to check against

    assert (refused.status_code, taken.status_code, unchecked.status_code) == (401, 202, 202)


async def test_malformed_signature_headers_are_refused_not_crashed_on() -> None:
    async with simulator(FakeNotify(), settings=_with_secrets(police="s3cret")) as client:
        event = referral()
        answers = [
            await client.post(
                "/agencies/police/referrals",
                content=encode_event(event),
                headers={**_signed(event, "s3cret"), **bad},
            )
            for bad in ({"X-Onestop-Timestamp": "soon"}, {"X-Onestop-Signature": "sha256=\xe9".encode("latin-1")})
        ]

    assert [a.status_code for a in answers] == [401, 401]


# --- notices about a referral: reminders and cancellations ---------------------------------------------------


def _signed_notice(notice: ReferralReminded | ReferralCancelled, secret: str) -> dict[str, str]:
    body, timestamp = encode_event(notice), str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Idempotency-Key": str(notice.event_id),
        "Content-Type": "application/json",
        "X-Onestop-Timestamp": timestamp,
        "X-Onestop-Signature": f"sha256={digest}",
    }


async def test_a_reminder_is_recorded_once_per_event_and_is_never_taken_as_a_new_referral() -> None:
    notify = FakeNotify()
    async with simulator(notify, behaviour={"default": {"action": "silent"}}) as client:
        event = referral()
        await deliver(client, event)
        notice = reminder_for(event)
        headers = {"Idempotency-Key": str(notice.event_id), "Content-Type": "application/json"}
        first = await client.post("/agencies/police/referrals", content=encode_event(notice), headers=headers)
        again = await client.post("/agencies/police/referrals", content=encode_event(notice), headers=headers)
        [recorded] = (await client.get("/agencies/police/notices")).json()
        received = (await client.get("/received")).json()

    assert (first.status_code, first.json()["duplicate"], again.json()["duplicate"]) == (202, False, True)
    assert recorded["type"] == "referral.reminded" and recorded["event_id"] == str(notice.event_id)
    assert recorded["deliveries"] == 2 and recorded["known_referral"] is True
    assert recorded["deadline"].startswith("2026-03-02T13:00")
    assert [r["referral_id"] for r in received["referrals"]] == [str(event.referral_id)]
    assert received["deliveries"] == 1, "the reminder is not a delivery of a referral"
    assert notify.calls == [], "a silent agency stays silent when reminded"


async def test_a_notice_must_carry_its_own_event_id_as_idempotency_key_and_a_valid_signature() -> None:
    async with simulator(FakeNotify(), settings=_with_secrets(police="s3cret")) as client:
        event = referral()
        cancelled = cancellation_for(event)
        unsigned = await client.post(
            "/agencies/police/referrals",
            content=encode_event(cancelled),
            headers={"Idempotency-Key": str(cancelled.event_id), "Content-Type": "application/json"},
        )
        keyed_by_referral = await client.post(
            "/agencies/police/referrals",
            content=encode_event(cancelled),
            headers=_signed_notice(cancelled, "s3cret") | {"Idempotency-Key": str(event.referral_id)},
        )
        signed = await client.post(
            "/agencies/police/referrals", content=encode_event(cancelled), headers=_signed_notice(cancelled, "s3cret")
        )
        [recorded] = (await client.get("/agencies/police/notices")).json()

    assert (unsigned.status_code, keyed_by_referral.status_code, signed.status_code) == (401, 422, 202)
    assert recorded["type"] == "referral.cancelled" and recorded["reason"] == "deadline_breached"
    assert recorded["signature"] == "valid" and recorded["deliveries"] == 1
    assert recorded["known_referral"] is False, "the referral itself never reached this agency"

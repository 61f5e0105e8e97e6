"""The domain's refusals (kit.errors) are translated at the edges: a problem response with the status of its kind at
the HTTP edge, the DLQ with its reason at the consumer edge. The service layer raising them knows nothing of either."""

from http import HTTPStatus
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from kit.errors import Conflict, DomainError, Gone, Invalid, NotFound, Refused
from kit.http import install_problem_handlers
from kit.messaging import subscribe
from schemas.events import ReferralAccepted, encode_event


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        (NotFound("no referral 7"), 404, "Not Found"),
        (Gone("case 7 was erased on request", title="Erased"), 410, "Erased"),
        (Refused("the auditor role may not do this"), 403, "Forbidden"),
        (Conflict("the referral is declined; it cannot become accepted"), 409, "Conflict"),
        (Invalid("this Idempotency-Key was already used for a different case"), 422, HTTPStatus(422).phrase),
    ],
)
def test_each_refusal_is_a_problem_with_its_status_at_the_http_edge(
    error: DomainError, status: int, title: str
) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/thing")
    async def thing() -> None:
        raise error

    answer = TestClient(app, raise_server_exceptions=False).get("/thing")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    # The reason is for the log and the DLQ: not in the answer.
    assert answer.json() == {"type": "about:blank", "title": title, "status": status, "detail": error.detail}


async def test_a_refusal_goes_to_the_dlq_with_its_reason_at_the_consumer_edge() -> None:
    broker = KafkaBroker("in-memory")
    dead: list[dict[str, str]] = []

    async def handle(event: ReferralAccepted) -> None:
        raise Conflict("the referral is declined; it cannot become accepted", reason="transition_refused")

    subscribe(broker, "acks.police", "notify.acks", (ReferralAccepted,), handle)

    @broker.subscriber("acks.police.dlq", group_id="dlq-reader")
    async def read_dlq(message: KafkaMessage) -> None:
        dead.append(dict(message.headers))

    accepted = ReferralAccepted(case_id=uuid4(), producer="police", referral_id=uuid4(), agency_id="police")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(encode_event(accepted), "acks.police", key=b"k")

    assert [(h["dlq.reason"], h["dlq.detail"]) for h in dead] == [
        ("transition_refused", "the referral is declined; it cannot become accepted")
    ]


def test_a_refusal_without_a_reason_takes_its_kinds() -> None:
    refusals = (NotFound(""), Gone(""), Refused(""), Conflict(""), Invalid(""))
    assert [r.reason for r in refusals] == ["not_found", "gone", "forbidden", "conflict", "invalid"]
    assert NotFound("", reason="wrong_agency").reason == "wrong_agency"

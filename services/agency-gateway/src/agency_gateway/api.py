"""The gateway's HTTP API: staff follow a case's deliveries and notices; a Kafka-native agency fetches the personal
items of a referral delivered to it; an operator (a supervisor) looks at the agencies' dead letters and replays an
agency's once the cause is fixed (replay.py, as `onestop-replay-dlq` does). Every read of a case's data is
access-logged; auditors read the log (kit.access_log_api)."""

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends
from kit.access_log import Access
from kit.deps import AccessLogDep, AgencyDep, PoolDep, StaffDep, SupervisorDep, provided
from kit.http import Problem

from . import replay, storage
from .handlers import AgencyDeliveries
from .personal import IntakeDisclosures, NotFetched


@dataclass(frozen=True)
class Deliveries:
    """What the gateway's routes read besides the database: each agency's deliveries (its channel and circuit),
    intake's disclosures and the clock (main.py's)."""

    agencies: Sequence[AgencyDeliveries]
    disclosures: IntakeDisclosures
    clock: Callable[[], float]


DeliveriesDep = Annotated[Deliveries, Depends(provided(Deliveries))]


@dataclass(frozen=True)
class DeadLetterQueues:
    """The gateway's Kafka and login, through which an operator's replay reads an agency's DLQ and puts it back."""

    bootstrap_servers: str
    client_config: Mapping[str, Any]


DeadLettersDep = Annotated[DeadLetterQueues, Depends(provided(DeadLetterQueues))]
log = logging.getLogger(__name__)

router = APIRouter()
Rows = list[dict[str, object]]


@router.get("/cases/{case_id}/deliveries", tags=["deliveries"])
async def case_deliveries(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> Rows:
    """Each referral's delivery: its outcome, the agency's answer, and every attempt."""
    await access_log.record_now(pool, who, Access("case.deliveries.read", case_id))
    return await storage.deliveries_of_case(pool, case_id)


@router.get("/cases/{case_id}/notices", tags=["deliveries"])
async def case_notices(case_id: UUID, who: StaffDep, pool: PoolDep, access_log: AccessLogDep) -> Rows:
    """notify's reminders and cancellations of the case's referrals, and how delivering each to its agency ended."""
    await access_log.record_now(pool, who, Access("case.notices.read", case_id))
    return await storage.notices_of_case(pool, case_id)


@router.get("/agencies", tags=["deliveries"])
async def agencies(who: StaffDep, deliveries: DeliveriesDep) -> Rows:
    """Each agency's channel and circuit: `open` while the gateway pauses calls to an agency that is down."""
    now = deliveries.clock()
    return [
        {
            "agency_id": d.agency.id,
            "channel": d.agency.channel.type,
            "circuit": "open" if d.breaker.is_open(now) else "closed",
            "consecutive_failures": d.breaker.consecutive_failures,
        }
        for d in deliveries.agencies
    ]


@router.get("/referrals/{referral_id}/personal", tags=["agencies"])
async def personal_items(
    referral_id: UUID, who: AgencyDep, pool: PoolDep, access_log: AccessLogDep, deliveries: DeliveriesDep
) -> dict[str, Any]:
    """The personal items of a referral delivered to the calling agency (a Kafka-native agency's topic carries
    only their names). Another agency's referral is not found (404); an erased case answers 410."""
    row = await storage.delivered_referral(pool, referral_id)
    if row is None or row["agency_id"] != who.agency:
        raise Problem(404, f"no referral {referral_id} delivered to this agency")
    # Only while the referral is open to the agency: not once it declined, completed, or lost it.
    ended = await storage.why_ended(pool, referral_id)
    if ended is not None:
        raise Problem(410, f"referral {referral_id} is no longer open to this agency ({ended})")
    wanted = row["personal_items"]
    disclosures = deliveries.disclosures
    items = await disclosures.items(row["case_id"], referral_id, row["agency_id"], wanted) if wanted else {}
    if isinstance(items, NotFetched):
        # Erased (410), consent withdrawn (409): say so; anything else is intake being unavailable.
        status = items.intake_status if items.intake_status in (404, 409, 410) else 503
        raise Problem(status or 503, "the personal items cannot be given: " + items.detail)
    await access_log.record_now(pool, who, Access("referral.personal.read", row["case_id"], referral_id))
    return {"referral_id": str(referral_id), "case_id": str(row["case_id"]), "items": items}


@contextlib.contextmanager
def _kafka_answers() -> Iterator[None]:
    """Kafka refusing or not answering the gateway's reads of a DLQ: 503 naming the error, never a stack trace."""
    try:
        yield
    except KafkaError as error:
        log.warning("the dead letters cannot be read or replayed now: %s", type(error).__name__)
        raise Problem(503, f"Kafka cannot be used for the dead letters now ({type(error).__name__})") from None


def _agency_known(deliveries: Deliveries, agency_id: str) -> None:
    if agency_id not in {d.agency.id for d in deliveries.agencies}:
        raise Problem(404, f"no agency {agency_id}")


def _cases(letters: Sequence[replay.DeadLetter], action: str) -> list[Access]:
    """An access-log row per case whose dead letter was read or replayed (one without a case when there is none)."""
    cases = set()
    for letter in letters:
        try:
            cases.add(UUID(letter.key))
        except ValueError:  # a poison record's key need not be a case id
            continue
    return [Access(action, case_id) for case_id in sorted(cases)] or [Access(action)]


def _shown(letter: replay.DeadLetter) -> dict[str, Any]:
    return {
        "partition": letter.partition,
        "offset": letter.offset,
        "case_id": letter.key,
        "reason": letter.reason,
        "failed_at": letter.failed_at.isoformat(),
        "target": letter.target,
    }


@router.get("/dead-letters", tags=["dead letters"])
async def dead_letter_queues(
    who: SupervisorDep, pool: PoolDep, access_log: AccessLogDep, deliveries: DeliveriesDep, queues: DeadLettersDep
) -> Rows:
    """Each agency's DLQ (`referrals.<agency-id>.dlq`), per reason: how many dead letters, how many wait for a
    replay, and when the first and the last arrived. Operators (supervisors) only."""
    with _kafka_answers():
        found = await replay.dead_letters(
            queues.bootstrap_servers, [d.agency.id for d in deliveries.agencies], client_config=queues.client_config
        )
    await access_log.record_now(pool, who, Access("dead_letters.read"))
    return replay.summary(found)


@router.get("/agencies/{agency_id}/dead-letters", tags=["dead letters"])
async def waiting_dead_letters(
    agency_id: str,
    who: SupervisorDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    deliveries: DeliveriesDep,
    queues: DeadLettersDep,
) -> Rows:
    """The dead letters a replay of the agency's DLQ would put back now (a dry run: nothing is sent): where each
    is, its case, why it failed, when, and the topic it would go back to."""
    _agency_known(deliveries, agency_id)
    with _kafka_answers():
        letters = await replay.replay_dlq(
            queues.bootstrap_servers, agency_id, dry_run=True, client_config=queues.client_config
        )
    await access_log.record_now(pool, who, *_cases(letters, "dead_letters.read"))
    return [_shown(letter) for letter in letters]


@router.post("/agencies/{agency_id}/dead-letters/replay", tags=["dead letters"])
async def replay_dead_letters(
    agency_id: str,
    who: SupervisorDep,
    pool: PoolDep,
    access_log: AccessLogDep,
    deliveries: DeliveriesDep,
    queues: DeadLettersDep,
) -> dict[str, Any]:
    """Once the cause is fixed: put the agency's dead letters not replayed before back on the topic each came from;
    the gateway delivers each as if new, with the same referral id (a referral whose needs went to another agency
    meanwhile is passed over). Operators (supervisors) only; access-logged per case. One replay of an agency at a
    time across the gateway's replicas and `onestop-replay-dlq`: 409 while another runs, nothing put back."""
    _agency_known(deliveries, agency_id)
    # Failing half-way, nothing is marked replayed: the next replay puts back again what went (the same referral ids).
    async with pool.acquire() as conn:
        try:
            async with replay.one_at_a_time(conn, agency_id):
                with _kafka_answers():
                    config = queues.client_config
                    letters = await replay.replay_dlq(queues.bootstrap_servers, agency_id, client_config=config)
        except replay.ReplayUnderWay as busy:
            raise Problem(409, str(busy)) from None
    await access_log.record_now(pool, who, *_cases(letters, "dead_letters.replay"))
    log.info("%s replayed %d dead letter(s) of %s", who.subject, len(letters), agency_id)
    return {"agency_id": agency_id, "replayed": len(letters), "letters": [_shown(letter) for letter in letters]}

"""A hostile agency: answers its own referrals with its own credential, over notify's acknowledgement API and on its
acknowledgement topic (`acks.<agency-id>`), mixing bad answers with good ones.

Bad answers: malformed JSON, unknown versions and routes, dates outside what UTC can express, NUL and raw control
characters, notes too long and bodies too large, another agency's referral, another agency's name, another case,
replays and answers out of order. Good answers: accept (its note full of control characters other than NUL, which the
contracts allow), start, complete, each once, in order, on one channel per referral. The agency simulator plays the
agency as `silent` meanwhile (it takes each referral and never answers), so every answer to it comes from here.

What each move must come to:
- over HTTP, a bad request is answered 4xx (never 5xx) and changes nothing; a replay is answered 2xx saying nothing
  changed (`changed: false`); a good answer is applied (`changed: true`);
- on Kafka, a bad record lands in `acks.<agency-id>.dlq` with the reason the consumer's rules give it; a replay is
  absorbed (no DLQ, no event); a good answer is applied, its own event id on `referral.events`.
The moves are built here without I/O (`probes_over_http`, `answers_over_kafka`, ...), sent by `HostileAgency`, and
judged from the outside (`judge_http`, `judge_events`).
"""

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

HttpExpect = Literal["refused", "replay", "applied"]
KafkaExpect = Literal["dead-letter", "absorbed", "applied"]

# Text the contracts allow in a note although it is hostile: C0 and C1 controls (never NUL), an ANSI escape, a line
# break that would forge a log line, zero-width and right-to-left marks. Accepted, stored and published as sent.
CONTROL_NOTE = "Accepted \x01\x02\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\r\nINFO forged log line\x7f\x85\u200b\u202e"
NOTE_MAX = 500  # the contracts' longest note
HTTP_BODY_MAX = 256 * 1024  # the services' default MAX_BODY_BYTES
KAFKA_HUGE_NOTE = 900 * 1024  # a record the broker still takes (message.max.bytes ~1 MiB) and the DLQ copy too

# What the consumer's rules (kit.messaging, notify.events.apply_agency_ack) make of a bad record.
INVALID_JSON = ("invalid_json",)
EMPTY = ("empty_record", "invalid_json")
UNKNOWN = ("unknown_event",)
UNEXPECTED = ("unexpected_event",)
INVALID = ("invalid_event",)
WRONG_AGENCY = ("wrong_agency",)
WRONG_CASE = ("wrong_case",)
REFUSED_TRANSITION = ("transition_refused",)


@dataclass(frozen=True)
class Target:
    """One referral of the hostile agency, and one of another agency's (already accepted there) to meddle with."""

    agency_id: str
    referral_id: str
    case_id: str
    other_agency_id: str
    other_referral_id: str
    other_case_id: str


@dataclass(frozen=True)
class HttpMove:
    label: str
    path: str  # under notify's URL
    body: bytes | None
    expect: HttpExpect
    statuses: tuple[int, ...] = ()  # the answers expected (any 4xx for "refused" when empty)
    content_type: str = "application/json"
    chunked: bool = False  # sent without Content-Length, in pieces
    must_status: bool = False  # an answer other than `statuses` is a failure (another agency's referral: 404 only)


@dataclass(frozen=True)
class KafkaMove:
    label: str
    value: bytes | None
    expect: KafkaExpect
    reasons: tuple[str, ...] = ()  # the dlq.reason expected for "dead-letter"
    key: str | None = None  # the record key: the case the answer names (the target's case when None)
    event_id: str | None = None  # for "applied": the event that must reach referral.events

    def with_value(self, label: str, expect: KafkaExpect) -> "KafkaMove":
        """The same bytes sent again (a verbatim replay)."""
        return KafkaMove(label, self.value, expect, key=self.key)


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def answer_event(
    kind: Literal["accept", "decline", "start", "complete", "cancel"],
    agency_id: str,
    referral_id: str,
    case_id: str,
    /,
    **changes: Any,
) -> dict[str, Any]:
    """An agency's answer in its wire form, as the agency's own system would write it (a fresh event id); `changes`
    replace or add fields."""
    types = {
        "accept": "referral.accepted",
        "decline": "referral.declined",
        "start": "referral.in_progress",
        "complete": "referral.completed",
        "cancel": "referral.cancelled",
    }
    event: dict[str, Any] = {
        "type": types[kind],
        "version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": _now(),
        "case_id": case_id,
        "producer": f"agency-{agency_id}"[:64],
        "referral_id": referral_id,
        "agency_id": agency_id,
    }
    if kind == "decline":
        event["reason"] = "other"
    if kind == "complete":
        event["outcome"] = "successful"
    if kind == "cancel":
        event["reason"] = "other"
    event.update(changes)
    return event


def probes_over_http(t: Target, *, huge: bool) -> list[HttpMove]:
    """Bad requests whose answer does not depend on the referral's state: each 4xx, nothing changed."""
    own = f"/referrals/{t.referral_id}"
    other = f"/referrals/{t.other_referral_id}"
    moves = [
        HttpMove("malformed JSON", f"{own}/accept", b'{"note": "unterminated', "refused", (422,)),
        HttpMove("raw control characters in JSON", f"{own}/accept", b'{"note": "raw \x01\x1b ctl"}', "refused", (422,)),
        HttpMove("raw NUL byte in JSON", f"{own}/accept", b'{"note": "raw \x00 nul"}', "refused", (422,)),
        HttpMove("not a JSON object", f"{own}/accept", b"[]", "refused", (422,)),
        HttpMove("empty body", f"{own}/accept", b"", "refused", (422,)),
        HttpMove("not JSON at all", f"{own}/accept", b"\xff\xfe\x00garbage", "refused", (400, 422)),
        HttpMove("JSON as text/plain", f"{own}/accept", _json({"note": "x"}), "refused", (415, 422), "text/plain"),
        HttpMove("unknown version field", f"{own}/accept", _json({"version": 2, "note": "v2"}), "refused", (422,)),
        HttpMove("unknown version route", f"/v2{own}/accept", _json({}), "refused", (404,)),
        HttpMove("unknown answer", f"{own}/approve", _json({}), "refused", (404, 405)),
        HttpMove(
            "occurred_at 0001-01-01T00:00:00+05:00",
            f"{own}/accept",
            _json({"occurred_at": "0001-01-01T00:00:00+05:00"}),
            "refused",
            (422,),
        ),
        HttpMove("NUL in note", f"{own}/accept", _json({"note": "before\x00after"}), "refused", (422,)),
        HttpMove(
            "NUL in decline note", f"{own}/decline", _json({"reason": "other", "note": "\x00"}), "refused", (422,)
        ),
        HttpMove("note too long", f"{own}/accept", _json({"note": "x" * (NOTE_MAX + 1)}), "refused", (422,)),
        HttpMove("empty note", f"{own}/accept", _json({"note": ""}), "refused", (422,)),
        HttpMove("unknown decline reason", f"{own}/decline", _json({"reason": "because"}), "refused", (422,)),
        HttpMove(
            "not_successful without reason", f"{own}/complete", _json({"outcome": "not_successful"}), "refused", (422,)
        ),
        HttpMove("extra field", f"{own}/accept", _json({"note": "x", "state": "completed"}), "refused", (422,)),
        HttpMove("referral id not a UUID", "/referrals/not-a-uuid/accept", _json({}), "refused", (422,)),
        HttpMove("unknown referral", f"/referrals/{uuid.uuid4()}/accept", _json({}), "refused", (404,)),
        HttpMove(
            "another agency's referral: accept", f"{other}/accept", _json({}), "refused", (404,), must_status=True
        ),
        HttpMove(
            "another agency's referral: decline",
            f"{other}/decline",
            _json({"reason": "other"}),
            "refused",
            (404,),
            must_status=True,
        ),
        HttpMove(
            "another agency's referral: complete",
            f"{other}/complete",
            _json({"outcome": "successful"}),
            "refused",
            (404,),
            must_status=True,
        ),
        HttpMove(
            "another agency named in the body",
            f"{own}/accept",
            _json({"agency_id": t.other_agency_id}),
            "refused",
            (403,),
        ),
        HttpMove("an agency cancels", f"{own}/cancel", _json({"reason": "other"}), "refused", (403,)),  # staff only
    ]
    if huge:
        big = _json({"note": "x" * (HTTP_BODY_MAX + 1024)})
        moves += [
            HttpMove("body over the size limit", f"{own}/accept", big, "refused", (413,)),
            HttpMove("body over the size limit, chunked", f"{own}/accept", big, "refused", (413,), chunked=True),
        ]
    return moves


def answers_over_http(t: Target) -> list[HttpMove]:
    """The referral answered over HTTP: out of order first, then accept, start, complete, each replayed."""
    own = f"/referrals/{t.referral_id}"
    done = _json({"outcome": "successful"})
    return [
        HttpMove("start before accept", f"{own}/start", _json({}), "refused", (409,)),
        HttpMove("complete before accept", f"{own}/complete", done, "refused", (409,)),
        HttpMove("accept (control characters in note)", f"{own}/accept", _json({"note": CONTROL_NOTE}), "applied"),
        HttpMove("accept replayed", f"{own}/accept", _json({"note": CONTROL_NOTE}), "replay"),
        HttpMove("decline after accept", f"{own}/decline", _json({"reason": "other"}), "refused", (409,)),
        HttpMove("start", f"{own}/start", _json({"note": "started"}), "applied"),
        HttpMove("accept after start", f"{own}/accept", _json({}), "refused", (409,)),
        HttpMove("complete", f"{own}/complete", done, "applied"),
        HttpMove("complete replayed", f"{own}/complete", done, "replay"),
        HttpMove("start after complete", f"{own}/start", _json({}), "refused", (409,)),
    ]


def plain_accept(t: Target) -> list[HttpMove]:
    """A referral beyond the scripted ones: accepted once, as a well-behaved agency would."""
    return [HttpMove("accept", f"/referrals/{t.referral_id}/accept", _json({"note": "accepted"}), "applied")]


def probes_over_kafka(t: Target, *, huge: bool) -> list[KafkaMove]:
    """Bad records whose fate does not depend on the referral's state: each dead-lettered with its reason."""

    def accept(**changes: Any) -> dict[str, Any]:
        return answer_event("accept", t.agency_id, t.referral_id, t.case_id, **changes)

    def with_version(version: Any) -> bytes:
        event = accept()
        event["version"] = version
        return _json(event)

    unknown_type = accept()
    unknown_type["type"] = "referral.approved"
    moves = [
        KafkaMove(
            "malformed JSON",
            b'{"type": "referral.accepted", "version": 1, "referral_id": ',
            "dead-letter",
            INVALID_JSON,
        ),
        KafkaMove("garbage bytes", b"\xff\xfe\x00\x80 not JSON " + uuid.uuid4().bytes, "dead-letter", INVALID_JSON),
        KafkaMove(
            "raw control characters in JSON",
            _json(accept()).replace(b'"version": 1', b'"version": 1, "note": "raw \x01\x1b"'),
            "dead-letter",
            INVALID_JSON,
        ),
        KafkaMove("a JSON array", b'["referral.accepted", 1]', "dead-letter", INVALID_JSON),
        KafkaMove("no value (tombstone)", None, "dead-letter", EMPTY),
        KafkaMove("unknown version 2", with_version(2), "dead-letter", UNKNOWN),
        KafkaMove("version as a string", with_version("1"), "dead-letter", UNKNOWN),
        KafkaMove("unknown type", _json(unknown_type), "dead-letter", UNKNOWN),
        KafkaMove(
            "a cancellation from the agency",
            _json(answer_event("cancel", t.agency_id, t.referral_id, t.case_id)),
            "dead-letter",
            UNEXPECTED,
        ),
        KafkaMove(
            "occurred_at 0001-01-01T00:00:00+05:00",
            _json(accept(occurred_at="0001-01-01T00:00:00+05:00")),
            "dead-letter",
            INVALID,
        ),
        KafkaMove(
            "occurred_at 9999-12-31T23:59:59-05:00",
            _json(accept(occurred_at="9999-12-31T23:59:59-05:00")),
            "dead-letter",
            INVALID,
        ),
        KafkaMove("occurred_at without zone", _json(accept(occurred_at="2024-07-22T10:00:00")), "dead-letter", INVALID),
        KafkaMove("occurred_at not a date", _json(accept(occurred_at="yesterday")), "dead-letter", INVALID),
        KafkaMove("NUL in note", _json(accept(note="before\x00after")), "dead-letter", INVALID),
        KafkaMove("note too long", _json(accept(note="x" * (NOTE_MAX + 1))), "dead-letter", INVALID),
        KafkaMove("extra field", _json(accept(state="completed")), "dead-letter", INVALID),
        KafkaMove("referral id not a UUID", _json(accept(referral_id="not-a-uuid")), "dead-letter", INVALID),
        KafkaMove(
            "another agency's referral",
            _json(answer_event("accept", t.agency_id, t.other_referral_id, t.other_case_id)),
            "dead-letter",
            WRONG_AGENCY,
            key=t.other_case_id,
        ),
        KafkaMove(
            "another agency's referral: complete",
            _json(answer_event("complete", t.agency_id, t.other_referral_id, t.other_case_id)),
            "dead-letter",
            WRONG_AGENCY,
            key=t.other_case_id,
        ),
        KafkaMove("another agency's name", _json(accept(agency_id=t.other_agency_id)), "dead-letter", WRONG_AGENCY),
        KafkaMove("another case", _json(accept(case_id=str(uuid.uuid4()))), "dead-letter", WRONG_CASE),
    ]
    if huge:
        moves.append(KafkaMove("huge note", _json(accept(note="x" * KAFKA_HUGE_NOTE)), "dead-letter", INVALID))
    return moves


def answers_over_kafka(t: Target) -> list[KafkaMove]:
    """The referral answered on the acknowledgement topic, in this order on one partition (keyed by its case)."""

    def event(kind: Literal["accept", "decline", "start", "complete"], **changes: Any) -> dict[str, Any]:
        return answer_event(kind, t.agency_id, t.referral_id, t.case_id, **changes)

    accept, start, complete = event("accept", note=CONTROL_NOTE), event("start", note="started"), event("complete")
    accepted = KafkaMove("accept (control characters in note)", _json(accept), "applied", event_id=accept["event_id"])
    completed = KafkaMove("complete", _json(complete), "applied", event_id=complete["event_id"])
    return [
        KafkaMove("start before accept", _json(event("start")), "dead-letter", REFUSED_TRANSITION),
        KafkaMove("complete before accept", _json(event("complete")), "dead-letter", REFUSED_TRANSITION),
        accepted,
        accepted.with_value("accept replayed verbatim", "absorbed"),
        KafkaMove("accept again, new event id", _json(event("accept")), "absorbed"),
        KafkaMove("decline after accept", _json(event("decline")), "dead-letter", REFUSED_TRANSITION),
        KafkaMove("start", _json(start), "applied", event_id=start["event_id"]),
        KafkaMove("accept after start", _json(event("accept")), "dead-letter", REFUSED_TRANSITION),
        completed,
        completed.with_value("complete replayed verbatim", "absorbed"),
        KafkaMove("start after complete", _json(event("start")), "dead-letter", REFUSED_TRANSITION),
    ]


# --- what came of each move -------------------------------------------------------------------------------------


@dataclass
class HttpResult:
    move: HttpMove
    referral_id: str
    status: int | None
    changed: bool | None = None  # notify's `changed` on a 2xx
    error: str | None = None  # the transport error's name when nothing came back
    # The first try failed at the connection (one a 5xx before it had left broken) and was sent again on a new one.
    retried_after: str | None = None


@dataclass
class KafkaResult:
    move: KafkaMove
    referral_id: str
    topic: str
    partition: int
    offset: int


def judge_http(result: HttpResult) -> str | None:
    """What was wrong with notify's answer to one move (None: as it should be)."""
    move, status = result.move, result.status
    if status is None:
        return f"no answer ({result.error})"
    if status >= 500:
        return f"{status}"
    if move.expect == "refused":
        if not 400 <= status < 500:
            return f"{status} to a bad request"
        if move.must_status and status not in move.statuses:
            return f"{status}, not {'/'.join(map(str, move.statuses))}"
        return None
    if move.expect == "replay":
        if 200 <= status < 300 and result.changed is False:
            return None
        return f"{status} changed={result.changed} to a replay"
    if 200 <= status < 300 and result.changed is True:
        return None
    return f"{status} changed={result.changed} to a good answer"


# The events each scripted referral must end with on referral.events: once each, nothing else from the agency.
SCRIPTED_EVENTS = {"referral.accepted": 1, "referral.in_progress": 1, "referral.completed": 1}
PLAIN_EVENTS = {"referral.accepted": 1}
# The events notify publishes for an agency's answer (or a cancel): a bad answer must produce none of them.
ANSWER_TYPES = frozenset(
    {"referral.accepted", "referral.declined", "referral.in_progress", "referral.completed", "referral.cancelled"}
)


def judge_events(
    expected: dict[str, dict[str, int]], untouched: dict[str, dict[str, int]], events: Iterable[dict[str, Any]]
) -> dict[str, list[str]]:
    """Compare the answers on referral.events with what was meant.

    `expected`: per hostile referral, the answer events it must carry, each exactly that many times.
    `untouched`: per other agency's referral meddled with, the answer events its own agency gave (the rest must not be).
    Returns the referrals whose good answers are not applied, and those that a bad answer changed.
    """
    ids: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    watched = set(expected) | set(untouched)
    for event in events:
        referral = str(event.get("referral_id"))
        if referral in watched and event.get("type") in ANSWER_TYPES:
            # Counted by event id: the topic may hold one event twice (an outbox relay retried), which is one answer.
            ids[referral][str(event["type"])].add(str(event.get("event_id")))
    seen = {referral: Counter({t: len(e) for t, e in types.items()}) for referral, types in ids.items()}
    not_applied, changed = [], []
    for referral, wanted in expected.items():
        got = seen.get(referral, Counter())
        if any(got[t] < n for t, n in wanted.items()):
            not_applied.append(referral)
        if any(got[t] > wanted.get(t, 0) for t in got):
            changed.append(referral)
    for referral, own in untouched.items():
        got = seen.get(referral, Counter())
        if any(got[t] > own.get(t, 0) for t in got):
            changed.append(referral)
    return {"not_applied": sorted(not_applied), "changed": sorted(changed)}


# --- sending ----------------------------------------------------------------------------------------------------


@dataclass
class HostileReport:
    """Everything the hostile agency sent and what came back at once; judged after the drain."""

    agency_id: str
    scripted: dict[str, Target] = field(default_factory=dict)  # referral id → target (the full script)
    plain: dict[str, Target] = field(default_factory=dict)  # answered once, plainly
    http: list[HttpResult] = field(default_factory=list)
    kafka: list[KafkaResult] = field(default_factory=list)
    unknown_to_notify: list[str] = field(default_factory=list)  # referrals notify never showed the agency in time
    without_other: int = 0  # scripts that found no other agency's referral to meddle with
    first_sent: float | None = None  # monotonic
    last_sent: float | None = None


class HostileAgency:
    """Plays one agency with the full script for its first `scripted` referrals and a plain accept for the rest."""

    def __init__(
        self,
        agency_id: str,
        *,
        notify_url: str,
        simulator_url: str,
        bootstrap_servers: str,
        token: str,
        scripted: int,
        huge: int = 2,
        concurrency: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.agency_id = agency_id
        self.notify_url = notify_url.rstrip("/")
        self.simulator_url = simulator_url.rstrip("/")
        self.bootstrap_servers = bootstrap_servers
        self.token = token
        self.scripted_limit = scripted
        self.huge_limit = huge
        self.rng = rng or random.Random()
        self.report = HostileReport(agency_id)
        self._slots = asyncio.Semaphore(concurrency)
        self._others: list[tuple[str, str, str]] = []  # (agency, referral, case) accepted at notify
        # Where to look for them (`take_new`'s arguments): a script waiting for one looks again itself.
        self._looking: tuple[httpx.AsyncClient, set[str], list[str]] | None = None
        self._finding = asyncio.Lock()
        self._handled: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def playing(self, plain_client: httpx.AsyncClient) -> AsyncIterator["HostileAgency"]:
        """The simulator plays the agency silent meanwhile; its default behaviour comes back at the end."""
        behaviour = f"{self.simulator_url}/behaviour/{self.agency_id}"
        answer = await plain_client.put(behaviour, json={"action": "silent"})
        answer.raise_for_status()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=2 * 1024 * 1024,
        )
        await self._producer.start()
        self._client = httpx.AsyncClient(
            timeout=60.0, trust_env=False, headers={"authorization": f"Bearer {self.token}"}
        )
        try:
            yield self
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._producer.stop()
            await self._client.aclose()
            with contextlib.suppress(httpx.HTTPError):
                await plain_client.delete(behaviour)

    async def take_new(self, plain_client: httpx.AsyncClient, case_ids: set[str], other_agencies: list[str]) -> int:
        """Start a script for each referral the agency took since the last call (of these cases); returns how many."""
        answer = await plain_client.get(f"{self.simulator_url}/agencies/{self.agency_id}/referrals", timeout=30.0)
        answer.raise_for_status()
        self._looking = (plain_client, case_ids, other_agencies)
        if len(self._others) < 20:
            await self._find_others(plain_client, case_ids, other_agencies)
        started = 0
        for entry in answer.json()["referrals"]:
            referral, case = str(entry["referral_id"]), str(entry["case_id"])
            if entry.get("decision") != "silent" or referral in self._handled or case not in case_ids:
                continue
            self._handled.add(referral)
            index = len(self._handled) - 1
            self._tasks.append(asyncio.create_task(self._play(index, referral, case), name=f"hostile {referral}"))
            started += 1
        return started

    @property
    def taken(self) -> set[str]:
        return set(self._handled)

    async def finish(self) -> None:
        await asyncio.gather(*self._tasks)

    async def _find_others(self, client: httpx.AsyncClient, case_ids: set[str], agencies: list[str]) -> None:
        async with self._finding:  # one look at a time: the same referral is not listed twice
            await self._look_for_others(client, case_ids, agencies)

    async def _look_for_others(self, client: httpx.AsyncClient, case_ids: set[str], agencies: list[str]) -> None:
        for agency in self.rng.sample(agencies, min(3, len(agencies))):
            answer = await client.get(f"{self.simulator_url}/agencies/{agency}/referrals", timeout=30.0)
            if answer.status_code != 200:
                continue
            known = {o[1] for o in self._others}
            for entry in answer.json()["referrals"]:
                referral, case = str(entry["referral_id"]), str(entry["case_id"])
                if (entry.get("ack") or {}).get("status") == "sent" and referral not in known and case in case_ids:
                    self._others.append((agency, referral, case))

    async def _other(self, deadline: float) -> tuple[str, str, str] | None:
        """Another agency's referral, accepted at notify, to aim foreign answers at. It looks for one itself while
        it waits: `take_new` stops being called once every referral is taken, which can be before any other agency
        has answered (the simulator accepts 5 s after a delivery), and a script waiting on it alone waited in vain
        until its deadline."""
        while not self._others and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if self._looking is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await self._find_others(*self._looking)
        return self.rng.choice(self._others) if self._others else None

    async def _play(self, index: int, referral: str, case: str) -> None:
        async with self._slots:
            deadline = time.monotonic() + 180.0
            if not await self._known_to_notify(referral, deadline):
                self.report.unknown_to_notify.append(referral)
                return
            other = await self._other(deadline)
            if other is None:
                self.report.without_other += 1
                other = ("nobody", str(uuid.uuid4()), str(uuid.uuid4()))
            target = Target(self.agency_id, referral, case, *other)
            if index >= self.scripted_limit:
                self.report.plain[referral] = target
                await self._send_http(target, plain_accept(target))
                return
            self.report.scripted[referral] = target
            huge = index < self.huge_limit
            await self._send_http(target, probes_over_http(target, huge=huge))
            await self._send_kafka(target, probes_over_kafka(target, huge=huge))
            if index % 2 == 0:
                await self._send_http(target, answers_over_http(target))
            else:
                await self._send_kafka(target, answers_over_kafka(target))

    async def _known_to_notify(self, referral: str, deadline: float) -> bool:
        """Answers go out once notify shows the agency the referral (its routing read): before that, an answer on
        the topic is kept aside by notify and a refusal of it is only logged, never dead-lettered."""
        assert self._client is not None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                answer = await self._client.get(f"{self.notify_url}/referrals/{referral}")
                if answer.status_code == 200:
                    return True
            await asyncio.sleep(1.0)
        return False

    def _sent(self) -> None:
        now = time.monotonic()
        self.report.first_sent = self.report.first_sent or now
        self.report.last_sent = now

    async def _send_http(self, target: Target, moves: list[HttpMove]) -> None:
        assert self._client is not None
        for move in moves:
            headers = {"content-type": move.content_type}
            content: bytes | AsyncIterator[bytes] | None = move.body
            if move.chunked and move.body is not None:
                content = _pieces(move.body)
            result = HttpResult(move, target.referral_id, None)
            for attempt in range(2):
                try:
                    answer = await self._client.post(f"{self.notify_url}{move.path}", content=content, headers=headers)
                except httpx.TransportError as error:
                    # A server that fails a request (500) drops its connection: the next request on it, from any
                    # script, fails at the transport. That one is sent once more, so each move gets its own answer.
                    result.error = type(error).__name__
                    if attempt == 0:
                        result.retried_after = result.error
                        if move.chunked and move.body is not None:
                            content = _pieces(move.body)
                        continue
                except httpx.HTTPError as error:
                    result.error = type(error).__name__
                else:
                    result.error = None
                    result.status = answer.status_code
                    if 200 <= answer.status_code < 300:
                        with contextlib.suppress(ValueError, AttributeError):
                            result.changed = bool(answer.json().get("changed"))
                break
            self._sent()
            self.report.http.append(result)

    async def _send_kafka(self, target: Target, moves: list[KafkaMove]) -> None:
        assert self._producer is not None
        topic = f"acks.{self.agency_id}"
        for move in moves:
            key = (move.key or target.case_id).encode()
            sent = await self._producer.send_and_wait(topic, move.value, key=key)
            self._sent()
            self.report.kafka.append(KafkaResult(move, target.referral_id, topic, sent.partition, sent.offset))


async def _pieces(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


# --- figures ----------------------------------------------------------------------------------------------------


def http_figures(results: list[HttpResult]) -> dict[str, Any]:
    """Per move label, notify's answers (status → count); and the wrong ones, judged."""
    by_label: dict[str, Counter[str]] = defaultdict(Counter)
    wrong: Counter[str] = Counter()
    for result in results:
        by_label[result.move.label][str(result.status or result.error)] += 1
        if result.retried_after is not None:
            by_label[result.move.label][f"sent again after {result.retried_after}"] += 1
        verdict = judge_http(result)
        if verdict is not None:
            wrong[f"{result.move.label}: {verdict}"] += 1
    return {"answers": {label: dict(c) for label, c in sorted(by_label.items())}, "wrong": dict(wrong)}

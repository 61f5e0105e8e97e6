"""The victim's personal items for one referral, fetched from intake only when they are about to leave.

Referrals travel on Kafka without personal values: `personal_items` names what the agency may receive. Just before
a channel sends the referral away, the gateway asks intake for those items (`POST /cases/{id}/disclosures`, a
short-lived service token); intake decrypts them, checks the case is not erased and logs the disclosure. The
values live only in memory for the send. A Kafka-native agency, which reads its topic itself, asks the gateway
(`GET /referrals/{id}/personal`) with its own credential, and the gateway asks intake the same way.

Fewer calls per case. Routing makes a case's referrals to its agencies at once, and they reach the gateway side by
side, one per agency's lane, but the lanes drift apart (each waits on its own agency). So when a fetch of records
holds several referrals of one case, the gateway notes them (`expect`); the first lane to ask for the case's items
waits a moment (`window_seconds`) for the others' asks, then one call (`POST /cases/{id}/disclosures/batch`)
fetches the items of every referral of the case asked or expected. Intake access-logs each agency's items at that
fetch. A lane that asked gets its answer at once; an expected referral's answer is kept for its lane, in memory, for
`PREFETCH_TTL_SECONDS` at most, then forgotten (its lane, if it comes later, fetches again). A lone ask, the common
case for a retry, goes as before (`POST /cases/{id}/disclosures`). The lanes stay apart: the shared call is made
before any agency is called, a slow or dead agency never holds it up, and an outage of intake is every waiting
lane's outage, each retried on its own partition as before (nothing is kept from a failed fetch).
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
from kit import metrics
from kit.auth import Role, issue_token
from kit.outages import DependencyUnavailable
from prometheus_client import Counter
from schemas.events import ReferralRequested

from .domain import Failed

log = logging.getLogger(__name__)

# Connections to intake kept open: enough for every lane asking at once.
MAX_CONNECTIONS = 32

SERVICE = "agency-gateway"

# ReferralCase's field for each personal item.
CASE_FIELD = {"victim.name": "victim_name", "victim.phone": "victim_phone", "victim.email": "victim_email"}


@dataclass(frozen=True)
class NotFetched(Failed):
    """Intake did not give the items: the agency was never called, so its circuit breaker is not touched."""

    intake_status: int | None = None  # intake's answer, when it answered


DISCLOSURE_CALLS = Counter(
    "onestop_gateway_disclosure_calls_total",
    "Calls to intake for personal items, and the referrals they fetched for",
    ["kind"],  # single | batch
)
DISCLOSURE_REFERRALS = Counter(
    "onestop_gateway_disclosure_referrals_total", "Referrals whose personal items were fetched from intake"
)

# How long an ask for a case's items waits for the other agencies' asks of the same case.
WINDOW_SECONDS = 0.02
# How long items fetched for a referral whose lane has not asked yet are kept for it, and how long a referral seen in
# a fetch of records is expected.
PREFETCH_TTL_SECONDS = 10.0
DISCLOSURE_PREFETCHED = Counter(
    "onestop_gateway_disclosure_prefetched_total",
    "Referrals' personal items fetched before their lane asked, by what became of them",
    ["outcome"],  # used | expired
)


@dataclass(frozen=True)
class Asked:
    referral_id: UUID
    agency_id: str
    items: tuple[str, ...]
    answer: "asyncio.Future[dict[str, str] | NotFetched]"


@dataclass(frozen=True)
class Expected:
    """A referral seen in a fetch of records, whose lane will ask for its items."""

    agency_id: str
    items: tuple[str, ...]
    at: float  # IntakeDisclosures' clock


@dataclass
class Gathering:
    """The asks of one case's items gathered in one window, fetched together when it ends."""

    asked: dict[UUID, Asked] = field(default_factory=dict)


class IntakeDisclosures:
    def __init__(
        self,
        intake_url: str,
        secret: str | None,
        timeout_seconds: float = 5.0,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret
        self._window = window_seconds
        self._intake_url = intake_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._gathering: dict[UUID, Gathering] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self._expected: dict[UUID, dict[UUID, Expected]] = {}  # case -> referral -> what its lane will ask
        self._prefetched: dict[UUID, tuple[float, dict[str, str] | NotFetched]] = {}  # referral -> (at, answer)
        self._clock = clock
        self._swept_at = clock()

    def _client(self) -> aiohttp.ClientSession:
        """Kept-alive connections, enough for every lane asking at once; aiohttp, as for the webhooks. Made at the
        first call, inside the running event loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def expect(self, case_id: UUID, referral_id: UUID, agency_id: str, items: Sequence[str]) -> None:
        """A referral its lane will ask the items of: fetched with the first ask for its case, kept for its lane."""
        if items and self._secret is not None and referral_id not in self._prefetched:
            self._expected.setdefault(case_id, {})[referral_id] = Expected(agency_id, tuple(items), self._clock())

    def _sweep(self) -> None:
        """Forget what is older than PREFETCH_TTL_SECONDS: kept answers (their lane did not come) and expectations."""
        now = self._clock()
        if now - self._swept_at < 1.0:
            return
        self._swept_at, oldest = now, now - PREFETCH_TTL_SECONDS
        stale = [referral for referral, (at, _) in self._prefetched.items() if at < oldest]
        for referral in stale:
            del self._prefetched[referral]
        DISCLOSURE_PREFETCHED.labels("expired").inc(len(stale))
        for case_id, expected in list(self._expected.items()):
            for referral in [r for r, e in expected.items() if e.at < oldest]:
                del expected[referral]
            if not expected:
                del self._expected[case_id]

    async def items(
        self, case_id: UUID, referral_id: UUID, agency_id: str, items: Sequence[str]
    ) -> dict[str, str] | NotFetched:
        """The values of the referral's personal items (only those the case holds), or why there are none.

        Erased case (410), consent withdrawn (409) and the like are permanent: retrying cannot change them.
        Intake unreachable, failing, or refusing the gateway's own credential raises DependencyUnavailable: the
        system's own outage, for which the referral waits on its partition, using none of the agency's attempts.
        Fetched together with the other agencies' referrals of the case asked for within the window.
        """
        if self._secret is None:
            return NotFetched("the gateway has no AUTH_SECRET to ask intake for the personal items", False)
        self._sweep()
        kept = self._prefetched.pop(referral_id, None)
        if kept is not None:
            DISCLOSURE_PREFETCHED.labels("used").inc()
            return kept[1]
        expected = self._expected.get(case_id)
        if expected is not None:
            expected.pop(referral_id, None)  # asked for now
        gathering = self._gathering.get(case_id)
        if gathering is None or referral_id in gathering.asked:
            gathering = self._gathering[case_id] = Gathering()
            fetch = asyncio.create_task(self._fetch_after_window(case_id, gathering))
            self._fetches.add(fetch)
            fetch.add_done_callback(self._fetches.discard)
        asked = Asked(referral_id, agency_id, tuple(items), asyncio.get_running_loop().create_future())
        gathering.asked[referral_id] = asked
        return await asyncio.shield(asked.answer)  # a lane stopped while waiting leaves the others their answer

    async def _fetch_after_window(self, case_id: UUID, gathering: Gathering) -> None:
        await asyncio.sleep(self._window)
        if self._gathering.get(case_id) is gathering:
            del self._gathering[case_id]
        asked = list(gathering.asked.values())
        # The case's other referrals seen in a fetch of records, whose lanes have not asked yet.
        expected = {r: e for r, e in self._expected.pop(case_id, {}).items() if r not in gathering.asked}
        loop = asyncio.get_running_loop()
        ahead = [Asked(r, e.agency_id, e.items, loop.create_future()) for r, e in expected.items()]
        try:
            answers = await self._fetch(case_id, asked + ahead)
        except asyncio.CancelledError:  # the gateway stopping
            for one in asked:
                one.answer.cancel()
            raise
        except Exception as error:
            for one in asked:
                if not one.answer.done():
                    one.answer.set_exception(error)
            return
        for one in asked:
            if not one.answer.done():
                one.answer.set_result(answers[one.referral_id])
        now = self._clock()
        for one in ahead:
            self._prefetched[one.referral_id] = (now, answers[one.referral_id])

    async def _fetch(self, case_id: UUID, asked: list[Asked]) -> dict[UUID, dict[str, str] | NotFetched]:
        """One call for every referral asked: each one's items or refusal; raises DependencyUnavailable."""
        assert self._secret is not None
        token = issue_token(self._secret, Role.service, SERVICE, ttl_seconds=60)
        bodies = [{"referral_id": str(a.referral_id), "agency_id": a.agency_id, "items": list(a.items)} for a in asked]
        single = len(asked) == 1
        path = f"/cases/{case_id}/disclosures" if single else f"/cases/{case_id}/disclosures/batch"
        body = bodies[0] if single else {"version": 1, "referrals": bodies}
        DISCLOSURE_CALLS.labels("single" if single else "batch").inc()
        DISCLOSURE_REFERRALS.inc(len(asked))
        url, headers = self._intake_url + path, {"authorization": f"Bearer {token}"}
        try:
            async with self._client().post(url, json=body, headers=headers) as answer:
                status, content = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            metrics.DEPENDENCY_OUTAGES.labels("intake", "unreachable").inc()
            raise DependencyUnavailable(f"intake could not be reached ({type(error).__name__})") from None
        if status != 200:
            refused = _refusal(status, _detail(content))
            return {a.referral_id: refused for a in asked}
        if single:
            values: dict[str, str] = json.loads(content)["items"]
            return {asked[0].referral_id: values}
        given: dict[UUID, dict[str, str] | NotFetched] = {}
        for each in json.loads(content)["disclosures"]:
            referral_id, each_status = UUID(each["referral_id"]), int(each["status"])
            given[referral_id] = each["items"] if each_status == 200 else _refusal(each_status, each.get("detail"))
        missing = [a for a in asked if a.referral_id not in given]
        if missing:  # intake answered not all it was asked: its fault, never the agency's
            metrics.DEPENDENCY_OUTAGES.labels("intake", "incomplete").inc()
            raise DependencyUnavailable(f"intake answered {len(asked) - len(missing)} of {len(asked)} referrals")
        return given

    async def with_items(self, referral: ReferralRequested) -> ReferralRequested | NotFetched:
        """The referral with its personal items filled in, ready for a channel to send."""
        if not referral.personal_items:
            return referral
        items = await self.items(referral.case_id, referral.referral_id, referral.agency_id, referral.personal_items)
        if isinstance(items, NotFetched):
            return items
        case = referral.case.model_copy(update={CASE_FIELD.get(item, item): value for item, value in items.items()})
        return referral.model_copy(update={"case": case})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _refusal(status: int, detail: object) -> NotFetched:
    """Intake's refusal of one referral's items, or DependencyUnavailable when the fault is the system's own."""
    if status >= 500 or status == 429:
        metrics.DEPENDENCY_OUTAGES.labels("intake", str(status)).inc()
        raise DependencyUnavailable(f"intake answered {status}")
    if status in (401, 403):
        # The gateway's own token refused: a rotated AUTH_SECRET or a skewed clock between the services, the
        # system's fault and never the agency's. Alerted on; the referral waits until it is put right.
        metrics.DEPENDENCY_OUTAGES.labels("intake", "refused").inc()
        log.error("intake refused the gateway's credential (%d): check AUTH_SECRET and the clocks", status)
        raise DependencyUnavailable(f"intake refused the gateway's credential ({status})")
    clipped = str(detail)[:200] if detail else ""
    return NotFetched(f"intake refused the personal items: {status} {clipped}", False, None, status)


def _detail(content: bytes) -> str:
    """Intake's problem detail (it never holds personal data), clipped."""
    try:
        problem: Any = json.loads(content)
    except ValueError:
        return ""
    detail = problem.get("detail") if isinstance(problem, dict) else None
    return str(detail)[:200] if detail else ""

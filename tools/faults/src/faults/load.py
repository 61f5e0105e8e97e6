"""Load: synthetic cases submitted to intake's HTTP API, bounded in number, concurrency, rate and time.

Each case has its own Idempotency-Key, kept across retries: a 503, a 5xx, a refused connection or a timeout is
retried with the same key, so a case intake acknowledged once is never submitted again as a second case.
"""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Case shapes (synthetic): each sends a case to one or more agencies, so every kind of agency topic carries load.
SHAPES: tuple[dict[str, Any], ...] = (
    {"crime_type": "violent_crime", "needs": ["safety", "legal", "employment"], "urgency": "high"},
    {"crime_type": "stalking", "needs": ["safety", "counselling"], "urgency": "urgent"},
    {"crime_type": "sexual_violence", "needs": ["counselling", "legal", "medical"], "urgency": "high"},
    {"crime_type": "fraud", "needs": ["financial", "legal"], "urgency": "normal"},
    {"crime_type": "property_crime", "needs": ["welfare", "employment"], "urgency": "normal"},
    {"crime_type": "digital_sex_crime", "needs": ["digital_takedown", "counselling"], "urgency": "high"},
)
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
SUMMARY_PREFIX = "Synthetic fault-injection case "


def case_body(index: int, key: str, agencies: list[str]) -> dict[str, Any]:
    """A valid case with consent for every agency; its summary names its key, so it can be found on the topics."""
    shape = SHAPES[index % len(SHAPES)]
    return {
        **shape,
        "region": "seoul",
        "language": "ko",
        "intake_channel": ("visit", "phone", "online", "police")[index % 4],
        "victim": {"name": "Test Victim", "phone": "+82 10-0000-0000", "email": "victim@example.org"},
        "consents": [
            {"agency_id": agency, "granted": True, "sensitive_granted": index % 2 == 0} for agency in agencies
        ],
        "summary": SUMMARY_PREFIX + key,
    }


@dataclass
class Answer:
    """One HTTP attempt: when it started and ended (monotonic seconds), and intake's status or the error's name."""

    started: float
    ended: float
    status: int | None
    error: str | None = None


@dataclass
class Submission:
    index: int
    key: str
    body: dict[str, Any]
    answers: list[Answer] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)  # every case id intake answered for this key (should be one)
    acknowledged_at: float | None = None
    refused: int | None = None  # a final 4xx: the suite sent something intake does not accept

    @property
    def case_id(self) -> str | None:
        return self.case_ids[0] if self.case_ids else None


class Load:
    """Submits `count` cases, at most `concurrency` at a time and `rate` per second; `finished` is set at the end."""

    def __init__(
        self,
        intake_url: str,
        agencies: list[str],
        count: int,
        *,
        key_prefix: str,
        concurrency: int = 8,
        rate: float = 20.0,
        give_up_after: float = 300.0,
        request_timeout: float = 15.0,
        token: str | None = None,
    ) -> None:
        self.intake_url = intake_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {token}"} if token else {}  # a caseworker's
        self.concurrency = concurrency
        self.rate = rate
        self.give_up_after = give_up_after
        self.request_timeout = request_timeout
        self.submissions = [
            Submission(i, f"{key_prefix}-{i:06d}", case_body(i, f"{key_prefix}-{i:06d}", agencies))
            for i in range(count)
        ]
        self.finished = asyncio.Event()
        self.started_at: float | None = None
        self.ended_at: float | None = None

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.finished.is_set()

    @property
    def acknowledged(self) -> list[Submission]:
        return [s for s in self.submissions if s.case_id is not None]

    async def run(self) -> None:
        self.started_at = time.monotonic()
        slots = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        try:
            async with httpx.AsyncClient(
                timeout=self.request_timeout, limits=limits, trust_env=False, headers=self.headers
            ) as client:

                async def submit_in_turn(submission: Submission) -> None:
                    # Paced: case i starts no earlier than i / rate seconds after the first.
                    await asyncio.sleep(max(0.0, self.started_at + submission.index / self.rate - time.monotonic()))  # type: ignore[operator]
                    async with slots:
                        await self._submit(client, submission)

                await asyncio.gather(*(submit_in_turn(s) for s in self.submissions))
        finally:
            self.ended_at = time.monotonic()
            self.finished.set()

    async def _submit(self, client: httpx.AsyncClient, submission: Submission) -> None:
        deadline = time.monotonic() + self.give_up_after
        pause = 0.2
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = await client.post(
                    f"{self.intake_url}/cases", json=submission.body, headers={"Idempotency-Key": submission.key}
                )
            except httpx.HTTPError as error:
                submission.answers.append(Answer(started, time.monotonic(), None, type(error).__name__))
            else:
                submission.answers.append(Answer(started, time.monotonic(), response.status_code))
                if response.status_code in (200, 201):
                    case_id = str(response.json()["case_id"])
                    if case_id not in submission.case_ids:
                        submission.case_ids.append(case_id)
                    submission.acknowledged_at = submission.acknowledged_at or time.monotonic()
                    return
                if response.status_code not in RETRIED_STATUSES:
                    submission.refused = response.status_code
                    return
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 2.0)

    async def confirm(self, client: httpx.AsyncClient, submission: Submission) -> None:
        """Ask again with the same key: intake must answer the same case id (a replay), never a new case."""
        response = await client.post(
            f"{self.intake_url}/cases", json=submission.body, headers={"Idempotency-Key": submission.key}
        )
        if response.status_code in (200, 201):
            case_id = str(response.json()["case_id"])
            if case_id not in submission.case_ids:
                submission.case_ids.append(case_id)

    def answer_counts(self) -> dict[str, int]:
        """How intake answered, over every attempt: `201`, `503`, `ConnectError`, ..."""
        counts: Counter[str] = Counter()
        for submission in self.submissions:
            counts.update(str(a.status) if a.status is not None else str(a.error) for a in submission.answers)
        return dict(sorted(counts.items()))

"""The victim's personal items for one referral, fetched from intake only when they are about to leave.

Referrals travel on Kafka without personal values: `personal_items` names what the agency may receive. Just before
a channel sends the referral away, the gateway asks intake for those items (`POST /cases/{id}/disclosures`, a
short-lived service token); intake decrypts them, checks the case is not erased and logs the disclosure. The
values live only in memory for the send. A Kafka-native agency, which reads its topic itself, asks the gateway
(`GET /referrals/{id}/personal`) with its own credential, and the gateway asks intake the same way.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from kit import metrics
from kit.auth import Role, issue_token
from kit.outages import DependencyUnavailable
from schemas.events import ReferralRequested

from .domain import Failed

log = logging.getLogger(__name__)

SERVICE = "agency-gateway"

# ReferralCase's field for each personal item.
CASE_FIELD = {"victim.name": "victim_name", "victim.phone": "victim_phone", "victim.email": "victim_email"}


@dataclass(frozen=True)
class NotFetched(Failed):
    """Intake did not give the items: the agency was never called, so its circuit breaker is not touched."""

    intake_status: int | None = None  # intake's answer, when it answered


class IntakeDisclosures:
    def __init__(self, intake_url: str, secret: str | None, timeout_seconds: float = 5.0) -> None:
        self._secret = secret
        self._client = httpx.AsyncClient(base_url=intake_url, timeout=timeout_seconds)

    async def items(
        self, case_id: UUID, referral_id: UUID, agency_id: str, items: Sequence[str]
    ) -> dict[str, str] | NotFetched:
        """The values of the referral's personal items (only those the case holds), or why there are none.

        Erased case (410), consent withdrawn (409) and the like are permanent: retrying cannot change them.
        Intake unreachable, failing, or refusing the gateway's own credential raises DependencyUnavailable: the
        system's own outage, for which the referral waits on its partition, using none of the agency's attempts.
        """
        if self._secret is None:
            return NotFetched("the gateway has no AUTH_SECRET to ask intake for the personal items", False)
        token = issue_token(self._secret, Role.service, SERVICE, ttl_seconds=60)
        body = {"referral_id": str(referral_id), "agency_id": agency_id, "items": list(items)}
        try:
            answer = await self._client.post(
                f"/cases/{case_id}/disclosures", json=body, headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            metrics.DEPENDENCY_OUTAGES.labels("intake", "unreachable").inc()
            raise DependencyUnavailable(f"intake could not be reached ({type(error).__name__})") from None
        status = answer.status_code
        if status == 200:
            values: dict[str, str] = answer.json()["items"]
            return values
        if status >= 500 or status == 429:
            metrics.DEPENDENCY_OUTAGES.labels("intake", str(status)).inc()
            raise DependencyUnavailable(f"intake answered {status}")
        if status in (401, 403):
            # The gateway's own token refused: a rotated AUTH_SECRET or a skewed clock between the services, the
            # system's fault and never the agency's. Alerted on; the referral waits until it is put right.
            metrics.DEPENDENCY_OUTAGES.labels("intake", "refused").inc()
            log.error("intake refused the gateway's credential (%d): check AUTH_SECRET and the clocks", status)
            raise DependencyUnavailable(f"intake refused the gateway's credential ({status})")
        return NotFetched(f"intake refused the personal items: {status} {_detail(answer)}", False, None, status)

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
        await self._client.aclose()


def _detail(answer: httpx.Response) -> str:
    """Intake's problem detail (it never holds personal data), clipped."""
    try:
        problem: Any = answer.json()
    except ValueError:
        return ""
    detail = problem.get("detail") if isinstance(problem, dict) else None
    return str(detail)[:200] if detail else ""

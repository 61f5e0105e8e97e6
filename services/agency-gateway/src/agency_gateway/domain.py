"""Delivery rules, pure: what to do after an attempt, how long to wait, when to stop calling an agency, what it sees."""

from dataclasses import dataclass

from kit.backoff import backoff
from schemas.events import ReferralRequested


@dataclass(frozen=True)
class Delivered:
    """The agency has the referral. `agency_answer` is what it answered (an id of its own, say), if anything."""

    detail: str
    agency_status: int | None = None
    agency_answer: str | None = None


@dataclass(frozen=True)
class Failed:
    """The agency does not have the referral. `transient`: trying again later may work (busy, down, timed out)."""

    detail: str
    transient: bool
    agency_status: int | None = None


Outcome = Delivered | Failed


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempts: int, jitter: float) -> float:
        """Exponential backoff after `attempts` failed attempts, spread by `jitter` in [0, 1) to 50–150%."""
        return backoff(attempts, self.base_seconds, self.max_seconds, jitter)


@dataclass(frozen=True)
class Done:
    attempts: int


@dataclass(frozen=True)
class Retry:
    attempts: int
    delay_seconds: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    attempts: int
    dlq_reason: str  # a short code for the DLQ header: permanent_failure or retries_exhausted
    reason: str


def after_attempt(outcome: Outcome, attempts: int, policy: RetryPolicy, jitter: float) -> Done | Retry | GiveUp:
    """The next step once the `attempts`-th attempt has ended with `outcome`."""
    if isinstance(outcome, Delivered):
        return Done(attempts)
    if not outcome.transient:
        return GiveUp(attempts, "permanent_failure", outcome.detail)
    if attempts >= policy.max_attempts:
        return GiveUp(attempts, "retries_exhausted", f"{outcome.detail}; gave up after {attempts} attempts")
    return Retry(attempts, policy.delay(attempts, jitter), outcome.detail)


class CircuitBreaker:
    """Stops calling an agency after `threshold` transient failures in a row, for `open_seconds`.

    Once the pause is over the next attempt goes through as a probe: a success closes the circuit, a failure
    opens it again at once. Any answer that is not transient shows the agency is up and closes it too.
    """

    def __init__(self, threshold: int, open_seconds: float) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.consecutive_failures = 0
        self.open_until = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    def is_open(self, now: float) -> bool:
        return not self.allows(now)

    @property
    def tripped(self) -> bool:
        """Open, or letting a probe through after the pause: not closed until an attempt succeeds."""
        return self.consecutive_failures >= self.threshold

    def record(self, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, Failed) and outcome.transient:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.threshold:
                self.open_until = now + self.open_seconds
        else:
            self.consecutive_failures = 0
            self.open_until = 0.0


# The catalogue's field names and the referral's: `victim.name` is `victim_name` in ReferralCase.
_ALWAYS_SENT = frozenset({"crime_type", "needs", "urgency"})


def minimise(referral: ReferralRequested, allowed_fields: list[str]) -> tuple[ReferralRequested, list[str]]:
    """The referral with only the case fields the agency's catalogue entry allows, and the names of any dropped.

    Routing already builds the referral that way; this is the last check before the data leaves.
    """
    allowed = _ALWAYS_SENT | {name.replace(".", "_") for name in allowed_fields}
    dropped = sorted(name for name, value in referral.case if value is not None and name not in allowed)
    if not dropped:
        return referral, []
    case = referral.case.model_copy(update=dict.fromkeys(dropped))
    return referral.model_copy(update={"case": case}), dropped

"""How a simulated agency answers a referral: pure decisions, no I/O."""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from schemas.vocab import DeclineReason

DEFAULT_KEY = "default"

Delay = Annotated[float, Field(ge=0, le=3600)]
Note = Annotated[str, Field(min_length=1, max_length=500)]


class _Behaviour(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accept(_Behaviour):
    """Take the referral, then accept it after `delay_seconds`."""

    action: Literal["accept"]
    delay_seconds: Delay = 0.5
    note: Note | None = None


class Decline(_Behaviour):
    """Take the referral, then decline it with `reason` after `delay_seconds`."""

    action: Literal["decline"]
    reason: DeclineReason = DeclineReason.other
    delay_seconds: Delay = 0.5
    note: Note | None = None


class Silent(_Behaviour):
    """Take the referral and never acknowledge it (to exercise SLA timers)."""

    action: Literal["silent"]


class Fail(_Behaviour):
    """Answer the webhook with `status` the first `times` deliveries of each referral (None: always), then accept."""

    action: Literal["fail"]
    status: Annotated[int, Field(ge=400, le=599)] = 503
    times: Annotated[int, Field(ge=1)] | None = 3
    delay_seconds: Delay = 0.5


Behaviour = Annotated[Accept | Decline | Silent | Fail, Field(discriminator="action")]
BEHAVIOUR: TypeAdapter[Behaviour] = TypeAdapter(Behaviour)

STARTING_DEFAULT: Behaviour = Accept(action="accept", delay_seconds=0.5)


class BehaviourBook:
    """The behaviour of every agency: its own if set, else the default."""

    def __init__(self, behaviours: dict[str, Behaviour] | None = None) -> None:
        behaviours = dict(behaviours or {})
        self.default: Behaviour = behaviours.pop(DEFAULT_KEY, STARTING_DEFAULT)
        self.agencies: dict[str, Behaviour] = behaviours

    def for_agency(self, agency_id: str) -> Behaviour:
        return self.agencies.get(agency_id, self.default)

    def set(self, agency_id: str, behaviour: Behaviour) -> None:
        if agency_id == DEFAULT_KEY:
            self.default = behaviour
        else:
            self.agencies[agency_id] = behaviour

    def unset(self, agency_id: str) -> None:
        self.agencies.pop(agency_id, None)

    def as_dict(self) -> dict[str, Behaviour]:
        return {DEFAULT_KEY: self.default, **dict(sorted(self.agencies.items()))}


@dataclass(frozen=True)
class AckPlan:
    """The acknowledgement to send to notify once `delay_seconds` have passed."""

    action: Literal["accept", "decline"]
    delay_seconds: float
    note: str
    reason: DeclineReason | None = None


@dataclass(frozen=True)
class Answer:
    """What the agency does with one delivery of a referral."""

    status: int  # the webhook's HTTP status: 202, or the simulated failure
    duplicate: bool
    decision: Literal["accept", "decline", "silent"] | None  # None: the delivery was not taken
    ack: AckPlan | None


def answer(behaviour: Behaviour, *, taken_before: bool, failures_before: int) -> Answer:
    """Decide one delivery. A referral already taken is a duplicate: answered 202 again, acted on never."""
    if taken_before:
        return Answer(status=202, duplicate=True, decision=None, ack=None)
    if isinstance(behaviour, Fail):
        if behaviour.times is None or failures_before < behaviour.times:
            return Answer(status=behaviour.status, duplicate=False, decision=None, ack=None)
        return _accept(behaviour.delay_seconds, None)
    if isinstance(behaviour, Accept):
        return _accept(behaviour.delay_seconds, behaviour.note)
    if isinstance(behaviour, Decline):
        note = behaviour.note or f"Declined by the agency simulator ({behaviour.reason.value})"
        plan = AckPlan(action="decline", delay_seconds=behaviour.delay_seconds, note=note, reason=behaviour.reason)
        return Answer(status=202, duplicate=False, decision="decline", ack=plan)
    return Answer(status=202, duplicate=False, decision="silent", ack=None)


def _accept(delay_seconds: float, note: str | None) -> Answer:
    plan = AckPlan(action="accept", delay_seconds=delay_seconds, note=note or "Accepted by the agency simulator")
    return Answer(status=202, duplicate=False, decision="accept", ack=plan)

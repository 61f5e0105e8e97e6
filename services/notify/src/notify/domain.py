"""The referral state machine and a case's overall state, pure: no I/O, no framework.

Two ways a referral's state changes, with different rules:
- a *command* (an agency or staff acting now, over HTTP or an acknowledgement topic) is checked against
  `ALLOWED` from the current state: a transition not in the table is refused and changes nothing;
- a *fact* (an event already recorded elsewhere — the gateway's delivered or failed, an event replayed) cannot be
  refused, only placed: the referral keeps the fact of highest `RANK`, so the state a set of facts leads to does
  not depend on the order they arrive in (a late "delivered" after "accepted" changes nothing).
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from schemas.vocab import REFERRAL_STATE_RANK
from schemas.vocab import ReferralState as S

# The agency may answer before the gateway's "delivered" is recorded, so accept/decline are allowed from requested.
ALLOWED: dict[S, frozenset[S]] = {
    S.requested: frozenset({S.delivered, S.accepted, S.declined, S.failed, S.cancelled}),
    S.delivered: frozenset({S.accepted, S.declined, S.cancelled}),
    S.accepted: frozenset({S.in_progress, S.completed, S.cancelled}),
    S.in_progress: frozenset({S.completed, S.cancelled}),
    S.declined: frozenset(),
    S.completed: frozenset(),
    S.cancelled: frozenset(),
    S.failed: frozenset(),
}

RANK = REFERRAL_STATE_RANK  # a total order extending ALLOWED: every allowed transition goes up (a unit test checks)

AWAITING_ACK = frozenset({S.requested, S.delivered})  # the acknowledgement deadline runs
FINAL = frozenset(s for s, targets in ALLOWED.items() if not targets)


def _reachable(start: S) -> frozenset[S]:
    seen: set[S] = set()
    frontier = set(ALLOWED[start])
    while frontier:
        state = frontier.pop()
        seen.add(state)
        frontier |= ALLOWED[state] - seen
    return frozenset(seen)


# LATER[s]: the states a referral can reach from s. An event for s arriving in one of them is late, not wrong.
LATER: dict[S, frozenset[S]] = {state: _reachable(state) for state in S}


class Change(StrEnum):
    applied = "applied"
    duplicate = "duplicate"  # already in that state: a no-op
    stale = "stale"  # an earlier step reported after a later one: a no-op
    refused = "refused"  # not allowed from the current state


def change(current: S, target: S) -> Change:
    """What a command asking for `target` does to a referral in `current`."""
    if current == target:
        return Change.duplicate
    if target in ALLOWED[current]:
        return Change.applied
    if current in LATER[target]:
        return Change.stale
    return Change.refused


@dataclass(frozen=True)
class Fact:
    """What one event says about a referral's state, with the details that state carries."""

    state: S
    occurred_at: datetime
    event_id: UUID
    reason: str | None = None  # decline, not-successful, cancel or failure reason
    outcome: str | None = None  # completion outcome


@dataclass(frozen=True)
class Standing:
    """A referral's state and the fact it comes from. A function of the set of facts, not of their order."""

    state: S
    changed_at: datetime
    event_id: UUID | None  # None only for a referral known before any fact about its state
    reason: str | None = None
    outcome: str | None = None

    @classmethod
    def of(cls, fact: Fact) -> "Standing":
        return cls(fact.state, fact.occurred_at, fact.event_id, fact.reason, fact.outcome)


def _outranks(fact: Fact, standing: Standing) -> bool:
    if fact.state != standing.state:
        return RANK[fact.state] > RANK[standing.state]
    # Two facts for one state (a replay with a new id): the earliest stands, so the details are order-free too.
    if standing.event_id is None:
        return True
    ours = (fact.occurred_at, str(fact.event_id), fact.reason or "", fact.outcome or "")
    theirs = (standing.changed_at, str(standing.event_id), standing.reason or "", standing.outcome or "")
    return ours < theirs


def settle(standing: Standing | None, fact: Fact) -> tuple[Standing, Change]:
    """Place a fact: the referral keeps whichever of the two ranks higher (a join, so any arrival order agrees)."""
    if standing is None:
        return Standing.of(fact), Change.applied
    if not _outranks(fact, standing):
        return standing, Change.duplicate if fact.state == standing.state else Change.stale
    return Standing.of(fact), Change.duplicate if fact.state == standing.state else Change.applied


def revived(standing: Standing, fact: Fact, replaced: bool) -> bool:
    """A referral whose delivery gave up (`failed`) is delivered after all when an operator replays it from the DLQ:
    a delivery later than the failure stands, unless routing already gave its needs to another agency (the gateway
    then never delivers it again). The one exception to `settle`'s order-free rule, and it needs an order: a
    delivery can only come after the failure by a replay."""
    return (
        standing.state is S.failed
        and fact.state is S.delivered
        and not replaced
        and fact.occurred_at > standing.changed_at
    )


def answered_after_replay(current: S, target: S, replaced: bool) -> bool:
    """An agency answering a referral whose delivery failed: it holds the referral (whose id is random) only if an
    operator's replay from the DLQ delivered it, and it may answer before notify has read that delivery. Unless
    routing gave the needs to another agency, the answer is taken as an answer to a delivered referral."""
    return current is S.failed and target in ALLOWED[S.delivered] - {S.cancelled} and not replaced


# --- a case's overall state ---------------------------------------------------------------------------


class CaseStatus(StrEnum):
    open = "open"  # referrals still waiting for an agency's answer
    all_accepted = "all_accepted"  # every referral still standing has been taken up
    needs_attention = "needs_attention"  # staff must act: see Attention
    closed = "closed"  # every referral has ended and none needs anyone


class Attention(StrEnum):
    overdue = "overdue"  # the agency let its acknowledgement deadline pass
    declined_without_new_agency = "declined_without_new_agency"
    failed_without_new_agency = "failed_without_new_agency"  # delivery gave up
    follow_up_open = "follow_up_open"  # a completed referral's follow-up: check with the victim
    reroute_proposed = "reroute_proposed"  # the same, completed without success: re-routing waits for the caseworker


@dataclass(frozen=True)
class ReferralSummary:
    """What a case's overall state is derived from, per referral."""

    state: S
    overdue: bool  # its acknowledgement deadline passed unanswered
    replaced: bool  # routing found another agency for its needs


def attention(referral: ReferralSummary) -> Attention | None:
    """Why a referral needs the staff, if it does. A replaced referral's needs are someone else's now."""
    if referral.state in AWAITING_ACK and referral.overdue:
        return Attention.overdue
    if referral.state is S.declined and not referral.replaced:
        return Attention.declined_without_new_agency
    if referral.state is S.failed and not referral.replaced:
        return Attention.failed_without_new_agency
    return None


def superseded(referral: ReferralSummary) -> bool:
    """Whether routing's new agency for a referral's needs ends it: only an overdue referral still unanswered.

    Cancelled only once another agency has the needs, not at the breach: while nobody else can take them, a late
    answer from the silent agency is still the victim's best chance. A declined or failed one has ended already.
    """
    return referral.state in AWAITING_ACK and referral.overdue


_TAKEN_UP = frozenset({S.accepted, S.in_progress, S.completed})


def case_status(referrals: list[ReferralSummary], pending_needs: int = 0, open_follow_ups: int = 0) -> CaseStatus:
    """The case as staff see it; a need no agency could take yet (pending) needs their attention too, and so does a
    follow-up task still open (a completed referral: check with the victim, perhaps re-route)."""
    if pending_needs or open_follow_ups or any(attention(r) is not None for r in referrals):
        return CaseStatus.needs_attention
    if referrals and all(r.state in FINAL for r in referrals):
        return CaseStatus.closed
    # Declined or failed referrals left here were replaced; cancelled ones were ended by the staff.
    standing = [r for r in referrals if r.state not in (S.declined, S.failed, S.cancelled)]
    if standing and all(r.state in _TAKEN_UP for r in standing):
        return CaseStatus.all_accepted
    return CaseStatus.open

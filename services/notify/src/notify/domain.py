"""The referral state machine, pure: which transitions are allowed, and what an event does to a state."""

from enum import StrEnum

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
    if current == target:
        return Change.duplicate
    if target in ALLOWED[current]:
        return Change.applied
    if current in LATER[target]:
        return Change.stale
    return Change.refused

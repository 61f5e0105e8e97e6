"""Follow-ups after an agency completes a referral, pure: what the caseworker's task asks, when it is due, what it
proposes, and which closings a task allows.

A completed referral opens one task for the case's caseworker: check with the victim whether the help arrived. The
victim's contact rules decide what kind of task it is — a contact task due at a moment inside their safe hours, or,
when they must not be contacted (or named no safe channel), a review on file that says so. A `not_successful`
completion proposes re-routing the referral's needs to another agency; nothing is re-routed unless the caseworker,
having heard the victim, accepts it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid5

from kit.errors import Conflict, Invalid
from schemas.vocab import (
    FOLLOW_UP_CLOSINGS,
    CompletionOutcome,
    FollowUpKind,
    FollowUpOutcome,
    FollowUpProposal,
    NoContactReason,
)

from .notices import VictimReach, next_safe_moment

# One task per completed referral: its id follows from the referral's, the same on every redelivery.
_TASKS = UUID("6d1f3a52-8f0e-4c1e-9d7a-3b0f2f5a9c11")


def task_id_of(referral_id: UUID) -> UUID:
    return uuid5(_TASKS, str(referral_id))


@dataclass(frozen=True)
class FollowUp:
    """The task a completion opens: its kind, why it is not a contact task (if not), when it is due, its proposal."""

    kind: FollowUpKind
    no_contact: NoContactReason | None
    due_at: datetime
    proposal: FollowUpProposal | None


def follow_up(outcome: CompletionOutcome, reach: VictimReach, completed_at: datetime, after: timedelta) -> FollowUp:
    """The follow-up of a completion at `completed_at`: due `after` it, moved to the victim's next safe hour for a
    contact task; a review on file, due `after` it, when the victim must not be contacted or has no safe channel."""
    proposal = FollowUpProposal.reroute if outcome is CompletionOutcome.not_successful else None
    due = completed_at + after
    if reach.do_not_contact:
        return FollowUp(FollowUpKind.review_without_contact, NoContactReason.do_not_contact, due, proposal)
    if reach.channel is None:
        return FollowUp(FollowUpKind.review_without_contact, NoContactReason.no_safe_channel, due, proposal)
    return FollowUp(FollowUpKind.check_with_victim, None, next_safe_moment(due, reach.safe_hours), proposal)


class TaskState(StrEnum):
    open = "open"
    done = "done"


class ProposalState(StrEnum):
    proposed = "proposed"  # waiting for the caseworker
    accepted = "accepted"  # the needs went back to routing
    declined = "declined"  # the task was closed otherwise


def proposal_state(proposal: FollowUpProposal | None, closing: FollowUpOutcome | None) -> ProposalState | None:
    if proposal is None:
        return None
    if closing is None:
        return ProposalState.proposed
    return ProposalState.accepted if closing is FollowUpOutcome.rerouted else ProposalState.declined


def check_closing(state: TaskState, outcome: FollowUpOutcome) -> None:
    """A caseworker closes an open task with an outcome of their own (Invalid, Conflict: nothing changes)."""
    if outcome not in FOLLOW_UP_CLOSINGS:
        raise Invalid(f"{outcome} is not an outcome a caseworker gives; use one of {sorted(FOLLOW_UP_CLOSINGS)}")
    if state is not TaskState.open:
        raise Conflict("the follow-up is done already", reason="follow_up_done")


def check_reroute(state: TaskState, proposal: FollowUpProposal | None, needs: list[str], case_closed: bool) -> None:
    """Accepting the re-routing proposal: an open task that proposes it, for needs, of a case still open."""
    if state is not TaskState.open:
        raise Conflict("the follow-up is done already", reason="follow_up_done")
    if proposal is not FollowUpProposal.reroute or not needs:
        raise Conflict("this follow-up proposes no re-routing", reason="nothing_proposed")
    if case_closed:
        raise Conflict("the case is closed: nothing is routed for it any more", reason="case_closed")

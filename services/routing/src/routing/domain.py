"""Routing rules, pure: a case, the catalogue, the rules and the moment in; the chosen agencies and the reasons out.

No I/O here: what routing knows besides the case (the time, the places agencies reported, the agencies this case
may not go to again) is passed in, so the same input always gives the same decision.
"""

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from schemas.calendar import is_open, local_moment, next_opening
from schemas.catalogue import SENSITIVE_FIELDS, Agency, Catalogue
from schemas.events import CaseDetails, CaseFacts, Consent, ConsentOverride, PersonalItem, ReferralCase, RoutingDecision
from schemas.vocab import Need, ReroutingCause, WithdrawalScope

from .rules import RankKey, Rules

_REASON_LIMIT = 500  # RoutingDecision.reason is a ShortText


def new_referral_id() -> UUID:
    """Random, so that an agency, which knows the case id, cannot work out the ids of the case's other referrals
    (and so where else the victim was referred). Made once, in the transaction that records the routing."""
    return uuid.uuid4()


class ConsentBasis(StrEnum):
    """Why routing may give this agency the victim's data."""

    recorded = "recorded"  # the victim consented (PIPA Art. 17)
    override = "override"  # no consent, but a recorded legal basis (PIPA Art. 18(2))
    to_ask = "to_ask"  # preview only: consent still to be asked


@dataclass
class PlannedReferral:
    agency: Agency
    needs: list[Need] = field(default_factory=list)
    consent: ConsentBasis = ConsentBasis.recorded
    override: ConsentOverride | None = None


@dataclass(frozen=True)
class Plan:
    referrals: list[PlannedReferral]
    decisions: list[RoutingDecision]
    uncovered_needs: list[Need]


def serves_region(agency: Agency, region: str) -> bool:
    return "*" in agency.regions or region.casefold() in {r.casefold() for r in agency.regions}


def hubs_for(case: CaseFacts, catalogue: Catalogue, rules: Rules) -> dict[str, tuple[int, str]]:
    """The crime-type hubs of this case: agency id → (rank of the first hub rule selecting it, its note)."""
    hubs: dict[str, tuple[int, str]] = {}
    for index, hub in enumerate(rules.hubs):
        if case.crime_type not in hub.crime_types or case.urgency not in hub.urgencies:
            continue
        for agency in catalogue:
            if (
                (not hub.agencies or agency.id in hub.agencies)
                and (not hub.always_open or agency.hours.always_open)
                and (not hub.specialists or case.crime_type in agency.specialties)
            ):
                hubs.setdefault(agency.id, (index, hub.note))
    return hubs


def excluded_after(cause: ReroutingCause) -> str:
    """Why an agency whose referral ended this way never gets this case again."""
    return {
        ReroutingCause.declined: "declined this case; re-routing never returns to it",
        ReroutingCause.delivery_failed: "the referral could not be delivered to it; re-routing never returns to it",
        ReroutingCause.deadline_breached: "missed its acknowledgement deadline for this case",
        ReroutingCause.not_successful: "completed its referral without success; the caseworker asked for another",
    }[cause]


ALREADY_REFERRED = "already has a referral for this case"
CONSENT_WITHDRAWN = "the victim withdrew their consent to this agency"


def as_consented_now(
    case: CaseFacts, recorded: Sequence[Consent], withdrawn: Mapping[str, WithdrawalScope]
) -> tuple[CaseFacts, dict[str, str]]:
    """The case with its consents as they stand now: each consent recorded since submission replaces the one the
    case came with (or is added), then the withdrawals apply (`after_withdrawals`) — a withdrawal keeps its agency out
    of the case for good, whatever is recorded later."""
    newer = {c.agency_id: c for c in recorded}
    consents = [newer.pop(c.agency_id, c) for c in case.consents] + list(newer.values())
    return after_withdrawals(case.model_copy(update={"consents": consents}), withdrawn)


def after_withdrawals(case: CaseFacts, withdrawn: Mapping[str, WithdrawalScope]) -> tuple[CaseFacts, dict[str, str]]:
    """The case with its consents as the victim's withdrawals leave them, and the agencies it may never go to (with
    why): a withdrawn consent excludes its agency, a withdrawn sensitive-items consent only withholds those items."""
    consents = [_less(c, withdrawn[c.agency_id]) if c.agency_id in withdrawn else c for c in case.consents]
    excluded = {agency_id: CONSENT_WITHDRAWN for agency_id, s in withdrawn.items() if s is WithdrawalScope.all}
    return case.model_copy(update={"consents": consents}), excluded


def _less(consent: Consent, withdrawn: WithdrawalScope) -> Consent:
    if withdrawn is WithdrawalScope.all:
        return consent.model_copy(update={"granted": False, "sensitive_granted": False})
    return consent.model_copy(update={"sensitive_granted": False})


@dataclass
class _Routing:
    """One routing pass: the inputs, and what has been decided so far."""

    case: CaseFacts
    catalogue: Catalogue
    rules: Rules
    now: datetime
    remaining: Mapping[str, int]
    excluded: Mapping[str, str]
    assume_consent: bool
    hubs: dict[str, tuple[int, str]]
    consents: dict[str, Consent]
    chosen: dict[str, PlannedReferral] = field(default_factory=dict)
    skipped: dict[str, RoutingDecision] = field(default_factory=dict)
    passed_over: dict[str, int] = field(default_factory=dict)  # chosen agency → candidates skipped before it

    def rank(self, need: Need) -> list[Agency]:
        keys: dict[RankKey, Callable[[Agency], int]] = {
            "hub": lambda a: self.hubs.get(a.id, (len(self.rules.hubs), ""))[0],
            "already_chosen": lambda a: 0 if a.id in self.chosen else 1,
            "specialty": lambda a: 0 if self.case.crime_type in a.specialties else 1,
            "language": lambda a: 0 if self.case.language in a.languages else 1,
            "priority": lambda a: a.priority,
        }
        order = [keys[k] for k in self.rules.rank_by]
        offering = (a for a in self.catalogue if need in a.services)
        return sorted(offering, key=lambda a: (*(key(a) for key in order), a.id))

    def open_now(self, agency: Agency) -> bool:
        return is_open(agency.hours, self.now, self.rules.public_holidays)

    def closed_for(self, agency: Agency, need: Need) -> list[str]:
        """Why this agency cannot take this need now because of its hours: only a time-critical need waits for no
        one; any other need goes to a closed agency, which acts when it opens."""
        if not self.rules.hours.is_time_critical(need, self.case.urgency) or self.open_now(agency):
            return []
        when = local_moment(agency.hours, self.now)
        return [f"closed now ({when}) and {need} is time-critical for an {self.case.urgency} case"]

    def obstacles(self, agency: Agency, need: Need) -> list[str]:
        """Every reason this agency cannot take this need of the case now; none means it can."""
        case, found = self.case, []
        if agency.id in self.excluded:
            found.append(self.excluded[agency.id])
        if not serves_region(agency, case.region):
            found.append(f"does not serve the case's region (serves {', '.join(agency.regions)})")
        if agency.only_specialties and case.crime_type not in agency.specialties:
            found.append(f"takes only {', '.join(agency.specialties)} cases")
        consent = self.consents.get(agency.id)
        if consent is not None and not consent.granted and consent.override is None:
            found.append("the victim refused consent to this agency")
        elif consent is None and not self.assume_consent:
            found.append("no consent recorded for this agency")
        if self.remaining.get(agency.id, agency.capacity) <= 0:
            reported = agency.id in self.remaining
            found.append("full: no places left, as the agency reported" if reported else "full: catalogue capacity 0")
        return found + self.closed_for(agency, need)

    def take(self, agency: Agency, need: Need, passed_over: int) -> None:
        consent = self.consents.get(agency.id)
        if consent is not None and consent.granted:
            basis, override = ConsentBasis.recorded, None
        elif consent is not None and consent.override is not None:
            basis, override = ConsentBasis.override, consent.override
        else:
            basis, override = ConsentBasis.to_ask, None
        self.chosen[agency.id] = PlannedReferral(agency, [need], basis, override)
        self.passed_over[agency.id] = passed_over

    def skip(self, agency: Agency, need: Need, reasons: list[str]) -> None:
        earlier = self.skipped.get(agency.id)
        needs = [*earlier.needs, need] if earlier is not None else [need]
        self.skipped[agency.id] = RoutingDecision(
            agency_id=agency.id, chosen=False, needs=needs, reason=_clip("skipped: " + "; ".join(reasons))
        )

    def route(self, need: Need) -> bool:
        """Give the need to the best candidate that can take it; False when none can."""
        for passed_over, agency in enumerate(self.rank(need)):
            if agency.id in self.chosen:
                if self.closed_for(agency, need):  # chosen for a need that can wait; this one cannot
                    continue
                self.chosen[agency.id].needs.append(need)
                return True
            reasons = self.obstacles(agency, need)
            if not reasons:
                self.take(agency, need, passed_over)
                return True
            self.skip(agency, need, reasons)
        return False

    def explain(self, referral: PlannedReferral) -> RoutingDecision:
        agency, case = referral.agency, self.case
        parts = [f"chosen for {', '.join(referral.needs)}"]
        if agency.id in self.hubs:
            parts.append(self.hubs[agency.id][1])
        elif case.crime_type in agency.specialties:
            parts.append(f"specialist in {case.crime_type} cases")
        else:
            parts.append(f"best-ranked candidate that could take it (catalogue priority {agency.priority})")
        if len(referral.needs) > 1:
            parts.append("one referral for all the needs it covers")
        if self.passed_over[agency.id]:
            parts.append(f"after {self.passed_over[agency.id]} skipped candidate(s)")
        if agency.id in self.skipped:  # passed over for a time-critical need while it was closed
            skipped = self.skipped[agency.id]
            parts.append(f"not for {', '.join(skipped.needs)}: {skipped.reason.removeprefix('skipped: ')}")
        parts.append(self._consent_text(referral))
        if case.language not in agency.languages:
            parts.append(f"does not list the victim's language ({case.language}): arrange interpretation")
        if agency.id in self.remaining:
            parts.append(f"{self.remaining[agency.id]} place(s) left as reported")
        if not self.open_now(agency):
            opens = next_opening(agency.hours, self.now, self.rules.public_holidays)
            parts.append(
                f"closed now ({local_moment(agency.hours, self.now)}); opens {local_moment(agency.hours, opens)}"
                " and acts then"
            )
        return RoutingDecision(
            agency_id=agency.id,
            chosen=True,
            needs=referral.needs,
            reason=_clip("; ".join(parts)),
            override=referral.override,
        )

    def _consent_text(self, referral: PlannedReferral) -> str:
        if referral.consent is ConsentBasis.to_ask:
            return "consent to be asked before submitting (notice attached)"
        if referral.consent is ConsentBasis.override:
            assert referral.override is not None
            text = (
                f"NO CONSENT: provided under PIPA Art. 18(2) ({referral.override.legal_basis}),"
                f" recorded by {referral.override.recorded_by}"
            )
        else:
            text = "consent recorded"
        sensitive = sorted(SENSITIVE_FIELDS & set(referral.agency.allowed_fields))
        if sensitive and "summary" in self.case.personal_items:
            if sends_sensitive(self.consents.get(referral.agency.id)):
                text += f", with the separate sensitive-data consent for {', '.join(sensitive)}"
            else:
                text += f"; {', '.join(sensitive)} withheld: no separate sensitive-data consent (PIPA Art. 23)"
        return text


def route_case(
    case: CaseFacts | CaseDetails,
    catalogue: Catalogue,
    rules: Rules,
    now: datetime,
    *,
    remaining: Mapping[str, int] | None = None,
    excluded: Mapping[str, str] | None = None,
    needs: Iterable[Need] | None = None,
    assume_consent: bool = False,
) -> Plan:
    """Choose one agency per need, one referral per agency, and explain every choice and every skip.

    `remaining`: places left, for the agencies that reported them (others: their catalogue capacity).
    `excluded`: agencies this case must not go to (again), with why. `needs`: the needs to route (re-routing),
    by default all the case's needs. `assume_consent` previews the choice before consent is asked; a recorded
    refusal is still respected.
    """
    if isinstance(case, CaseDetails):  # a preview: routing reads only the facts
        case = case.facts()
    routing = _Routing(
        case=case,
        catalogue=catalogue,
        rules=rules,
        now=now,
        remaining=remaining or {},
        excluded=excluded or {},
        assume_consent=assume_consent,
        hubs=hubs_for(case, catalogue, rules),
        consents={c.agency_id: c for c in case.consents},
    )
    uncovered = [need for need in (case.needs if needs is None else needs) if not routing.route(need)]
    referrals = list(routing.chosen.values())
    skipped = [d for d in routing.skipped.values() if d.agency_id not in routing.chosen]  # one decision per agency
    decisions = [routing.explain(r) for r in referrals] + skipped
    return Plan(referrals, decisions, uncovered)


NOBODY_OFFERS = "no agency in the catalogue offers it"


def why_uncovered(plan: Plan) -> dict[str, str]:
    """Each need the plan leaves uncovered, with every candidate's reasons for not taking it."""
    reasons: dict[str, str] = {}
    for need in plan.uncovered_needs:
        skips = [
            f"{d.agency_id}: {d.reason.removeprefix('skipped: ')}"
            for d in plan.decisions
            if not d.chosen and need in d.needs
        ]
        reasons[str(need)] = _clip("; ".join(skips) if skips else NOBODY_OFFERS)
    return reasons


def sends_sensitive(consent: Consent | None) -> bool:
    """Sensitive items (PIPA Art. 23) go only with the separate sensitive-data consent, given with the consent.

    A PIPA Art. 18(2) override stands in for the consent to provide the data, not for the separate consent
    Art. 23 asks for sensitive items: under an override the referral goes without them.
    """
    return consent is not None and consent.granted and consent.sensitive_granted


def referral_view(case: CaseFacts, agency: Agency, needs: list[Need]) -> ReferralCase:
    """What this agency sees of the case on its topic: the routing facts, and region and language if its catalogue
    entry allows them. The victim's personal items are never on Kafka (see `personal_items_for`)."""
    allowed = set(agency.allowed_fields)
    shared = {name: getattr(case, name) for name in ("region", "language") if name in allowed}
    return ReferralCase(crime_type=case.crime_type, needs=needs, urgency=case.urgency, **shared)


def personal_items_for(case: CaseFacts, agency: Agency, consent: Consent | None) -> list[PersonalItem]:
    """The personal items the gateway may fetch from intake for this agency: those the case holds and the agency's
    catalogue entry allows, sensitive ones only with the separate sensitive-data consent."""
    allowed = set(shared_fields(agency, consent))
    return [item for item in case.personal_items if item in allowed]


def shared_fields(agency: Agency, consent: Consent | None) -> list[str]:
    """The catalogue fields this agency would receive, given the consent recorded so far."""
    return [f for f in agency.allowed_fields if f not in SENSITIVE_FIELDS or sends_sensitive(consent)]


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"

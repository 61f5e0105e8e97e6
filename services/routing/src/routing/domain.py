"""Routing rules, pure: a case and the catalogue in, the chosen agencies and the reasons out."""

import uuid
from dataclasses import dataclass, field
from uuid import UUID

from schemas.catalogue import SENSITIVE_FIELDS, Agency, Catalogue
from schemas.events import CaseDetails, Consent, ReferralCase, RoutingDecision
from schemas.vocab import Need

# Referral ids are derived from case and agency, so routing the same case again yields the same ids.
_REFERRAL_NAMESPACE = UUID("6b1f8a52-3c1e-4c55-9a55-0d7f4f0e2a11")


def referral_id(case_id: UUID, agency_id: str) -> UUID:
    return uuid.uuid5(_REFERRAL_NAMESPACE, f"{case_id}/{agency_id}")


@dataclass
class PlannedReferral:
    agency: Agency
    needs: list[Need] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    referrals: list[PlannedReferral]
    decisions: list[RoutingDecision]
    uncovered_needs: list[Need]


def candidates(need: Need, catalogue: Catalogue) -> list[Agency]:
    """Agencies offering the need, best first: lower priority value, then id (so the order is stable)."""
    return sorted((a for a in catalogue if need in a.services), key=lambda a: (a.priority, a.id))


def route_case(case: CaseDetails, catalogue: Catalogue, *, assume_consent: bool = False) -> Plan:
    """One referral per agency; each need goes to an agency already chosen if it offers it, else to the
    first candidate the victim consented to. `assume_consent` previews the choice before consent is asked.
    """
    consents = {c.agency_id: c for c in case.consents}
    chosen: dict[str, PlannedReferral] = {}
    skipped: list[RoutingDecision] = []
    uncovered: list[Need] = []
    for need in case.needs:
        if referral := next((r for r in chosen.values() if need in r.agency.services), None):
            referral.needs.append(need)
            continue
        for agency in candidates(need, catalogue):
            if assume_consent or (consents.get(agency.id) is not None and consents[agency.id].granted):
                chosen[agency.id] = PlannedReferral(agency, [need])
                break
            skipped.append(
                RoutingDecision(
                    agency_id=agency.id,
                    chosen=False,
                    needs=[need],
                    reason="no consent recorded for this agency",
                )
            )
        else:
            uncovered.append(need)
    decisions = [
        RoutingDecision(
            agency_id=r.agency.id,
            chosen=True,
            needs=r.needs,
            reason="first agency by catalogue priority offering " + ", ".join(r.needs),
        )
        for r in chosen.values()
    ]
    return Plan(list(chosen.values()), decisions + skipped, uncovered)


def referral_view(case: CaseDetails, agency: Agency, consent: Consent | None, needs: list[Need]) -> ReferralCase:
    """What this agency may see: the routing facts, and only the personal fields its catalogue entry allows
    (sensitive ones only with the separate sensitive-data consent)."""
    allowed = set(agency.allowed_fields)
    if consent is None or not consent.sensitive_granted:
        allowed -= SENSITIVE_FIELDS
    values = {
        "region": case.region,
        "language": case.language,
        "victim.name": case.victim.name,
        "victim.phone": case.victim.phone,
        "victim.email": case.victim.email,
        "summary": case.summary,
    }
    shared = {name.replace(".", "_"): value for name, value in values.items() if name in allowed}
    return ReferralCase(crime_type=case.crime_type, needs=needs, urgency=case.urgency, **shared)

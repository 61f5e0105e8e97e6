"""Intake's batch disclosure on a real PostgreSQL: several agencies' referrals of one case in one transaction, each
agency answered by its own consent (a refusal is that agency's answer alone), each agency's items access-logged (a row
per agency and item) and the chain intact."""

from uuid import UUID, uuid4

import asyncpg
import intake
import pytest
from intake.cases import submit_case
from intake.consents import record_given_with_case
from intake.crypto import Keyring
from intake.disclosure import DisclosureBatch, DisclosureRequest, disclose_batch
from kit.access_log import AccessLog, derive_key
from kit.auth import Principal, Role
from kit.errors import NotFound
from schemas.catalogue import Catalogue
from schemas.events import CaseDetails

from tests.samples import sample_case_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVICE = intake
KEYRING = Keyring.parse(Keyring.generate("k1"))
GATEWAY = Principal("agency-gateway", Role.service, None, "127.0.0.1")
CATALOGUE = Catalogue(agencies={})  # no notices: the consents alone matter here
SENSITIVE, PLAIN, REFUSED = "legal-aid", "police", "employment-center"


async def a_case(pool: asyncpg.Pool) -> UUID:
    details = CaseDetails.model_validate(
        sample_case_json(
            needs=["legal", "safety", "employment"],
            consents=[
                {"agency_id": SENSITIVE, "granted": True, "sensitive_granted": True},
                {"agency_id": PLAIN, "granted": True},
                {"agency_id": REFUSED, "granted": False},
            ],
            summary="A synthetic summary.",
        )
    )

    async def consents(conn: asyncpg.Connection, case_id: UUID) -> None:
        await record_given_with_case(conn, case_id, details.consents, GATEWAY, CATALOGUE)

    return (await submit_case(pool, details, None, also=consents, keyring=KEYRING)).case_id


def asked(agency_id: str, *items: str) -> DisclosureRequest:
    return DisclosureRequest.model_validate({"referral_id": str(uuid4()), "agency_id": agency_id, "items": items})


async def test_each_agency_gets_its_own_items_or_its_own_refusal_all_logged_in_one_transaction(
    pool: asyncpg.Pool,
) -> None:
    access_log = AccessLog(30, key=derive_key("integration-test-access-log-key-32-bytes"))
    case_id = await a_case(pool)
    everything = ("victim.name", "victim.phone", "summary")
    batch = DisclosureBatch(
        referrals=[asked(SENSITIVE, *everything), asked(REFUSED, "victim.name"), asked(PLAIN, *everything)]
    )

    answer = await disclose_batch(pool, access_log, GATEWAY, KEYRING, case_id, batch)

    by_agency = {a["agency_id"]: a for a in answer["disclosures"]}
    assert [a["referral_id"] for a in answer["disclosures"]] == [str(r.referral_id) for r in batch.referrals]
    assert set(by_agency[SENSITIVE]["items"]) == set(everything)
    assert set(by_agency[PLAIN]["items"]) == {"victim.name", "victim.phone"}, "no summary without its consent"
    assert by_agency[REFUSED]["status"] == 409 and "items" not in by_agency[REFUSED]
    rows = await pool.fetch(
        "SELECT seq, at, action, referral_id FROM access_log WHERE case_id = $1 AND action LIKE 'case.disclose:%'"
        " ORDER BY seq",
        case_id,
    )
    referral_of = {r.agency_id: r.referral_id for r in batch.referrals}
    assert sorted((r["action"], r["referral_id"]) for r in rows) == sorted(
        [(f"case.disclose:{SENSITIVE}:{item}", referral_of[SENSITIVE]) for item in everything]
        + [(f"case.disclose:{PLAIN}:{item}", referral_of[PLAIN]) for item in ("victim.name", "victim.phone")]
    )
    assert len({r["at"] for r in rows}) == 1, "one transaction"
    assert (await access_log.verify(pool))["intact"]


async def test_a_missing_case_discloses_nothing_and_logs_nothing(pool: asyncpg.Pool) -> None:
    access_log = AccessLog(30, key=derive_key("integration-test-access-log-key-32-bytes"))
    missing = uuid4()
    with pytest.raises(NotFound):
        await disclose_batch(
            pool, access_log, GATEWAY, KEYRING, missing, DisclosureBatch(referrals=[asked(PLAIN, "victim.name")])
        )
    assert await pool.fetchval("SELECT count(*) FROM access_log WHERE case_id = $1", missing) == 0


def test_a_batch_names_each_referral_once_and_only_version_1() -> None:
    one = asked(PLAIN, "victim.name")
    with pytest.raises(ValueError, match="once"):
        DisclosureBatch(referrals=[one, one])
    with pytest.raises(ValueError):
        DisclosureBatch.model_validate({"version": 2, "referrals": [one.model_dump(mode="json")]})

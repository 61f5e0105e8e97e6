"""Encryption at rest and erasure, on the real stack: intake's database holds only ciphertext; after a supervisor
erases a case its data key is gone, the API answers 410, every service is told on `case.erased`, and routing, the
gateway and notify purge what they held of it — and keep nothing personal from events that come later."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from devstack.stack import DATABASE, Stack, dev_case_keys
from intake.crypto import Keyring, SealedCase, UnknownKek, WrappedKey, open_case
from schemas.events import CaseErased, decode_event

from tests.e2e.conftest import Mailbox
from tests.e2e.helpers import StackAuth, eventually, read_topic
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, auth=StackAuth(stack)) as c:
        yield c


def as_dict(value: object) -> dict[str, str]:
    parsed = json.loads(value) if isinstance(value, str) else value
    assert isinstance(parsed, dict)
    return parsed


async def stored(stack: Stack, case_id: str) -> tuple[asyncpg.Record, asyncpg.Record | None, list[bytes]]:
    """Intake's row of the case, its data key row, and its outbox payloads, as the database holds them."""
    conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        case = await conn.fetchrow("SELECT * FROM intake.cases WHERE case_id = $1", UUID(case_id))
        key = await conn.fetchrow("SELECT * FROM intake.case_keys WHERE case_id = $1", UUID(case_id))
        outbox = await conn.fetch("SELECT payload FROM intake.outbox WHERE key = $1", case_id)
    finally:
        await conn.close()
    assert case is not None
    return case, key, [bytes(r["payload"]) for r in outbox]


async def test_an_erased_case_cannot_be_read_or_decrypted_and_the_services_are_told(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    canary = f"Canary {uuid4().hex[:10]}"
    body = sample_case_json(
        needs=["legal"],
        consents=[{"agency_id": "legal-aid", "granted": True}],
        victim={"name": canary, "phone": "+82 10-5555-0101"},
        summary=f"{canary} was threatened at work.",
    )
    answer = await client.post(f"{stack.url('intake')}/cases", json=body)
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]
    assert (await client.get(f"{stack.url('intake')}/cases/{case_id}")).json()["victim"]["name"] == canary

    # At rest, intake's row holds each personal field only encrypted, under a data key wrapped by the KEK.
    row, key, _ = await stored(stack, case_id)
    assert row["victim"] is None and row["summary"] is None
    victim_sealed = as_dict(row["victim_sealed"])
    assert canary not in json.dumps(victim_sealed) + row["summary_sealed"]
    assert set(victim_sealed) == {"name", "phone"}  # field by field
    assert key is not None
    wrapped = WrappedKey(key["kek_id"], bytes(key["wrapped_key"]))
    sealed_before = SealedCase(victim_sealed, row["summary_sealed"], wrapped)
    keyring = Keyring.parse(dev_case_keys(stack.state_dir))
    assert open_case(keyring, UUID(case_id), sealed_before)[0]["name"] == canary  # the stack's KEK opens it

    # Nor does intake's outbox keep the case once case.submitted is sent.
    async def outbox_forgot() -> bool:
        _, _, payloads = await stored(stack, case_id)
        return bool(payloads) and all(b"payload_removed_when_sent" in p and canary.encode() not in p for p in payloads)

    await eventually(outbox_forgot, 60, "the sent case.submitted to leave intake's outbox without the case")

    # Only a supervisor erases.
    caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
    refused = await client.delete(f"{stack.url('intake')}/cases/{case_id}", headers=caseworker)
    assert refused.status_code == 403
    erased = await client.delete(f"{stack.url('intake')}/cases/{case_id}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["status"] == "erased"

    gone = await client.get(f"{stack.url('intake')}/cases/{case_id}")
    assert gone.status_code == 410 and gone.headers["content-type"].startswith("application/problem+json")
    assert canary not in gone.text
    assert (await client.delete(f"{stack.url('intake')}/cases/{case_id}")).status_code == 410
    assert (await client.delete(f"{stack.url('intake')}/cases/{uuid4()}")).status_code == 404

    # The data key is destroyed and the ciphertext removed; the outbox keeps no copy of the case either.
    row, key, outbox = await stored(stack, case_id)
    assert key is None and row["victim_sealed"] is None and row["summary_sealed"] is None
    assert row["erased_at"] is not None
    assert all(canary.encode() not in payload for payload in outbox)

    # Every service hears of it, without personal data.
    async def erased_event() -> list[CaseErased] | None:
        records = await read_topic(stack.kafka.bootstrap_servers, "case.erased")
        found = [decode_event(r.value) for r in records if r.key == case_id.encode()]
        return [e for e in found if isinstance(e, CaseErased)] or None

    [event] = await eventually(erased_event, 60, f"case.erased for {case_id}")
    assert str(event.case_id) == case_id

    # The erasure is in the access log, with who did it.
    auditor = {"authorization": f"Bearer {stack.token('auditor')}"}
    log = await client.get(f"{stack.url('intake')}/access-log", params={"case_id": case_id}, headers=auditor)
    assert log.status_code == 200, log.text
    assert "case.erase" in log.text and "case.create" in log.text


# The schemas of the services that hold something of a case besides intake.
PURGING = ("routing", "gateway", "notify")


async def tables_holding(stack: Stack, text: str) -> list[str]:
    """Every table of routing's, the gateway's and notify's schemas with a row containing `text` (bytea read as
    UTF-8: outbox payloads, parked acknowledgements)."""
    conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        columns = await conn.fetch(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = ANY($1::text[]) AND t.table_type = 'BASE TABLE'",
            list(PURGING),
        )
        by_table: dict[str, list[str]] = {}
        for c in columns:
            column = f'"{c["column_name"]}"'
            as_text = f"convert_from({column}, 'UTF8')" if c["data_type"] == "bytea" else f"{column}::text"
            by_table.setdefault(f'"{c["table_schema"]}"."{c["table_name"]}"', []).append(f"coalesce({as_text}, '')")
        holding = []
        for table, texts in sorted(by_table.items()):
            query = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE strpos(concat({', '.join(texts)}), $1) > 0)"
            if await conn.fetchval(query, text):
                holding.append(table)
        return holding
    finally:
        await conn.close()


async def purged_everywhere(stack: Stack, case_id: str) -> bool:
    conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        query = " AND ".join(f"EXISTS (SELECT 1 FROM {s}.erased_cases WHERE case_id = $1)" for s in PURGING)
        return bool(await conn.fetchval(f"SELECT {query}", UUID(case_id)))
    finally:
        await conn.close()


async def test_after_erasure_routing_the_gateway_and_notify_hold_nothing_of_the_victim(
    stack: Stack, client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    intake, routing, gateway, notify = (stack.url(s) for s in ("intake", "routing", "agency-gateway", "notify"))
    simulator = stack.url("agency-simulator")
    tag = uuid4().hex[:12]
    victim_email = f"canary-{tag}@example.org"
    # Legal aid accepts with a note about the victim: agency free text, as a real agency might write it.
    note = {"action": "accept", "delay_seconds": 0.5, "note": f"Will call Canary {tag} tomorrow."}
    assert (await client.put(f"{simulator}/behaviour/legal-aid", json=note)).status_code == 200
    try:
        body = sample_case_json(
            needs=["legal"],
            consents=[{"agency_id": "legal-aid", "granted": True}],
            caseworker={"id": "caseworker-8", "email": "cw-8@centre.example"},  # staff, not the victim
            victim={"name": f"Canary {tag}", "email": victim_email, "contact_rules": {"safe_channel": "email"}},
            summary=f"Canary {tag} was threatened at work.",
        )
        answer = await client.post(f"{intake}/cases", json=body)
        assert answer.status_code == 201, answer.text
        case_id = answer.json()["case_id"]

        # The victim hears of the acceptance on their safe channel: notify asked intake for the address.
        async def victim_mail() -> list[EmailMessage]:
            return mailbox.to(victim_email)

        await eventually(victim_mail, 90, "the victim's e-mail")

        async def referral_of_case() -> list[dict[str, object]] | None:
            referrals = (await client.get(f"{notify}/cases/{case_id}/referrals")).json()
            return [r for r in referrals if r["state"] == "accepted"] or None

        [referral] = await eventually(referral_of_case, 60, "legal aid's acceptance")
    finally:
        assert (await client.delete(f"{simulator}/behaviour/legal-aid")).status_code == 204
    assert '"notify"."timeline"' in await tables_holding(stack, tag), "the agency's note, before the erasure"
    notices = (await client.get(f"{notify}/cases/{case_id}/notifications")).json()
    assert [n["status"] for n in notices if n["recipient"] == "victim"] == ["sent"]

    assert (await client.delete(f"{intake}/cases/{case_id}")).status_code == 200
    await eventually(lambda: purged_everywhere(stack, case_id), 60, "routing, the gateway and notify to purge")
    assert await tables_holding(stack, tag) == []

    # Their APIs show the facts of the case, nothing of the victim.
    for url in (
        f"{routing}/cases/{case_id}/decision",
        f"{gateway}/cases/{case_id}/deliveries",
        f"{gateway}/cases/{case_id}/notices",
        f"{notify}/cases/{case_id}/timeline",
        f"{notify}/cases/{case_id}/notifications",
        f"{notify}/cases/{case_id}/referrals",
    ):
        shown = await client.get(url)
        assert shown.status_code == 200 and tag not in shown.text, url
    assert [r["state"] for r in (await client.get(f"{notify}/cases/{case_id}/referrals")).json()] == ["accepted"]

    # A late answer of the agency is applied, but its note is not kept, and nobody is written to any more.
    late = {"agency_id": "legal-aid", "note": f"Met Canary {tag} at the office."}
    started = await client.post(f"{notify}/referrals/{referral['referral_id']}/start", json=late)
    assert started.status_code == 200, started.text
    assert [r["state"] for r in (await client.get(f"{notify}/cases/{case_id}/referrals")).json()] == ["in_progress"]
    assert await tables_holding(stack, tag) == []
    notices = (await client.get(f"{notify}/cases/{case_id}/notifications")).json()
    assert all(n["status"] in ("sent", "withheld") for n in notices)


def rotate(stack: Stack, case_keys: str) -> str:
    """`python -m intake rotate-keys` against the stack's database, with CASE_KEYS as given."""
    env = {**stack.env, "CASE_KEYS": case_keys}
    done = subprocess.run(
        [sys.executable, "-m", "intake", "rotate-keys"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_key_rotation_rewraps_every_data_key_so_the_old_kek_can_go(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    answer = await client.post(f"{stack.url('intake')}/cases", json=sample_case_json(needs=["legal"]))
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]
    current = dev_case_keys(stack.state_dir)
    new_entry = Keyring.generate("rotated")
    try:
        assert "under 'rotated'" in rotate(stack, f"{new_entry},{current}")
        row, key, _ = await stored(stack, case_id)
        assert key is not None and key["kek_id"] == "rotated"
        sealed = SealedCase(
            as_dict(row["victim_sealed"]), row["summary_sealed"], WrappedKey(key["kek_id"], bytes(key["wrapped_key"]))
        )
        # The new key alone opens it now; the old one no longer does.
        assert open_case(Keyring.parse(new_entry), UUID(case_id), sealed)[0]["name"] == "Kim Example"
        with pytest.raises(UnknownKek):
            open_case(Keyring.parse(current), UUID(case_id), sealed)
    finally:
        # Back under the running intake's key, for the tests after this one.
        rotate(stack, f"{current},{new_entry}")
    assert (await client.get(f"{stack.url('intake')}/cases/{case_id}")).status_code == 200

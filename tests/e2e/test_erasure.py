"""Encryption at rest and erasure in intake, on the real stack: the database holds only ciphertext; after a
supervisor erases a case its data key is gone, the API answers 410, and every service is told on `case.erased`."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from devstack.stack import DATABASE, Stack, dev_case_keys
from intake.crypto import Keyring, SealedCase, UnknownKek, WrappedKey, open_case
from schemas.events import CaseErased, decode_event

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

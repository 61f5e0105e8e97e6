"""The canary: recognisable personal data goes in through intake, the case runs through the whole pipeline, and then
the data is searched for in plaintext in every Kafka log segment, every PostgreSQL data and WAL file, every log of
the stack (services, simulator, broker, database), every trace span and every error body the services gave. It is
found only where it belongs: intake's API for staff, and the agencies (the simulator) allowed each item."""

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from devstack.stack import DATABASE, Stack

from tests.e2e.conftest import Mailbox
from tests.e2e.helpers import StackAuth, eventually
from tests.e2e.otlp import OtlpReceiver
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, auth=StackAuth(stack)) as c:
        yield c


def make_canaries() -> dict[str, str]:
    """Personal items no other test uses, each recognisable on its own (synthetic, like all test data)."""
    tag = uuid4().hex[:12]
    digits = str(int(tag, 16))[-8:].rjust(8, "7")
    return {
        "name": f"Canaryname {tag}",
        "phone": f"+82 10-{digits[:4]}-{digits[4:]}",
        "email": f"canary.{tag}@example.org",
        "summary": f"Canarysummary {tag}: threatened at the market.",
    }


async def error_bodies(client: httpx.AsyncClient, stack: Stack, canaries: dict[str, str]) -> list[str]:
    """Bad requests carrying the personal data where it does not fit: each is refused with a 4xx problem."""
    intake, routing = stack.url("intake"), stack.url("routing")
    bad_phone = sample_case_json(victim={"name": canaries["name"], "phone": canaries["summary"]})
    bad_email = sample_case_json(victim={"name": canaries["name"], "email": canaries["email"] + "@@"})
    unknown_field = sample_case_json(victim={"name": canaries["name"], "nickname": canaries["name"]})
    too_long = sample_case_json(victim={"name": canaries["name"] * 20}, summary=canaries["summary"])
    answers = [
        await client.post(f"{intake}/cases", json=bad_phone),
        await client.post(f"{intake}/cases", json=bad_email),
        await client.post(f"{intake}/cases", json=unknown_field),
        await client.post(f"{intake}/cases", json=too_long),
        await client.post(f"{intake}/cases/preview", json=bad_phone),
        await client.post(f"{routing}/preview", json=bad_email),
        await client.get(f"{intake}/cases/{canaries['email']}"),
        await client.post(f"{intake}/cases", content=b'{"victim": {"name": "' + canaries["name"].encode()),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, f"{answer.request.url}: {answer.status_code}"
        assert answer.headers["content-type"].startswith("application/problem+json")
    return [answer.text for answer in answers]


def files_under(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file() and not path.is_symlink()]


def holding(paths: list[Path], needles: Mapping[str, bytes]) -> dict[str, list[str]]:
    """For each needle, the files that hold it; each file read once for all of them (Kafka's index files are
    preallocated, so a folder is read slowly, and was read once per needle before)."""
    found: dict[str, list[str]] = {name: [] for name in needles}
    for path in paths:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, PermissionError):  # a segment rolled away or a socket/lock file
            continue
        for name, needle in needles.items():
            if needle in data:
                found[name].append(str(path))
    return found


async def test_personal_data_is_in_plaintext_nowhere_but_with_the_agencies_allowed_it(
    stack: Stack, client: httpx.AsyncClient, otlp: OtlpReceiver, mailbox: Mailbox
) -> None:
    canaries = make_canaries()
    body = sample_case_json(
        victim={
            "name": canaries["name"],
            "phone": canaries["phone"],
            "email": canaries["email"],
            "contact_rules": {"safe_channel": "email"},
        },
        summary=canaries["summary"],
    )
    answer = await client.post(f"{stack.url('intake')}/cases", json=body)
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]
    errors = await error_bodies(client, stack, canaries)

    # The case runs through: routed, delivered with the items each agency may have, accepted by all three.
    async def accepted() -> list[dict[str, object]] | None:
        referrals = (await client.get(f"{stack.url('notify')}/cases/{case_id}/referrals")).json()
        return referrals if len(referrals) == 3 and all(r["state"] == "accepted" for r in referrals) else None

    await eventually(accepted, timeout=120, what="the case's three referrals accepted")
    received = (await client.get(f"{stack.url('agency-simulator')}/received")).json()
    entries = received["referrals"] if isinstance(received, dict) else received
    fields = {r["agency_id"]: set(r["fields"]) for r in entries if r["case_id"] == case_id}
    assert {"victim_name", "victim_phone", "summary"} <= fields["police"], "police may have these, summary included"
    assert "victim_name" in fields["legal-aid"] and "summary" not in fields["legal-aid"]

    # The victim's safe channel: notify fetched the address from intake only to send this.
    async def victim_told() -> list[object] | None:
        return list(mailbox.to(canaries["email"])) or None

    await eventually(victim_told, timeout=60, what="the victim's notice at the safe address")
    # Staff read the case back in the clear: the one place it may be read.
    case = (await client.get(f"{stack.url('intake')}/cases/{case_id}")).json()
    assert case["victim"]["name"] == canaries["name"] and case["summary"] == canaries["summary"]

    # Every page PostgreSQL holds in memory goes to its data files (the WAL has them already).
    conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    needles = {"case_id": case_id.encode(), **{item: value.encode() for item, value in canaries.items()}}
    in_kafka = holding(files_under(stack.kafka.root), needles)
    in_postgres = holding(files_under(stack.postgres.root), {**needles, "case_id": UUID(case_id).bytes})
    in_logs = holding(files_under(stack.logs_dir), needles)
    spans = "\n".join(repr(span) for span in otlp.snapshot())

    # The search sees what is there: the case's id is in the topics, the logs and the spans, its bytes in the tables.
    assert in_kafka["case_id"], "the case's records should be in the Kafka segments"
    assert in_postgres["case_id"], "the case's rows should be in PostgreSQL's files"
    assert in_logs["case_id"], "the services log the case's id"
    assert case_id in spans, "the case's spans should carry its id"

    for item, value in canaries.items():
        assert not in_kafka[item], f"the victim's {item} is in plaintext on Kafka: {in_kafka[item]}"
        assert not in_postgres[item], f"the victim's {item} is in plaintext in PostgreSQL's files: {in_postgres[item]}"
        assert not in_logs[item], f"the victim's {item} is in a log: {in_logs[item]}"
        assert value not in spans, f"the victim's {item} is in a trace span"
        assert not [e for e in errors if value in e], f"the victim's {item} is echoed in an error body"

"""The agency gateway on the real stack: retries that never block, the DLQ, e-mail, Kafka-native, a new plugin.

The module runs routing, the gateway and the simulator on a copy of the catalogue with test agencies added (and
puts the shipped catalogue back afterwards). Each test agency covers one need, so a case reaches exactly the agency
its consents name.
"""

import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from agency_gateway import replay
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller
from devstack.stack import DATABASE, Stack
from schemas.events import decode_event

from tests.e2e.helpers import StackAuth, eventually, read_topic, restart, timeline
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
RESTARTED = ("routing", "agency-gateway", "agency-simulator")
DOWN_TIMEOUT_SECONDS = 5.0
GATEWAY_TUNING = {
    "DELIVERY_ATTEMPTS": "6",
    "RETRY_BASE_SECONDS": "0.3",
    "RETRY_MAX_SECONDS": "2",
    "BREAKER_THRESHOLD": "5",
    "BREAKER_OPEN_SECONDS": "3",
}

# The victim's details no agency below may receive unless its allowed_fields say so.
PHONE, EMAIL, SUMMARY = "+82 10-5555-0101", "private.victim@example.org", "Sensitive summary: must stay inside."


@dataclass
class Mailbox:
    """An SMTP server (aiosmtpd) in the test: every message the gateway sends lands here."""

    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


@dataclass
class GatewayWorld:
    stack: Stack
    catalogue: Path
    work: Path
    env: dict[str, str]
    mailbox: Mailbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agency(agency_id: str, need: str, channel: str, allowed: list[str], priority: int = 0) -> str:
    items = [f'"{f}{" (sensitive)" if f == "summary" else ""}"' for f in allowed] or ['"crime type and needs"']
    return f"""
id = "{agency_id}"
name_ko = "시험 기관"
name_en = "Test agency {agency_id}"
services = ["{need}"]
regions = ["*"]
languages = ["ko", "en"]
capacity = 1000
priority = {priority}
allowed_fields = {json.dumps(allowed)}

[hours]
always_open = true

[channel]
{channel}

[consent_notice]
purpose = "Testing the gateway"
items = [{", ".join(items)}]
retention = "Deleted after the test"
"""


def _webhook(agency_id: str, url: str | None = None, timeout: float = 5.0) -> str:
    url = url or f"${{AGENCY_SIMULATOR_URL}}/agencies/{agency_id}/referrals"
    return f'type = "webhook"\nurl = "{url}"\nsecret_env = "{_secret_env(agency_id)}"\ntimeout_seconds = {timeout}'


def _secret_env(agency_id: str) -> str:
    return "WEBHOOK_SECRET_" + agency_id.upper().replace("-", "_")


def run_command(*argv: str | Path, env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command to its end; its output (stdout and stderr), or a failure showing it."""
    done = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[GatewayWorld]:
    work = Path(tempfile.mkdtemp(prefix="onestop-gateway-"))
    shutil.copytree(REPO / "catalogue", work / "catalogue")  # the agencies and routing's rules beside them
    catalogue = work / "catalogue" / "agencies"
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    # An agency that is down the hard way: it takes the connection and never answers.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    down_url = f"http://127.0.0.1:{blackhole.getsockname()[1]}/referrals"
    agencies = {
        "test-flaky": _agency("test-flaky", "legal", _webhook("test-flaky"), ["victim.name"]),
        "test-down": _agency(
            "test-down", "counselling", _webhook("test-down", down_url, DOWN_TIMEOUT_SECONDS), ["victim.name"]
        ),
        "test-healthy": _agency("test-healthy", "employment", _webhook("test-healthy"), ["victim.name"]),
        "test-refusing": _agency("test-refusing", "welfare", _webhook("test-refusing"), ["victim.name"]),
        "test-mail": _agency(
            "test-mail",
            "financial",
            'type = "email"\nto = "referrals@test-mail.example"\nfrom_address = "gateway@onestop.example"\n'
            f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\ntls = "none"',
            ["victim.name", "language"],
        ),
        "test-kafka": _agency("test-kafka", "housing", 'type = "kafka"', ["region", "victim.name"]),
        # For medical needs: the first choice, which fails for good, and the one routing gives its needs to then
        # (a lower catalogue priority is tried first).
        "test-gone": _agency("test-gone", "medical", _webhook("test-gone"), ["victim.name"]),
        "test-backup": _agency("test-backup", "medical", _webhook("test-backup"), ["victim.name"], priority=10),
    }
    for agency_id, text in agencies.items():
        (catalogue / f"{agency_id}.toml").write_text(text, encoding="utf-8")
    original = dict(stack.processes["agency-gateway"].env)
    original.pop("HTTP_PORT", None)
    env = {
        **original,
        **GATEWAY_TUNING,
        "CATALOGUE_DIR": str(catalogue),
        **{_secret_env(a): secrets.token_hex(32) for a in agencies if a not in ("test-mail", "test-kafka")},
    }
    try:
        restart(stack, RESTARTED, env)
        yield GatewayWorld(stack, catalogue, work, env, mailbox)
    finally:
        restart(stack, RESTARTED, original)
        smtp.stop()
        blackhole.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


async def submit(client: httpx.AsyncClient, stack: Stack, *agencies: str, needs: list[str]) -> str:
    case = sample_case_json(
        crime_type="fraud",
        needs=needs,
        victim={"name": "Kim Example", "phone": PHONE, "email": EMAIL},
        consents=[{"agency_id": a, "granted": True, "sensitive_granted": False} for a in agencies],
        summary=SUMMARY,
    )
    answer = await client.post(f"{stack.url('intake')}/cases", json=case)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_id"])


async def events_of(
    client: httpx.AsyncClient, stack: Stack, case_id: str, event_type: str, count: int = 1
) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        events = [e for e in await timeline(client, stack.url("notify"), case_id) if e["type"] == event_type]
        return events if len(events) >= count else None

    return await eventually(found, 120, f"{count} {event_type} for case {case_id}")


async def set_behaviour(client: httpx.AsyncClient, stack: Stack, agency_id: str, behaviour: dict[str, Any]) -> None:
    answer = await client.put(f"{stack.url('agency-simulator')}/behaviour/{agency_id}", json=behaviour)
    assert answer.status_code == 200, answer.text


async def simulator_record(client: httpx.AsyncClient, stack: Stack, agency_id: str, case_id: str) -> dict[str, Any]:
    received = (await client.get(f"{stack.url('agency-simulator')}/agencies/{agency_id}/referrals")).json()
    [record] = [r for r in received["referrals"] if r["case_id"] == case_id]
    return record  # type: ignore[no-any-return]


def case_fields(body: bytes) -> dict[str, Any]:
    """The case fields a delivered referral holds a value for."""
    return {k: v for k, v in json.loads(body)["case"].items() if v is not None}


async def test_an_agency_failing_three_times_then_answering_gets_exactly_one_accepted_delivery(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    await set_behaviour(client, stack, "test-flaky", {"action": "fail", "status": 503, "times": 3})
    case_id = await submit(client, stack, "test-flaky", needs=["legal"])

    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    await events_of(client, stack, case_id, "referral.accepted")

    assert delivered["agency_id"] == "test-flaky"
    assert delivered["detail"]["attempts"] == 4 and delivered["detail"]["channel"] == "webhook"
    record = await simulator_record(client, stack, "test-flaky", case_id)
    assert record["deliveries"] == 4 and record["failed_deliveries"] == 3
    assert record["duplicates"] == 0 and record["decision"] == "accept"
    receipts = (await client.get(f"{stack.url('agency-simulator')}/agencies/test-flaky/referrals")).json()["receipts"]
    accepted = [r for r in receipts if r["referral_id"] == record["referral_id"] and r["status"] == 202]
    assert len(accepted) == 1 and accepted[0]["signature"] == "valid"
    deliveries = (await client.get(f"{stack.url('agency-gateway')}/cases/{case_id}/deliveries")).json()
    assert [a["outcome"] for a in deliveries[0]["attempt_log"]] == ["transient_failure"] * 3 + ["delivered"]
    timeline_types = [e["type"] for e in await timeline(client, stack.url("notify"), case_id)]
    assert timeline_types.count("referral.delivered") == 1 and "referral.failed" not in timeline_types


async def test_an_agency_that_is_down_does_not_delay_another_agencys_deliveries(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack

    async def delivery_seconds(case_id: str) -> float:
        [submitted] = await events_of(client, stack, case_id, "case.submitted")
        [delivered] = await events_of(client, stack, case_id, "referral.delivered")
        return _at(delivered) - _at(submitted)

    baseline = await delivery_seconds(await submit(client, stack, "test-healthy", needs=["employment"]))

    # Five referrals to the dead agency first: each attempt waits for its timeout before failing.
    blocked = [await submit(client, stack, "test-down", needs=["counselling"]) for _ in range(5)]
    healthy = await submit(client, stack, "test-healthy", needs=["employment"])
    under_load = await delivery_seconds(healthy)

    still_undelivered = 0
    for case_id in blocked:
        events = {e["type"] for e in await timeline(client, stack.url("notify"), case_id)}
        still_undelivered += "referral.delivered" not in events and "referral.failed" not in events
    serial_bound = len(blocked) * DOWN_TIMEOUT_SECONDS
    print(
        f"\nisolation: healthy agency's delivery took {baseline:.2f}s alone and {under_load:.2f}s behind "
        f"{len(blocked)} referrals to a dead agency ({still_undelivered} of them still undelivered then; "
        f"one shared queue would have taken at least {serial_bound:.0f}s)"
    )
    assert still_undelivered == len(blocked), "the dead agency's referrals cannot have been delivered"
    # Were the agencies' queues shared, the healthy referral would wait for every timeout before it.
    assert under_load < serial_bound


async def fix_and_replay(world: GatewayWorld, client: httpx.AsyncClient, agency_id: str) -> None:
    """The agency accepts again; the operator replays its DLQ (`onestop-replay-dlq`), which holds one referral."""
    stack = world.stack
    await set_behaviour(client, stack, agency_id, {"action": "accept", "delay_seconds": 0})
    replay = run_command(
        Path(sys.executable).parent / "onestop-replay-dlq",
        agency_id,
        env={**world.env, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers},
    )
    assert "replayed 1 dead letter(s)" in replay, replay


async def test_a_permanently_failing_agency_dead_letters_emits_failed_and_a_replay_delivers_it(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    await set_behaviour(client, stack, "test-refusing", {"action": "fail", "status": 410, "times": None})
    case_id = await submit(client, stack, "test-refusing", needs=["welfare"])

    [failed] = await events_of(client, stack, case_id, "referral.failed")
    assert failed["agency_id"] == "test-refusing" and failed["detail"]["attempts"] == 1
    assert "410" in failed["detail"]["reason"]

    async def dead_letters() -> list[Any] | None:
        found = await read_topic(stack.kafka.bootstrap_servers, "referrals.test-refusing.dlq")
        return [r for r in found if r.key == case_id.encode()] or None

    [letter] = await eventually(dead_letters, 60, "the referral in referrals.test-refusing.dlq")
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["dlq.reason"] == "permanent_failure" and headers["dlq.agency_status"] == "410"
    assert headers["dlq.source.topic"] == "referrals.test-refusing" and headers["dlq.attempts"] == "1"
    assert decode_event(letter.value).case_id.hex == case_id.replace("-", "")

    # The agency fixes its endpoint; the operator replays the DLQ; the referral arrives, once.
    await fix_and_replay(world, client, "test-refusing")
    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    assert delivered["agency_id"] == "test-refusing"
    record = await simulator_record(client, stack, "test-refusing", case_id)
    assert record["decision"] == "accept" and record["duplicates"] == 0
    # No other agency took its needs, so notify agrees: delivered after all, and the agency's acceptance stands.
    rerouted = [e for e in await timeline(client, stack.url("notify"), case_id) if e["type"] == "case.routed"]
    assert len(rerouted) == 2 and not rerouted[-1]["detail"].get("referrals"), rerouted

    async def accepted() -> dict[str, Any] | None:
        answer = await client.get(f"{stack.url('notify')}/referrals/{delivered['referral_id']}")
        return answer.json() if answer.json().get("state") == "accepted" else None

    await eventually(accepted, 60, "notify to take the replayed referral's acceptance")


async def replay_through_the_api(world: GatewayWorld, client: httpx.AsyncClient, agency_id: str, case_id: str) -> None:
    """As fix_and_replay, through the gateway's HTTP API as an operator (a supervisor) does it from the console:
    the dead letter is listed (summary and dry run), a caseworker may neither list nor replay, the replay puts it
    back once and a second replay finds nothing left."""
    stack = world.stack
    gateway = stack.url("agency-gateway")

    async def listed() -> list[dict[str, Any]] | None:
        rows = (await client.get(f"{gateway}/dead-letters")).json()
        return [r for r in rows if r["agency_id"] == agency_id and r["waiting"]] or None

    [row] = await eventually(listed, 60, f"{agency_id}'s dead letter in GET /dead-letters")
    assert row["topic"] == f"referrals.{agency_id}.dlq" and row["reason"] == "permanent_failure"
    assert (row["count"], row["waiting"]) == (1, 1) and row["first_seen"] == row["last_seen"]
    [waiting] = (await client.get(f"{gateway}/agencies/{agency_id}/dead-letters")).json()  # a dry run
    assert waiting["case_id"] == case_id and waiting["target"] == f"referrals.{agency_id}"

    caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
    assert (await client.get(f"{gateway}/dead-letters", headers=caseworker)).status_code == 403
    replay_path = f"{gateway}/agencies/{agency_id}/dead-letters/replay"
    assert (await client.post(replay_path, headers=caseworker)).status_code == 403
    assert (await client.post(f"{gateway}/agencies/no-such-agency/dead-letters/replay")).status_code == 404

    await set_behaviour(client, stack, agency_id, {"action": "accept", "delay_seconds": 0})
    # Another replay of the agency under way elsewhere (a replica, the command line) holds its lock: refused, nothing
    # put back; once it lets go, the replay runs.
    other = await asyncpg.connect(stack.postgres.dsn(DATABASE))
    try:
        async with replay.one_at_a_time(other, agency_id):
            busy = await client.post(replay_path)
            assert busy.status_code == 409 and "under way" in busy.json()["detail"], busy.text
    finally:
        await other.close()
    [still] = (await client.get(f"{gateway}/agencies/{agency_id}/dead-letters")).json()
    assert still["case_id"] == case_id
    replayed = (await client.post(replay_path)).json()
    assert replayed["replayed"] == 1 and replayed["letters"][0]["case_id"] == case_id
    assert (await client.post(replay_path)).json()["replayed"] == 0  # the replay group remembers
    [row] = [r for r in (await client.get(f"{gateway}/dead-letters")).json() if r["agency_id"] == agency_id]
    assert (row["count"], row["waiting"]) == (1, 0)


async def test_a_failed_referral_whose_needs_went_to_another_agency_is_not_delivered_by_a_replay(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    await set_behaviour(client, stack, "test-gone", {"action": "fail", "status": 410, "times": None})
    case_id = await submit(client, stack, "test-gone", "test-backup", needs=["medical"])

    [failed] = await events_of(client, stack, case_id, "referral.failed")
    assert failed["agency_id"] == "test-gone"
    [backup] = await events_of(client, stack, case_id, "referral.delivered")
    assert backup["agency_id"] == "test-backup", "routing gave the failed referral's needs to the next agency"

    await replay_through_the_api(world, client, "test-gone", case_id)

    async def skipped() -> bool:
        log = (stack.logs_dir / "agency-gateway.log").read_text(encoding="utf-8", errors="replace")
        return "referral to test-gone cancelled before it could be delivered" in log

    await eventually(skipped, 60, "the gateway to pass over the replayed referral")
    events = await timeline(client, stack.url("notify"), case_id)
    assert [e["agency_id"] for e in events if e["type"] == "referral.delivered"] == ["test-backup"]
    received = (await client.get(f"{stack.url('agency-simulator')}/agencies/test-gone/referrals")).json()
    assert not [r for r in received["referrals"] if r["case_id"] == case_id and r["decision"] == "accept"]


async def test_the_email_plugin_sends_a_real_smtp_message_with_only_the_allowed_fields(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    case_id = await submit(client, stack, "test-mail", needs=["financial"])

    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    assert delivered["detail"]["channel"] == "email"
    [raw] = [m for m in world.mailbox.messages if case_id.encode() in m]
    message = message_from_bytes(raw)
    assert message["To"] == "referrals@test-mail.example"
    assert message["Message-ID"] == f"<{delivered['referral_id']}@referrals.onestop>"
    [attachment] = [p for p in message.walk() if p.get_filename() == "referral.json"]
    assert set(case_fields(_payload(attachment))) == {"crime_type", "needs", "urgency", "victim_name", "language"}
    for secret in (PHONE, EMAIL, SUMMARY, "seoul"):
        assert secret.encode() not in raw, "only the allowed fields may leave"


async def test_a_kafka_native_agency_gets_its_referral_on_its_topic_and_an_ack_topic(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    case_id = await submit(client, stack, "test-kafka", needs=["housing"])

    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    assert delivered["detail"]["channel"] == "kafka" and delivered["detail"]["agency_status"] is None
    on_topic = await read_topic(stack.kafka.bootstrap_servers, "referrals.test-kafka")
    [record] = [r for r in on_topic if r.key == case_id.encode()]
    assert set(case_fields(record.value)) == {"crime_type", "needs", "urgency", "region"}
    assert json.loads(record.value)["personal_items"] == ["victim.name"], "the item's name, never its value"
    assert b"Kim Example" not in record.value
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    await admin.start()
    try:
        assert "acks.test-kafka" in await admin.list_topics()
    finally:
        await admin.close()

    # The agency fetches the value with its own credential; nobody else can.
    personal = f"{stack.url('agency-gateway')}/referrals/{delivered['referral_id']}/personal"
    as_agency = {"authorization": f"Bearer {stack.token('agency', 'test-kafka')}"}
    answer = await client.get(personal, headers=as_agency)
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == {"victim.name": "Kim Example"}
    as_other = {"authorization": f"Bearer {stack.token('agency', 'test-healthy')}"}
    assert (await client.get(personal, headers=as_other)).status_code == 404
    as_staff = {"authorization": f"Bearer {stack.token('caseworker')}"}
    assert (await client.get(personal, headers=as_staff)).status_code == 403
    assert (await client.get(personal, headers={"authorization": "Bearer nonsense"})).status_code == 401
    # Once the case is erased, the item is gone for the agency too.
    assert (await client.delete(f"{stack.url('intake')}/cases/{case_id}")).status_code == 200
    assert (await client.get(personal, headers=as_agency)).status_code == 410


async def test_an_agency_fetches_personal_items_only_while_its_referral_is_open(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    stack = world.stack
    case_id = await submit(client, stack, "test-kafka", needs=["housing"])
    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    referral_id = delivered["referral_id"]
    personal = f"{stack.url('agency-gateway')}/referrals/{referral_id}/personal"
    as_agency = {"authorization": f"Bearer {stack.token('agency', 'test-kafka')}"}
    assert (await client.get(personal, headers=as_agency)).status_code == 200

    declined = await client.post(
        f"{stack.url('notify')}/referrals/{referral_id}/decline", json={"reason": "no_capacity"}, headers=as_agency
    )
    assert declined.status_code == 200, declined.text

    async def closed() -> httpx.Response | None:
        answer = await client.get(personal, headers=as_agency)
        return answer if answer.status_code != 200 else None

    answer = await eventually(closed, 60, "the gateway to learn that the referral was declined")
    assert answer.status_code == 410 and "declined" in answer.json()["detail"]
    assert "Kim" not in answer.text


async def test_a_new_agency_with_a_new_channel_plugin_package_following_the_readme(
    world: GatewayWorld, client: httpx.AsyncClient
) -> None:
    """docs/agencies.md, "Add an agency", with a new channel. The one difference: the plugin is installed into a folder
    of its own on the gateway's PYTHONPATH, not into the shared virtual environment other runs use."""
    stack, bin_dir = world.stack, Path(sys.executable).parent
    plugins, site, drop = world.work / "plugins", world.work / "site", world.work / "drop"

    def run(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        return run_command(*argv, env=env or world.env, cwd=cwd)

    # Step 1: the plugin package, from the scaffolding, with its own test.
    run(bin_dir / "onestop-scaffold", "channel", "drop", "--into", plugins)
    package = plugins / "onestop-channel-drop"
    # Step 2: install it (as `uv pip install` would), and run its test against the installed package.
    run(shutil.which("uv") or "uv", "pip", "install", "--no-deps", "--target", site, package)
    with_plugin = {**world.env, "PYTHONPATH": str(site)}
    tested = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", env=with_plugin, cwd=package)
    assert "2 passed" in tested
    # Step 3: the agency's catalogue entry, from the scaffolding, checked against the plugin's settings.
    run(
        bin_dir / "onestop-scaffold", "agency", "test-dropbox",
        "--name-ko", "시험 드롭", "--name-en", "Test drop-folder agency",
        "--services", "medical", "--channel", "drop", "--setting", f"directory={drop}",
        "--allowed-fields", "victim.name", "--always-open", "--priority", "0",
        "--purpose", "Testing a new channel", "--retention", "Deleted after the test",
        "--catalogue-dir", world.catalogue,
        env=with_plugin,
    )  # fmt: skip
    # Step 4: restart routing and the gateway; nothing else changes.
    restart(stack, ("routing", "agency-gateway"), with_plugin)

    case_id = await submit(client, stack, "test-dropbox", needs=["medical"])
    [delivered] = await events_of(client, stack, case_id, "referral.delivered")
    assert delivered["agency_id"] == "test-dropbox" and delivered["detail"]["channel"] == "drop"
    dropped = drop / f"{delivered['referral_id']}.json"
    assert set(case_fields(dropped.read_bytes())) == {"crime_type", "needs", "urgency", "victim_name"}


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()

"""Scaffolding for newcomers: `onestop-scaffold agency ...` writes a catalogue entry, `onestop-scaffold channel NAME`
a channel plugin package with a working example and its test. See docs/agencies.md, "Add an agency"."""

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from agency_gateway.channels import ChannelSetupError
from agency_gateway.registry import ChannelRegistry
from schemas.catalogue import SENSITIVE_FIELDS, SHAREABLE_FIELDS, CatalogueError, load_agency
from schemas.vocab import Need

_ITEM_NAMES = {
    "region": "region of residence",
    "language": "preferred language",
    "victim.name": "name",
    "victim.phone": "phone number",
    "victim.email": "e-mail address",
    "summary": "case summary",
}


class ScaffoldError(Exception):
    """What the newcomer asked for cannot be made; the message says why."""


def _toml(value: object) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are TOML's too."""
    return json.dumps(value, ensure_ascii=False)


def secret_variable(agency_id: str) -> str:
    return "WEBHOOK_SECRET_" + agency_id.upper().replace("-", "_")


def agency_entry(
    agency_id: str,
    *,
    name_ko: str,
    name_en: str,
    services: Sequence[str],
    channel: str,
    channel_settings: dict[str, object],
    allowed_fields: Sequence[str],
    purpose: str,
    retention: str,
    regions: Sequence[str] = ("*",),
    languages: Sequence[str] = ("ko",),
    priority: int = 100,
    capacity: int = 100,
    always_open: bool = False,
) -> str:
    """The text of `catalogue/agencies/<agency_id>.toml`."""
    items = [_ITEM_NAMES[f] + (" (sensitive)" if f in SENSITIVE_FIELDS else "") for f in allowed_fields]
    hours = (
        "[hours]\nalways_open = true\n"
        if always_open
        else '[hours]\ntimezone = "Asia/Seoul"\nweekdays = [0, 1, 2, 3, 4]  # Monday is 0\nopens = 09:00:00\n'
        "closes = 18:00:00\n"
    )
    settings = "".join(f"{key} = {_toml(value)}\n" for key, value in channel_settings.items())
    return (
        f"# {name_en}. Made by `onestop-scaffold agency`; check every value before shipping it.\n\n"
        f"id = {_toml(agency_id)}\n"
        f"name_ko = {_toml(name_ko)}\n"
        f"name_en = {_toml(name_en)}\n"
        f"services = {_toml(list(services))}\n"
        f"regions = {_toml(list(regions))}\n"
        f"languages = {_toml(list(languages))}\n"
        f"capacity = {capacity}\n"
        f"priority = {priority}  # lower is tried first among agencies offering the same need\n"
        f"allowed_fields = {_toml(list(allowed_fields))}  # the only case fields this agency receives\n\n"
        f"{hours}\n"
        f"[channel]\ntype = {_toml(channel)}\n{settings}\n"
        "[consent_notice]  # what the victim is told before consenting (PIPA Art. 17)\n"
        f"purpose = {_toml(purpose)}\n"
        f"items = {_toml([*items, 'crime type, needs and urgency'])}\n"
        f"retention = {_toml(retention)}\n"
    )


def _parse_settings(pairs: Sequence[str]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise ScaffoldError(f"--setting {pair!r} must be key=value with a lower-case key")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    return settings


def _channel_settings(args: argparse.Namespace) -> dict[str, object]:
    settings = _parse_settings(args.setting)
    if args.channel == "webhook":
        if not args.url:
            raise ScaffoldError("a webhook agency needs --url")
        return {"url": args.url, "secret_env": secret_variable(args.agency_id), **settings}
    if args.channel == "email":
        if not (args.to and args.from_address and args.smtp_host):
            raise ScaffoldError("an e-mail agency needs --to, --from-address and --smtp-host")
        return {"to": args.to, "from_address": args.from_address, "smtp_host": args.smtp_host, **settings}
    return settings


def new_agency(args: argparse.Namespace) -> Path:
    unknown = sorted(set(args.services) - {n.value for n in Need})
    if unknown:
        raise ScaffoldError(f"unknown needs {unknown}; needs are {[n.value for n in Need]}")
    fields = sorted(set(args.allowed_fields) - set(SHAREABLE_FIELDS))
    if fields:
        raise ScaffoldError(f"unknown fields {fields}; shareable fields are {list(SHAREABLE_FIELDS)}")
    path = Path(args.catalogue_dir) / f"{args.agency_id}.toml"
    if path.exists():
        raise ScaffoldError(f"{path} exists already; edit it instead")
    text = agency_entry(
        args.agency_id,
        name_ko=args.name_ko,
        name_en=args.name_en,
        services=args.services,
        channel=args.channel,
        channel_settings=_channel_settings(args),
        allowed_fields=args.allowed_fields,
        purpose=args.purpose,
        retention=args.retention,
        regions=args.regions,
        languages=args.languages,
        priority=args.priority,
        always_open=args.always_open,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        agency = load_agency(path)
        ChannelRegistry.discover().open(agency)
    except CatalogueError as error:
        if "environment variable" in str(error):  # the file is right; the deployment sets the variable
            print(f"note: {error}", file=sys.stderr)
            return path
        path.unlink()
        raise ScaffoldError(str(error)) from None
    except ChannelSetupError as error:
        if "is not set" not in str(error):
            path.unlink()
            raise ScaffoldError(str(error)) from None
        print(f"note: {error}", file=sys.stderr)
    return path


# --- a channel plugin package -------------------------------------------------------------------------

_PYPROJECT = """\
[project]
name = "onestop-channel-{name}"
version = "0.1.0"
description = "Agency gateway channel plugin: {name}."
requires-python = ">=3.11"
dependencies = ["onestop-agency-gateway"]

# The gateway finds the plugin by this entry point; `[channel] type = "{name}"` in a catalogue entry picks it.
[project.entry-points."onestop.channels"]
{name} = "{module}:{cls}Delivery"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/{module}"]
"""

_MODULE = '''\
"""The {name} channel for the agency gateway.

A working example to start from: it drops each referral as `<referral_id>.json` into a folder (as some agencies
collect files). Replace `deliver` with your channel's protocol; keep its promises: the referral id is the
idempotency key (the same referral may come again), return `Delivered`, or `Failed` with `transient=True` when
trying again later may work (the gateway retries with backoff) and `False` when it never will (the DLQ).
`deliver_notice` does the same for the centre's reminders and cancellations of a referral, keyed by their event id.
"""

from pathlib import Path

from agency_gateway.channels import ChannelSettings, Delivered, DeliveryChannel, Failed, Notice, Outcome
from schemas.events import ReferralRequested


class {cls}Settings(ChannelSettings):
    """The agency's `[channel]` table: `type = "{name}"` and these settings (unknown keys are refused)."""

    directory: Path


class {cls}Delivery(DeliveryChannel[{cls}Settings]):
    settings_model = {cls}Settings

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        # `referral` holds only the fields the agency may see; `body` is its JSON wire form.
        return self._write(f"{{referral.referral_id}}.json", body)

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        # A reminder or cancellation (`notice.type`) of a referral the agency has; nothing about the victim.
        return self._write(f"{{notice.event_id}}.{{notice.type}}.json", body)

    def _write(self, name: str, body: bytes) -> Outcome:
        target = self.settings.directory / name
        try:
            self.settings.directory.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            partial.write_bytes(body)
            partial.replace(target)  # atomic: the agency never reads half a file
        except OSError as error:
            return Failed(f"{{name}} could not be written ({{type(error).__name__}})", transient=True)
        return Delivered(f"written as {{target.name}}")
'''

_TEST = '''\
"""The {name} channel delivers a referral once per referral id, and the gateway finds it."""

import asyncio
import json
from pathlib import Path
from uuid import uuid4

from agency_gateway.channels import Delivered
from agency_gateway.registry import ChannelRegistry
from schemas.events import ReferralCase, ReferralRequested, encode_event
from schemas.vocab import CrimeType, Need, Urgency

from {module} import {cls}Delivery, {cls}Settings


def referral() -> ReferralRequested:
    return ReferralRequested(
        case_id=uuid4(),
        producer="agency-gateway",
        referral_id=uuid4(),
        agency_id="example-agency",
        case=ReferralCase(crime_type=CrimeType.fraud, needs=[Need.financial], urgency=Urgency.normal),
    )


def test_delivers_each_referral_once(tmp_path: Path) -> None:
    channel = {cls}Delivery("example-agency", {cls}Settings(type="{name}", directory=tmp_path))
    event = referral()
    outcomes = [asyncio.run(channel.deliver(event, encode_event(event))) for _ in range(2)]

    assert all(isinstance(o, Delivered) for o in outcomes)
    [written] = tmp_path.glob("*.json")
    assert json.loads(written.read_text())["referral_id"] == str(event.referral_id)


def test_the_gateway_finds_the_plugin() -> None:
    assert ChannelRegistry.discover().plugin("{name}") is {cls}Delivery
'''

_README = """\
# onestop-channel-{name}

A channel plugin for the agency gateway: agencies whose catalogue entry says `[channel] type = "{name}"` get their
referrals through `{module}.{cls}Delivery`. Settings: see `{cls}Settings`.

    uv pip install -e {path}      # or keep it under plugins/ (a workspace member) and run uv sync --all-packages
    uv run pytest {path}/tests    # the plugin's own tests
"""


def new_channel(name: str, into: Path) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
        raise ScaffoldError("a channel name is lower-case letters, digits and _, starting with a letter")
    if name in ChannelRegistry.discover().types:
        raise ScaffoldError(f"a plugin for channel type {name!r} is installed already")
    module = f"onestop_channel_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    root = into / f"onestop-channel-{name.replace('_', '-')}"
    if root.exists():
        raise ScaffoldError(f"{root} exists already")
    values = {"name": name, "module": module, "cls": cls, "path": root}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "README.md": _README,
        root / "src" / module / "__init__.py": _MODULE,
        root / "tests" / f"test_{name}.py": _TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="onestop-scaffold", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    agency = commands.add_parser("agency", help="write catalogue/agencies/<agency-id>.toml")
    agency.add_argument("agency_id", help="lower-case words joined by '-', e.g. seoul-shelter")
    agency.add_argument("--name-ko", required=True)
    agency.add_argument("--name-en", required=True)
    agency.add_argument("--services", nargs="+", required=True, metavar="NEED", help="needs it covers")
    agency.add_argument("--channel", required=True, help="webhook, email, kafka or an installed plugin's type")
    agency.add_argument("--url", help="webhook: the agency's endpoint")
    agency.add_argument("--to", help="email: the agency's address")
    agency.add_argument("--from-address", help="email: the centre's sending address")
    agency.add_argument("--smtp-host", help="email: the SMTP relay")
    agency.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE", help="other channel settings")
    agency.add_argument("--allowed-fields", nargs="*", default=[], metavar="FIELD", help=", ".join(SHAREABLE_FIELDS))
    agency.add_argument("--purpose", required=True, help="why the agency receives the data (consent notice)")
    agency.add_argument("--retention", required=True, help="how long the agency keeps it (consent notice)")
    agency.add_argument("--regions", nargs="+", default=["*"])
    agency.add_argument("--languages", nargs="+", default=["ko"])
    agency.add_argument("--priority", type=int, default=100)
    agency.add_argument("--always-open", action="store_true", help="open 24/7 (default: office hours)")
    agency.add_argument("--catalogue-dir", default="catalogue/agencies")

    channel = commands.add_parser("channel", help="write a channel plugin package with an example and its test")
    channel.add_argument("name", help="the channel type, e.g. fax")
    channel.add_argument("--into", default="plugins", help="the folder to create the package in (default: plugins)")

    args = parser.parse_args(argv)
    try:
        if args.command == "agency":
            path = new_agency(args)
            print(f"wrote {path}")
            if args.channel == "webhook":
                print(f"set {secret_variable(args.agency_id)} for the gateway, and give the agency the same secret")
        else:
            print(f"wrote {new_channel(args.name, Path(args.into))}")
    except ScaffoldError as error:
        print(f"onestop-scaffold: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

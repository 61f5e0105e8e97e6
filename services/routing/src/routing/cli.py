"""Routing's own sub-commands: check the catalogue and the rules, and dry-run a case file to see the decision.

python -m routing validate-catalogue [DIR] [--rules FILE]
python -m routing dry-run case.json [--at 2025-03-03T22:00] [--available police=0] [--preview] [--json]
"""

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kit.cli import Command
from pydantic import ValidationError
from schemas.catalogue import Agency, Catalogue, CatalogueError, load_agency, load_catalogue
from schemas.events import CaseDetails, utc_now

from .domain import Plan, route_case
from .rules import Rules, load_rules
from .settings import RoutingSettings

SEOUL = ZoneInfo("Asia/Seoul")


def commands(settings: RoutingSettings) -> list[Command]:
    def catalogue_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--catalogue", type=Path, default=settings.catalogue_dir, help="the agencies' folder (CATALOGUE_DIR)"
        )
        parser.add_argument(
            "--rules", type=Path, default=settings.rules_file, help="the rules file (default: rules.toml beside it)"
        )

    def validate_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("directory", type=Path, nargs="?", default=None, help="the agencies' folder")
        catalogue_options(parser)

    def dry_run_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("case_file", type=Path, help="a JSON file holding the case as intake receives it")
        catalogue_options(parser)
        parser.add_argument(
            "--at", type=_instant, default=None, help="route as at this ISO time (no offset: Asia/Seoul); default now"
        )
        parser.add_argument(
            "--available",
            action="append",
            default=[],
            metavar="AGENCY=N",
            help="places an agency reported free (repeatable); others have their catalogue capacity",
        )
        parser.add_argument("--preview", action="store_true", help="assume consent, as the preview before consent")
        parser.add_argument("--json", action="store_true", help="print the decision as JSON")

    return [
        Command(
            "validate-catalogue",
            "check every agency file and the rules file; name each broken file, field and problem",
            validate_catalogue,
            validate_arguments,
        ),
        Command(
            "dry-run",
            "route a case file without sending anything and print the explained decision",
            dry_run,
            dry_run_arguments,
        ),
    ]


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=SEOUL)


def _rules_path(args: argparse.Namespace, directory: Path) -> Path:
    return args.rules if args.rules is not None else directory.parent / "rules.toml"


def validate_catalogue(args: argparse.Namespace) -> int:
    directory: Path = args.directory or args.catalogue
    files = sorted(directory.glob("*.toml"))
    if not files:
        print(f"no agency files (*.toml) in {directory}", file=sys.stderr)
        return 1
    agencies: list[Agency] = []
    problems: list[str] = []
    for path in files:
        try:
            agencies.append(load_agency(path))
        except CatalogueError as error:
            problems.append(str(error))
    rules: Rules | None = None
    if not problems:
        try:
            rules = load_rules(_rules_path(args, directory), Catalogue({a.id: a for a in agencies}))
        except CatalogueError as error:
            problems.append(str(error))
    if problems:
        print(f"{len(problems)} problem(s) in {directory}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    assert rules is not None
    print(f"catalogue OK: {len(agencies)} agencies ({', '.join(a.id for a in agencies)})")
    print(f"rules OK: rank by {', '.join(rules.rank_by)}; {len(rules.hubs)} crime-type hub(s)")
    return 0


def dry_run(args: argparse.Namespace) -> int:
    try:
        catalogue = load_catalogue(args.catalogue)
        rules = load_rules(_rules_path(args, args.catalogue), catalogue)
    except CatalogueError as error:
        print(f"the catalogue cannot be used: {error}", file=sys.stderr)
        return 1
    try:
        case = CaseDetails.model_validate_json(args.case_file.read_bytes())
    except OSError as error:
        print(f"{args.case_file}: cannot be read ({error.strerror})", file=sys.stderr)
        return 2
    except ValidationError as error:
        # Where and what kind of problem only: the file holds personal data, never echoed.
        print(f"{args.case_file}: not a valid case:", file=sys.stderr)
        for e in error.errors():
            print(f"  {'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}", file=sys.stderr)
        return 2
    try:
        remaining = _places(args.available, catalogue)
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return 2
    now = args.at or utc_now()
    plan = route_case(case.facts(), catalogue, rules, now, remaining=remaining, assume_consent=args.preview)
    if args.json:
        print(json.dumps(_as_json(plan, now), ensure_ascii=False, indent=2))
    else:
        print(explain(case, plan, now))
    return 0


def _places(pairs: list[str], catalogue: Catalogue) -> dict[str, int]:
    places: dict[str, int] = {}
    for pair in pairs:
        agency_id, _, count = pair.partition("=")
        if agency_id not in catalogue or not count.isdigit():
            raise ValueError(f"--available {pair!r}: expected AGENCY=N with an agency of the catalogue")
        places[agency_id] = int(count)
    return places


def _as_json(plan: Plan, now: datetime) -> dict[str, Any]:
    return {
        "decided_at": now.isoformat(),
        "referrals": [{"agency_id": r.agency.id, "needs": r.needs, "consent": r.consent.value} for r in plan.referrals],
        "decisions": [d.model_dump(mode="json", exclude_none=True) for d in plan.decisions],
        "uncovered_needs": plan.uncovered_needs,
    }


def explain(case: CaseDetails, plan: Plan, now: datetime) -> str:
    """The decision as a caseworker reads it; the case's routing facts only, no personal data."""
    lines = [
        f"case: {case.crime_type}, urgency {case.urgency}, region {case.region}, language {case.language}",
        f"needs: {', '.join(case.needs)}",
        f"routed as at {now.astimezone(SEOUL):%Y-%m-%d %a %H:%M} Asia/Seoul",
        "",
        f"referrals ({len(plan.referrals)}):",
    ]
    for decision in (d for d in plan.decisions if d.chosen):
        agency = next(r.agency for r in plan.referrals if r.agency.id == decision.agency_id)
        lines.append(f"  {agency.id} ({agency.name_en}) for {', '.join(decision.needs)}")
        lines.append(f"      {decision.reason}")
        if decision.override is not None:
            lines.append(f"      override reason: {decision.override.reason}")
    skipped = [d for d in plan.decisions if not d.chosen]
    lines += ["", f"skipped candidates ({len(skipped)}):"]
    lines += [f"  {d.agency_id} for {', '.join(d.needs)}: {d.reason.removeprefix('skipped: ')}" for d in skipped]
    lines += ["", f"uncovered needs: {', '.join(plan.uncovered_needs) or 'none'}"]
    return "\n".join(lines)

"""`casectl flow <case_id>`: a case's timeline with the time each step took and its trace ids.
`casectl health`: every service's dependencies and whether each answers.
`casectl token --role caseworker`: a bearer token (curl -H "Authorization: Bearer $(casectl token --role ...)").
`casectl audit [--case ID] [--actor agency:police]`: each service's access log, and whether its chain holds.
`casectl lag`: each consumer group's lag per topic, by service and agency (Kafka's committed vs end offsets).
`casectl dlq list | show <topic> | replay <agency-id> [--dry-run]`: the dead letters, and the gateway's replay.
`casectl report --month 2026-11 [--format csv|html|json|pdf] [--lang en] [--output FILE]`: the monitoring report.

flow, health, audit and report read the services' HTTP APIs (notify's `GET /cases/{id}/timeline`, each service's
`GET /health`, `/access-log`), with a token from CASECTL_TOKEN, else minted with AUTH_SECRET, else the dev stack's in
`.state/tokens/`. lag and dlq read Kafka (casectl/queues.py says with which login).
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka.errors import KafkaError
from kit.auth import Role, issue_token

from .queues import Kafka, replay, show_dlq, show_lag
from .text import table

DEFAULT_SERVICES = {
    "intake": "http://127.0.0.1:8001",
    "routing": "http://127.0.0.1:8002",
    "agency-gateway": "http://127.0.0.1:8003",
    "notify": "http://127.0.0.1:8004",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="casectl", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    flow = commands.add_parser("flow", help="a case's steps, how long each took, and its trace ids")
    flow.add_argument("case_id")
    flow.add_argument("--notify-url", default=os.environ.get("NOTIFY_URL", DEFAULT_SERVICES["notify"]))
    flow.add_argument("--jaeger-url", default=os.environ.get("JAEGER_URL"), help="print a link to each trace there")
    flow.add_argument("--json", action="store_true", help="the timeline as notify returns it")
    health = commands.add_parser("health", help="each service's dependencies and whether each answers")
    health.add_argument(
        "--url", action="append", default=[], metavar="NAME=URL", help="a service's address (default: the dev stack)"
    )
    token = commands.add_parser("token", help="print a bearer token (signed with AUTH_SECRET, or the dev stack's)")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--agency", help="the agency, for --role agency")
    token.add_argument("--subject", help="who the token is for (default: dev-<role>)")
    token.add_argument("--hours", type=float, default=8.0, help="how long it is valid (with AUTH_SECRET)")
    audit = commands.add_parser("audit", help="each service's access log, and whether each chain holds")
    audit.add_argument("--case", dest="case_id", help="only reads and changes of this case")
    audit.add_argument("--actor", help="only this credential's (agency:police, caseworker:cw-17)")
    audit.add_argument(
        "--url", action="append", default=[], metavar="NAME=URL", help="a service's address (default: the dev stack)"
    )
    lag = commands.add_parser("lag", help="each consumer group's lag per topic, by service and agency")
    lag.add_argument("--lagging", action="store_true", help="only the groups and topics with records waiting")
    lag.add_argument("--json", action="store_true", help="as JSON")
    dlq = commands.add_parser("dlq", help="dead letters: list (per topic and reason), show <topic>, replay <agency>")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="dlq_command")
    listing = dlq_commands.add_parser("list", help="every dead-letter topic: per reason, how many, the first and last")
    show = dlq_commands.add_parser(
        "show", help="each dead letter of one topic (referrals.police or referrals.police.dlq)"
    )
    show.add_argument("topic")
    again = dlq_commands.add_parser("replay", help="put an agency's dead letters back (as onestop-replay-dlq)")
    again.add_argument("agency_id")
    again.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    report = commands.add_parser("report", help="the monitoring report of a month or a period (supervisors)")
    period = report.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", help="a month in Asia/Seoul, like 2026-11")
    period.add_argument("--start", help="ISO 8601 with its offset (with --end)")
    report.add_argument("--end", help="ISO 8601 with its offset (with --start)")
    report.add_argument("--crime-type", help="only cases of this crime type")
    report.add_argument("--format", choices=["json", "csv", "html", "pdf"], default="csv")
    report.add_argument("--lang", choices=["ko", "en"], default="ko", help="the HTML page's or the PDF's language")
    report.add_argument("--output", type=Path, help="write it here instead of printing it")
    report.add_argument("--notify-url", default=os.environ.get("NOTIFY_URL", DEFAULT_SERVICES["notify"]))
    for kafka_command in (lag, listing, show, again):
        kafka_command.add_argument(
            "--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)"
        )
    args = parser.parse_args(argv)
    try:
        if args.command in ("lag", "dlq"):
            return kafka_command_of(args)
        if args.command == "flow":
            return show_flow(args.case_id, args.notify_url, args.jaeger_url, args.json)
        if args.command == "token":
            print(bearer_token(Role(args.role), args.agency, args.subject, args.hours))
            return 0
        if args.command == "report":
            return fetch_report(args)
        if args.command == "audit":
            return show_audit(service_urls(args.url), args.case_id, args.actor)
        return show_health(service_urls(args.url))
    except (LookupError, ValueError) as error:
        print(f"casectl: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(f"casectl: cannot reach the service ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    except KafkaError as error:
        print(f"casectl: Kafka did not answer ({type(error).__name__}: {error})", file=sys.stderr)
        return 2


def kafka_command_of(args: argparse.Namespace) -> int:
    kafka = Kafka.from_env(args.bootstrap_servers)
    if args.command == "lag":
        return show_lag(kafka, args.lagging, args.json)
    if args.dlq_command == "replay":
        return replay(kafka, args.agency_id, args.dry_run)
    return show_dlq(kafka, args.topic if args.dlq_command == "show" else None)


def fetch_report(args: argparse.Namespace) -> int:
    """GET notify's /reports/referrals as a supervisor and print or save it."""
    if args.format == "pdf" and args.output is None:
        print("casectl: a PDF goes to a file: give --output report.pdf", file=sys.stderr)
        return 2
    params = {"format": args.format, "lang": args.lang}
    params |= {"month": args.month} if args.month else {"start": args.start, "end": args.end or ""}
    if args.crime_type:
        params["crime_type"] = args.crime_type
    headers = {"authorization": f"Bearer {bearer_token(Role.supervisor)}"}
    answer = httpx.get(f"{args.notify_url.rstrip('/')}/reports/referrals", params=params, headers=headers, timeout=180)
    if answer.status_code != 200:
        print(f"casectl: notify answered {answer.status_code}: {answer.text[:500]}", file=sys.stderr)
        return 1
    if args.format == "pdf":
        args.output.write_bytes(answer.content)
        print(f"written: {args.output}")
        return 0
    body = json.dumps(answer.json(), indent=2, ensure_ascii=False) + "\n" if args.format == "json" else answer.text
    if args.output is None:
        sys.stdout.write(body)
    else:
        args.output.write_text(body, encoding="utf-8")
        print(f"written: {args.output}")
    return 0


def bearer_token(role: Role, agency: str | None = None, subject: str | None = None, hours: float = 8.0) -> str:
    """CASECTL_TOKEN if set; else a token signed with AUTH_SECRET; else the dev stack's (`./dev up` writes them)."""
    if os.environ.get("CASECTL_TOKEN"):
        return os.environ["CASECTL_TOKEN"]
    secret = os.environ.get("AUTH_SECRET")
    if secret:
        who = subject or (f"agency-{agency}" if agency else f"dev-{role.value}")
        return issue_token(secret, role, who, agency=agency, ttl_seconds=hours * 3600)
    name = f"agency-{agency}" if role is Role.agency else role.value
    path = Path(os.environ.get("DEVSTACK_STATE", ".state")) / "tokens" / name
    if not path.exists():
        raise LookupError(f"no token: set AUTH_SECRET or CASECTL_TOKEN, or run `./dev up` (it writes {path})")
    return path.read_text().strip()


def _auth(role: Role) -> dict[str, str]:
    return {"authorization": f"Bearer {bearer_token(role)}"}


def service_urls(overrides: Sequence[str]) -> dict[str, str]:
    """The four services' addresses: the dev stack's, or `INTAKE_URL`..., or `--url name=URL`."""
    found = {
        name: os.environ.get(f"{name.upper().replace('-', '_')}_URL", url) for name, url in DEFAULT_SERVICES.items()
    }
    return {**found, **dict(item.split("=", 1) for item in overrides)}


def show_audit(services: dict[str, str], case_id: str | None, actor: str | None) -> int:
    """Every access-log row of each service (oldest first), then whether its hash chain is intact."""
    headers, worst = _auth(Role.auditor), 0
    params = {k: v for k, v in {"case_id": case_id, "actor": actor}.items() if v}
    for name, url in services.items():
        rows = httpx.get(f"{url.rstrip('/')}/access-log", params=params, headers=headers, timeout=10)
        verified = httpx.get(f"{url.rstrip('/')}/access-log/verify", headers=headers, timeout=30)
        if rows.status_code != 200 or verified.status_code != 200:
            print(f"{name}: answered {rows.status_code} / {verified.status_code}", file=sys.stderr)
            worst = 1
            continue
        chain = verified.json()
        state = "intact" if chain["intact"] else f"BROKEN at row {chain['first_broken_seq']}"
        print(f"{name}: {len(rows.json())} row(s); chain of {chain['rows_checked']} row(s) {state}")
        for r in rows.json():
            whose = r["referral_id"] or r["case_id"] or "-"
            print(f"  {r['seq']:>6} {r['at']}  {r['actor']:<28} {r['client']:<15} {r['action']:<24} {whose}")
        worst = max(worst, 0 if chain["intact"] else 1)
    return worst


def show_flow(case_id: str, notify_url: str, jaeger_url: str | None, as_json: bool) -> int:
    answer = httpx.get(f"{notify_url.rstrip('/')}/cases/{case_id}/timeline", headers=_auth(Role.caseworker), timeout=10)
    if answer.status_code != 200:
        detail = answer.json().get("detail", answer.text) if _is_json(answer) else answer.text
        print(f"casectl: notify answered {answer.status_code}: {detail}", file=sys.stderr)
        return 1
    timeline = answer.json()
    print(json.dumps(timeline, indent=2, ensure_ascii=False) if as_json else render_flow(timeline, jaeger_url))
    return 0


def render_flow(timeline: dict[str, Any], jaeger_url: str | None = None) -> str:
    """The timeline as a table: when (from the start), the step's own duration and what it followed, and traces."""
    events: list[dict[str, Any]] = timeline["events"]
    traces = list(dict.fromkeys(e["trace_id"] for e in events if e.get("trace_id")))
    total = max((e.get("since_start_ms") or 0 for e in events), default=0)
    lines = [f"case {timeline['case_id']}: {len(events)} events over {duration(total)}"]
    if len(traces) == 1:
        lines.append(f"trace {traces[0]}")
    elif traces:
        lines.append(f"{len(traces)} traces: " + ", ".join(f"[{i + 1}] {t}" for i, t in enumerate(traces)))
    else:
        lines.append("no trace ids recorded (tracing was off)")
    if jaeger_url:
        lines += [f"  {jaeger_url.rstrip('/')}/trace/{t}" for t in traces]
    header = ("at", "step", "event", "agency", "after", "by", "noted", "span")
    rows = [header]
    for e in events:
        span = e.get("span_id") or "-"
        if len(traces) > 1 and e.get("trace_id"):
            span = f"[{traces.index(e['trace_id']) + 1}] {span}"
        rows.append(
            (
                "+" + duration(e.get("since_start_ms") or 0),
                "-" if e.get("step_ms") is None else duration(e["step_ms"]),
                e["type"],
                e.get("agency_id") or "-",
                e.get("step_after") or "-",
                e.get("producer") or "-",
                "-" if e.get("lag_ms") is None else "+" + duration(e["lag_ms"]),
                span,
            )
        )
    lines += table([[str(c) for c in row] for row in rows], right={0, 1, 6})
    lines.append("at: since the case was submitted; step: since the event it followed (after); noted: until notify")
    lines.append("recorded it. A step that is long on one agency's line is where that agency's referral waits.")
    return "\n".join(lines)


def show_health(services: dict[str, str]) -> int:
    worst = 0
    for name, url in services.items():
        try:
            answer = httpx.get(f"{url.rstrip('/')}/health", timeout=10)
            report = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            print(f"{name:<16} unreachable at {url} ({type(error).__name__})")
            worst = 1
            continue
        print(f"{name:<16} {report.get('status', answer.status_code)}")
        for d in report.get("dependencies", []):
            state = "ok" if d["reachable"] else f"UNREACHABLE ({d.get('error') or 'no answer'})"
            need = "required" if d["required"] else "optional"
            print(f"  {d['name']:<14} {d['kind']:<10} {d['target']:<36} {need:<8} {state}  {d.get('latency_ms')} ms")
        worst = max(worst, 0 if answer.status_code == 200 else 1)
    return worst


def duration(ms: int | float) -> str:
    """`840 ms`, `2.31 s`, `4m 05s`, `3h 20m`."""
    if ms < 1000:
        return f"{round(ms)} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def _is_json(answer: httpx.Response) -> bool:
    return "json" in answer.headers.get("content-type", "")

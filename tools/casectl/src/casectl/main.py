"""`casectl flow <case_id>`: a case's timeline with the time each step took and its trace ids.
`casectl health`: every service's dependencies and whether each answers.

Both read the services' HTTP APIs (notify's `GET /cases/{id}/timeline`, each service's `GET /health`).
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx

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
    args = parser.parse_args(argv)
    try:
        if args.command == "flow":
            return show_flow(args.case_id, args.notify_url, args.jaeger_url, args.json)
        services = {**DEFAULT_SERVICES, **dict(item.split("=", 1) for item in args.url)}
        return show_health(services)
    except httpx.HTTPError as error:
        print(f"casectl: cannot reach the service ({type(error).__name__}: {error})", file=sys.stderr)
        return 2


def show_flow(case_id: str, notify_url: str, jaeger_url: str | None, as_json: bool) -> int:
    answer = httpx.get(f"{notify_url.rstrip('/')}/cases/{case_id}/timeline", timeout=10)
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
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    right = {0, 1, 6}
    for row in rows:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
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

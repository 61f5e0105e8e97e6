"""A case's flow for people: per-step durations measured from the step each one followed, and casectl's table."""

from typing import Any

from casectl.main import duration, render_flow
from notify.flow import with_durations

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def event(type_: str, at: str, referral: str | None = None, agency: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{type_}-{at}",
        "type": type_,
        "occurred_at": f"2026-01-05T09:00:{at}+00:00",
        "recorded_at": f"2026-01-05T09:00:{at}+00:00",
        "producer": "test",
        "referral_id": referral,
        "agency_id": agency,
        "detail": extra.pop("detail", {}),
        "trace_id": extra.pop("trace_id", TRACE),
        "span_id": "00f067aa0ba902b7",
        **extra,
    }


CASE = [
    event("case.submitted", "00.000"),
    event("case.routed", "00.250"),
    event("referral.delivered", "00.400", "r-police", "police"),
    event("referral.delivered", "00.900", "r-legal", "legal-aid"),
    event("referral.accepted", "01.000", "r-police", "police"),
    event("referral.declined", "05.900", "r-legal", "legal-aid"),
    event("referral.rerouting", "05.950", "r-legal", "legal-aid"),
    event("case.routed", "06.100", detail={"rerouted_from": "r-legal"}),
    event("referral.delivered", "06.300", "r-aid2", "victim-support-center"),
]


def test_each_step_is_measured_from_the_step_it_followed_not_the_line_above() -> None:
    flow = {(e["type"], e["agency_id"]): e for e in with_durations(CASE)}
    assert flow["case.submitted", None]["step_ms"] is None
    first_routing = with_durations(CASE)[1]
    assert (first_routing["step_after"], first_routing["step_ms"]) == ("case.submitted", 250)
    # legal-aid's delivery follows the routing, though police's delivery sits between them.
    assert (
        flow["referral.delivered", "legal-aid"]["step_after"],
        flow["referral.delivered", "legal-aid"]["step_ms"],
    ) == (
        "case.routed",
        650,
    )
    # police accepted 600 ms after its own delivery; legal-aid declined 5 s after its own.
    assert flow["referral.accepted", "police"]["step_ms"] == 600
    assert flow["referral.declined", "legal-aid"]["step_ms"] == 5000
    # The re-route follows the referral it replaces; the new agency's delivery follows the re-route.
    reroute = with_durations(CASE)[7]
    assert (reroute["step_after"], reroute["step_ms"]) == ("referral.rerouting", 150)
    assert flow["referral.delivered", "victim-support-center"]["step_ms"] == 200
    assert [e["since_start_ms"] for e in with_durations(CASE)] == [0, 250, 400, 900, 1000, 5900, 5950, 6100, 6300]


def test_casectl_prints_the_flow_with_durations_and_the_trace() -> None:
    shown = render_flow({"case_id": "c-1", "events": with_durations(CASE)}, jaeger_url="http://localhost:16686/")
    lines = shown.splitlines()
    assert lines[0] == "case c-1: 9 events over 6.30 s"
    assert lines[1] == f"trace {TRACE}"
    assert lines[2] == f"  http://localhost:16686/trace/{TRACE}"
    declined = next(line for line in lines if "referral.declined" in line)
    assert (
        "+5.90 s" in declined and "5.00 s" in declined and "legal-aid" in declined and "referral.delivered" in declined
    )


def test_casectl_numbers_the_traces_when_a_case_spans_several() -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    events = with_durations([event("case.submitted", "00.000"), event("case.routed", "00.250", trace_id=other)])
    shown = render_flow({"case_id": "c-2", "events": events})
    assert f"2 traces: [1] {TRACE}, [2] {other}" in shown
    assert "[2] 00f067aa0ba902b7" in shown


def test_durations_read_at_a_glance() -> None:
    assert [duration(ms) for ms in (0, 840, 2310, 245_000, 12_000_000)] == [
        "0 ms",
        "840 ms",
        "2.31 s",
        "4m 05s",
        "3h 20m",
    ]

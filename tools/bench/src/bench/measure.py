"""From the traces of one phase to its figures: throughput, latency per stage, latency per Kafka hop."""

from collections import Counter
from collections.abc import Container, Iterable, Mapping
from typing import Any

from bench.baseline import ChainTrace
from bench.load import CaseTrace, Tracker, epoch
from bench.stats import summary_ms

SERVICES = ("intake", "routing", "agency-gateway", "notify")
# The system's own processes: the four services (and their replicas, `routing#2`), the broker, the database.
SYSTEM = (*SERVICES, "kafka", "postgres")
SIMULATOR = "agency-simulator"
LOAD_GENERATOR = "bench"  # the benchmark's own process: the load, the observer of referral.events, the sampling


def cpu_per_case(processes: dict[str, dict[str, float]], cases: int, sampling_s: float) -> dict[str, Any]:
    """Milliseconds of CPU per delivered case (its three referrals delivered): the system's processes summed, the
    simulated agencies, the load generator (of which `sampling_s` went to measuring the processes), each process."""

    def ms(seconds: float) -> float | None:
        return round(seconds * 1000 / cases, 1) if cases else None

    system = sorted(name for name in processes if name.split("#")[0] in SYSTEM)
    return {
        "cases": cases,
        "system": ms(sum(processes[name]["cpu_s"] for name in system)) if system else None,
        "system_processes": system,
        "agency_simulator": ms(processes[SIMULATOR]["cpu_s"]) if SIMULATOR in processes else None,
        "load_generator": ms(processes[LOAD_GENERATOR]["cpu_s"]) if LOAD_GENERATOR in processes else None,
        "load_generator_sampling": ms(sampling_s),
        "per_process": {name: ms(figures["cpu_s"]) for name, figures in processes.items()},
    }


def pipeline_figures(
    tracker: Tracker, load_seconds: float, notify_hops: Iterable[float], ack_statuses: Mapping[str, int], delay: float
) -> dict[str, Any]:
    traces = list(tracker.cases.values())
    reported = [t for t in traces if t.all_delivered]
    received = [t for t in traces if t.referrals is not None and len(t.received) >= t.referrals]
    acknowledged = [t for t in traces if t.all_acknowledged]
    answer, routed, hop_referrals, delivered_each, answered = [], [], [], [], []
    for t in traces:
        answer.append(t.accepted - t.sent)
        if t.routed is not None:
            routed.append(t.routed - t.accepted)
            hop_referrals += [at - t.routed for at in t.received.values()]
        delivered_each += [at - t.accepted for at in t.received.values()]
        answered += [t.acknowledged[r] - at - delay for r, at in t.received.items() if r in t.acknowledged]
    delivered_span = _span(tracker.first_sent, tracker.last_done)
    last_ack = max((max(t.acknowledged.values()) for t in acknowledged), default=None)
    acknowledged_span = _span(tracker.first_sent, last_ack)
    return {
        "accepted": len(traces),
        "rejected": dict(tracker.rejected),
        "retried": dict(tracker.retried),
        "delivered": len(received),
        "delivered_reported": len(reported),
        "acknowledged": len(acknowledged),
        "referrals_expected": sum(t.referrals or 0 for t in traces),
        "referrals_received": sum(len(t.received) for t in traces),
        "acks_by_status": dict(ack_statuses),
        "agency_answer_delay_s": delay,
        "accepted_per_s": round(len(traces) / load_seconds, 1) if load_seconds > 0 else None,
        "sustained_cases_per_s": round(len(reported) / delivered_span, 1) if delivered_span else None,
        "acknowledged_cases_per_s": round(len(acknowledged) / acknowledged_span, 1) if acknowledged_span else None,
        "latency_ms": {
            "intake_answer": summary_ms(answer),
            "routed": summary_ms(routed),
            "delivered_each": summary_ms(delivered_each),
            "delivered_all": summary_ms([max(t.received.values()) - t.accepted for t in received]),
            "acknowledged_all": summary_ms([max(t.acknowledged.values()) - t.accepted for t in acknowledged]),
            "ack_recorded_after_answer": summary_ms(answered),
        },
        "hops_ms": {
            "case.submitted": summary_ms(routed),
            "referrals.<agency>": summary_ms(hop_referrals),
            "referral.events": summary_ms(list(notify_hops)),
        },
    }


def catch_up_figures(
    tracker: Tracker, submit_seconds: float, started: float, healthy: float, startup_cpu_s: Mapping[str, float]
) -> dict[str, Any]:
    """A queue drained: the consumers were started at `started` and all answered healthy at `healthy` (epoch s),
    each having used `startup_cpu_s` by then."""
    traces = list(tracker.cases.values())
    delivered = [max(t.received.values()) for t in traces if t.referrals is not None and len(t.received) >= t.referrals]
    acknowledged = [max(t.acknowledged.values()) for t in traces if t.all_acknowledged]

    def after_start(done: list[float]) -> float | None:
        return round(max(done) - started, 2) if done and len(done) == len(traces) else None

    def per_s(done: list[float]) -> float | None:
        span = _span(healthy, max(done, default=None))
        return round(len(done) / span, 1) if span else None

    return {
        "queued": len(traces),
        "submit_seconds": round(submit_seconds, 2),
        "queued_per_s": round(len(traces) / submit_seconds, 1) if submit_seconds > 0 else None,
        "start_to_healthy_s": round(healthy - started, 2),
        "startup_cpu_s": dict(startup_cpu_s),
        "to_deliver_all_s": after_start(delivered),
        "to_acknowledge_all_s": after_start(acknowledged),
        "delivered_per_s": per_s(delivered),
        "acknowledged_per_s": per_s(acknowledged),
    }


def baseline_figures(traces: Mapping[str, ChainTrace], load_seconds: float, agencies: int) -> dict[str, Any]:
    chains = list(traces.values())
    complete = [t for t in chains if len(t.events_in) >= agencies]
    delivered = [t for t in chains if len(t.agency_in) >= agencies]
    hop1 = [t.routed_in - t.sent for t in chains if t.routed_in is not None]
    hop2 = [at - t.routed_in for t in chains if t.routed_in is not None for at in t.agency_in.values()]
    hop3 = [t.events_in[a] - t.agency_out[a] for t in chains for a in t.events_in if a in t.agency_out]
    last_done = max((max(t.events_in.values()) for t in complete), default=None)
    first_sent = min((t.sent for t in chains), default=None)
    span = _span(first_sent, last_done)
    return {
        "accepted": len(chains),
        "delivered": len(delivered),
        "acknowledged": len(complete),
        "accepted_per_s": round(len(chains) / load_seconds, 1) if load_seconds > 0 else None,
        "sustained_cases_per_s": round(len(complete) / span, 1) if span else None,
        "latency_ms": {
            "delivered_all": summary_ms([max(t.agency_in.values()) - t.sent for t in delivered]),
            "events_all": summary_ms([max(t.events_in.values()) - t.sent for t in complete]),
        },
        "hops_ms": {
            "case.submitted": summary_ms(hop1),
            "referrals.<agency>": summary_ms(hop2),
            "referral.events": summary_ms(hop3),
        },
    }


def _span(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None and end > start else None


def received_by_case(snapshot: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The simulator's `GET /received`: case id -> referral id -> when the agency first received it."""
    found: dict[str, dict[str, str]] = {}
    for referral in snapshot.get("referrals", []):
        found.setdefault(str(referral["case_id"]), {})[str(referral["referral_id"])] = referral["first_received_at"]
    return found


def ack_statuses(snapshot: Mapping[str, Any], case_ids: Container[str]) -> Counter[str]:
    """How the agencies' acknowledgements of these cases' referrals ended (sent, rejected by notify, ...)."""
    return Counter(r["ack"]["status"] for r in snapshot.get("referrals", []) if str(r["case_id"]) in case_ids)


def notify_hop_seconds(timeline: Mapping[str, Any]) -> list[float]:
    """From a notify timeline: referral.delivered's occurred_at (gateway) to its recorded_at (notify)."""
    return [
        epoch(e["recorded_at"]) - epoch(e["occurred_at"])
        for e in timeline.get("events", [])
        if e["type"] == "referral.delivered"
    ]


def apply_receipts(traces: Iterable[CaseTrace], received: Mapping[str, Mapping[str, str]]) -> None:
    for trace in traces:
        for referral_id, at in received.get(trace.case_id, {}).items():
            trace.received[referral_id] = epoch(at)

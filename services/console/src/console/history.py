"""The operator's numbers over time, as small charts: what Prometheus kept of the services' own series (the counters
on the operations page count only since each process started). Deliveries and failures per agency, each consumer
group's lag and each service's outbox backlog, over a chosen window, drawn server-side as inline SVG sparklines —
no script, no chart library. Without Prometheus (CONSOLE_PROMETHEUS_URL unset or not answering) the page shows
its numbers only, and says why there is no history."""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

log = logging.getLogger(__name__)

# The windows an operator chooses between, and the step of each (about 60 points per chart).
WINDOWS: Mapping[str, timedelta] = {
    "15m": timedelta(minutes=15),  # an incident as it happens: a point per scrape (15 s)
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_WINDOW = "6h"
POINTS = 60


def step_of(window: timedelta) -> timedelta:
    """The step between two points: the window in POINTS steps, at least 15 s (the scrape interval)."""
    return max(window / POINTS, timedelta(seconds=15))


def _range(step: timedelta) -> str:
    return f"{max(int(step.total_seconds()), 60)}s"  # increase() needs two samples in its range


def queries(step: timedelta) -> dict[str, tuple[str, str]]:
    """Each chart's PromQL, and the label its series are told apart by (the series the services export)."""
    span = _range(step)
    delivered, failed = (
        f'sum by (agency_id) (increase(onestop_deliveries_total{{outcome="{outcome}"}}[{span}]))'
        for outcome in ("delivered", "failed")
    )
    return {
        "delivered": (delivered, "agency_id"),
        "failed": (failed, "agency_id"),
        "lag": ("sum by (group) (onestop_consumer_lag)", "group"),
        "outbox": ("max by (service) (onestop_outbox_backlog)", "service"),
    }


@dataclass(frozen=True)
class Series:
    """One line of a chart: (unix time, value) pairs in time order."""

    points: Sequence[tuple[float, float]]

    @property
    def peak(self) -> float:
        return max((v for _, v in self.points), default=0.0)

    @property
    def total(self) -> float:
        return sum(v for _, v in self.points)


@dataclass
class History:
    """Every chart's series by its label's value (an agency, a consumer group, a service), over [start, end]."""

    window: str
    start: float
    end: float
    charts: dict[str, dict[str, Series]] = field(default_factory=dict)
    unavailable: str | None = None  # why there is none: not configured, or Prometheus did not answer

    def of(self, chart: str, key: str) -> Series | None:
        return self.charts.get(chart, {}).get(key)


def series_of(answer: Mapping[str, Any], label: str) -> dict[str, Series]:
    """A query_range answer (`resultType: matrix`) as series by the label's value; anything else is empty."""
    data = answer.get("data")
    if answer.get("status") != "success" or not isinstance(data, dict) or data.get("resultType") != "matrix":
        return {}
    found: dict[str, Series] = {}
    for result in data.get("result") or []:
        key = str((result.get("metric") or {}).get(label, "?"))
        points = [(float(t), float(v)) for t, v in result.get("values") or []]
        found[key] = Series(sorted(points))
    return found


def sparkline(series: Series | None, start: float, end: float, width: int = 120, height: int = 24) -> str:
    """The SVG polyline's points for a series over [start, end]: time along x, 0..its peak up y ('' when empty)."""
    if series is None or not series.points or end <= start:
        return ""
    top = series.peak or 1.0
    inner = height - 2  # a pixel free above and below, so a flat line at 0 or at the peak stays visible

    def x(t: float) -> float:
        return round((min(max(t, start), end) - start) / (end - start) * width, 1)

    def y(v: float) -> float:
        return round(height - 1 - max(v, 0.0) / top * inner, 1)

    return " ".join(f"{x(t)},{y(v)}" for t, v in series.points)


async def fetch(
    client: httpx.AsyncClient, prometheus_url: str | None, window: str, now: datetime | None = None
) -> History:
    """Every chart over the window ending now, from Prometheus's HTTP API (`/api/v1/query_range`)."""
    span = WINDOWS.get(window, WINDOWS[DEFAULT_WINDOW])
    end = now or datetime.now(UTC)
    start = end - span
    history = History(window if window in WINDOWS else DEFAULT_WINDOW, start.timestamp(), end.timestamp())
    if not prometheus_url:
        history.unavailable = "not_configured"
        return history
    step = step_of(span)
    asked = queries(step)

    async def ask(query: str) -> Mapping[str, Any]:
        params = {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
        params["step"] = f"{int(step.total_seconds())}s"
        answer = await client.get(f"{prometheus_url.rstrip('/')}/api/v1/query_range", params=params)
        answer.raise_for_status()
        body = answer.json()
        return body if isinstance(body, dict) else {}

    try:
        answers = await asyncio.gather(*(ask(query) for query, _ in asked.values()))
    except (httpx.HTTPError, ValueError) as failed:
        log.warning("Prometheus did not answer for the operator's charts: %s", type(failed).__name__)
        history.unavailable = "not_answering"
        return history
    for (chart, (_, label)), answer in zip(asked.items(), answers, strict=True):
        history.charts[chart] = series_of(answer, label)
    return history

"""The Grafana dashboard for deployments that have Grafana: deploy/grafana/onestop.json, written from the description
below by `uv run python -m devstack grafana` (tests/unit/test_grafana.py fails while the file differs).

Every panel reads the services' metrics through the Prometheus data source chosen on the dashboard (`$datasource`),
with the alert rules' labels (job="onestop", service, agency_id); `$agency` narrows the agency panels.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path("deploy/grafana/onestop.json")
UID = "onestop-operations"
WIDTH = 24  # Grafana's grid
PANEL_HEIGHT = 8
AGENCY = 'agency_id=~"$agency"'


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[str, ...]  # one query each; the legend names the labels in `legend`
    legend: str
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or stat


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


ROWS: tuple[Row, ...] = (
    Row(
        "Referrals",
        (
            Panel(
                "Referrals entering each state",
                ("sum by (state) (rate(onestop_referrals_total[$__rate_interval]))",),
                "{{state}}",
                "reqps",
                "routing: requested; gateway: delivered / failed; notify: accepted, declined, overdue …",
            ),
            Panel(
                "Deliveries by agency and outcome",
                (f"sum by (agency_id, outcome) (rate(onestop_deliveries_total{{{AGENCY}}}[$__rate_interval]))",),
                "{{agency_id}} {{outcome}}",
                "reqps",
            ),
            Panel(
                "Delivery time, 95th percentile",
                (
                    "histogram_quantile(0.95, sum by (agency_id, le) "
                    f"(rate(onestop_delivery_seconds_bucket{{{AGENCY}}}[$__rate_interval])))",
                ),
                "{{agency_id}}",
                "s",
                "From routing's referral.requested to the end of the delivery, retries included.",
            ),
            Panel(
                "Acknowledgement deadlines missed (1 h)",
                (f"sum by (agency_id) (increase(onestop_sla_breaches_total{{{AGENCY}}}[1h]))",),
                "{{agency_id}}",
                description="referral.overdue: alert ReferralOverdue (docs/operations.md#referraloverdue).",
            ),
        ),
    ),
    Row(
        "Agencies",
        (
            Panel(
                "Circuit open",
                (f"max by (agency_id) (onestop_circuit_open{{{AGENCY}}})",),
                "{{agency_id}}",
                description="1 while the gateway pauses calls to the agency: alert AgencyCircuitOpen.",
            ),
            Panel(
                "Dead letters (1 h)",
                ("sum by (topic, reason) (increase(onestop_dlq_records_total[1h]))",),
                "{{topic}} {{reason}}",
                description="casectl dlq list; alert DeadLettersGrowing.",
            ),
        ),
    ),
    Row(
        "Pipeline",
        (
            Panel(
                "Consumer lag",
                ("sum by (group, topic) (onestop_consumer_lag)",),
                "{{group}} {{topic}}",
                description="Records not yet consumed (casectl lag): alert ConsumerLagGrowing.",
            ),
            Panel(
                "Outbox: oldest unsent row",
                ("max by (service) (onestop_outbox_oldest_unsent_seconds)",),
                "{{service}}",
                "s",
                "Alert OutboxStuck above 60 s.",
            ),
            Panel("Outbox backlog", ("sum by (service) (onestop_outbox_backlog)",), "{{service}}"),
            Panel(
                "Event age when handled, 95th percentile",
                (
                    "histogram_quantile(0.95, sum by (consumer, le) "
                    "(rate(onestop_event_age_seconds_bucket[$__rate_interval])))",
                ),
                "{{consumer}}",
                "s",
            ),
            Panel(
                "Events published",
                ("sum by (event_type) (rate(onestop_events_published_total[$__rate_interval]))",),
                "{{event_type}}",
                "reqps",
            ),
            Panel(
                "Events handled other than processed",
                (
                    'sum by (consumer, outcome) (rate(onestop_events_consumed_total{outcome!="processed"}'
                    "[$__rate_interval]))",
                ),
                "{{consumer}} {{outcome}}",
                "reqps",
            ),
        ),
    ),
    Row(
        "Services",
        (
            Panel(
                "Up",
                ('up{job="onestop"}',),
                "{{service}} {{instance}}",
                kind="stat",
                description="Alert ServiceDown.",
            ),
            Panel(
                "Dependencies answering",
                ("min by (service, dependency, required) (onestop_dependency_up)",),
                "{{service}} → {{dependency}} (required: {{required}})",
                description="Alerts ServiceDegraded (required) and ServiceImpaired (optional).",
            ),
            Panel(
                "HTTP requests, 95th percentile",
                (
                    "histogram_quantile(0.95, sum by (service, route, le) "
                    "(rate(onestop_http_request_seconds_bucket[$__rate_interval])))",
                ),
                "{{service}} {{route}}",
                "s",
            ),
            Panel(
                "HTTP 5xx answers",
                (
                    "sum by (service, route) "
                    '(rate(onestop_http_request_seconds_count{status=~"5.."}[$__rate_interval]))',
                ),
                "{{service}} {{route}}",
                "reqps",
            ),
            Panel(
                "Access log chain broken",
                ("max by (service) (onestop_access_log_chain_broken)",),
                "{{service}}",
                kind="stat",
                description="Alert AccessLogChainBroken: docs/operations.md#accesslogchainbroken.",
            ),
            Panel(
                "Alerts firing",
                ('count by (alertname, severity) (ALERTS{alertstate="firing"})',),
                "{{alertname}} ({{severity}})",
                kind="stat",
            ),
        ),
    ),
)


def _panel(panel: Panel, panel_id: int, x: int, y: int, width: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": PANEL_HEIGHT, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": panel.legend,
            }
            for index, expr in enumerate(panel.exprs)
        ],
    }


def _panels() -> list[dict[str, Any]]:
    """Each row's header, then its panels two or three to a line."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append(
            {"id": len(panels) + 1, "type": "row", "title": row.title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}}
        )  # fmt: skip
        y += 1
        across = 3 if len(row.panels) % 3 == 0 else 2
        width = WIDTH // across
        for index, panel in enumerate(row.panels):
            x = (index % across) * width
            panels.append(_panel(panel, len(panels) + 1, x, y, width))
            if index % across == across - 1 or index == len(row.panels) - 1:
                y += PANEL_HEIGHT
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": UID,
        "title": "onestop: referrals, agencies, pipeline, services",
        "description": "Generated by `uv run python -m devstack grafana` (deploy/devstack/src/devstack/grafana.py).",
        "tags": ["onestop"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [],
        "annotations": {"list": []},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                {
                    "name": "agency",
                    "label": "Agency",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(onestop_circuit_open, agency_id)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": _panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def write(repo: Path) -> bool:
    """Write the dashboard; whether it changed."""
    path = repo / DASHBOARD_PATH
    text = render()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True

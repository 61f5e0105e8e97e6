"""A real Prometheus on the running stack, with deploy/prometheus's configuration and alert rules: it scrapes every
service, and an agency that keeps failing fires AgencyCircuitOpen, which resolves once the agency answers again; the
console's operations page draws its charts over time from it.

For the test only: scrapes and evaluations every second and every rule's `for:` set to 0, written to copies of the
real files (the rules are otherwise the very ones `./dev up` loads); the gateway opens an agency's circuit after 3
failures and probes after 1 s.
"""

import json
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from console.session import SESSION_COOKIE
from devstack import grafana
from devstack.paths import repo_root
from devstack.ports import free_ports
from devstack.prometheus import PrometheusServer, prometheus_dir
from devstack.stack import Stack

from tests.e2e.helpers import StackAuth, eventually, restart
from tests.samples import sample_case_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

AGENCY = "police"  # the catalogue's agency for `safety`
GATEWAY_TUNING = {
    "BREAKER_THRESHOLD": "3",
    "BREAKER_OPEN_SECONDS": "1",
    "RETRY_BASE_SECONDS": "0.2",
    "RETRY_MAX_SECONDS": "0.5",
    "DELIVERY_ATTEMPTS": "1000",  # the referral keeps probing the agency rather than going to the DLQ
}


def fast_copies(folder: Path) -> tuple[Path, Path]:
    """prometheus.yml scraping and evaluating every second, and rules.yml with every `for:` at 0."""
    config = yaml.safe_load((prometheus_dir() / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    rules = yaml.safe_load((prometheus_dir() / "rules.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    paths = folder / "prometheus.yml", folder / "rules.yml"
    paths[0].write_text(yaml.safe_dump(config), encoding="utf-8")
    paths[1].write_text(yaml.safe_dump(rules), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[PrometheusServer]:
    """The gateway tuned to open circuits fast, a Prometheus of the test's own scraping the stack, and the console
    drawing its operator's charts from that Prometheus."""
    original = dict(stack.processes["agency-gateway"].env)
    original.pop("HTTP_PORT", None)
    console = dict(stack.processes["console"].env)
    console.pop("HTTP_PORT", None)
    work = Path(tempfile.mkdtemp(prefix="onestop-prometheus-"))
    config, rules = fast_copies(work)
    [port] = free_ports(1)
    server = PrometheusServer(work, port, stack.metrics_targets(), config=config, rules=rules)
    restart(stack, ("agency-gateway",), {**original, **GATEWAY_TUNING})
    restart(stack, ("console",), {**console, "CONSOLE_PROMETHEUS_URL": server.url})
    try:
        server.start()
        server.wait_ready(60)
        yield server
    finally:
        server.stop()
        restart(stack, ("agency-gateway",), original)
        restart(stack, ("console",), console)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0, auth=StackAuth(stack)) as c:
        yield c


async def api(client: httpx.AsyncClient, prometheus: PrometheusServer, path: str) -> Any:
    answer = await client.get(f"{prometheus.url}/api/v1/{path}")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


async def test_prometheus_scrapes_every_service_of_the_stack(
    prometheus: PrometheusServer, stack: Stack, client: httpx.AsyncClient
) -> None:
    async def all_up() -> dict[str, str] | None:
        targets = (await api(client, prometheus, "targets"))["activeTargets"]
        health = {t["labels"]["service"]: t["health"] for t in targets}
        return health if set(health) == set(stack.metrics_targets()) and set(health.values()) == {"up"} else None

    await eventually(all_up, 30, "every service's /metrics scraped (health up)")
    groups = (await api(client, prometheus, "rules"))["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"AgencyCircuitOpen", "ServiceDown", "AccessLogChainBroken"} <= loaded


async def test_the_grafana_dashboards_queries_run_on_the_stacks_prometheus(
    prometheus: PrometheusServer, client: httpx.AsyncClient
) -> None:
    """deploy/grafana/onestop.json's queries, as Grafana would send them (its variables substituted)."""
    dashboard = json.loads((repo_root() / grafana.DASHBOARD_PATH).read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    for expr in exprs:
        query = expr.replace("$__rate_interval", "1m").replace("$agency", ".*")
        answer = await client.get(f"{prometheus.url}/api/v1/query", params={"query": query})
        assert answer.status_code == 200 and answer.json()["status"] == "success", (expr, answer.text)
    up = await client.get(f"{prometheus.url}/api/v1/query", params={"query": 'up{job="onestop"}'})
    assert up.json()["data"]["result"], "the dashboard's Up panel would be empty"


async def test_an_agency_failing_fires_its_circuit_alert_which_resolves_when_it_answers_again(
    prometheus: PrometheusServer, stack: Stack, client: httpx.AsyncClient
) -> None:
    async def circuit_alert() -> list[dict[str, Any]]:
        alerts = (await api(client, prometheus, "alerts"))["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == "AgencyCircuitOpen" and a["labels"]["agency_id"] == AGENCY
        ]

    assert await circuit_alert() == []
    simulator = stack.url("agency-simulator")
    answer = await client.put(f"{simulator}/behaviour/{AGENCY}", json={"action": "fail", "status": 503, "times": None})
    assert answer.status_code == 200, answer.text
    try:
        case = sample_case_json(
            needs=["safety"], consents=[{"agency_id": AGENCY, "granted": True, "sensitive_granted": False}]
        )
        submitted = await client.post(f"{stack.url('intake')}/cases", json=case)
        assert submitted.status_code == 201, submitted.text

        async def firing() -> list[dict[str, Any]]:
            return [a for a in await circuit_alert() if a["state"] == "firing"]

        [alert] = await eventually(firing, 45, f"AgencyCircuitOpen firing for {AGENCY}")
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"] == "docs/operations.md#agencycircuitopen"
    finally:
        # The agency answers again: the referral's next probe gets through and closes the circuit.
        await client.delete(f"{simulator}/behaviour/{AGENCY}")

    async def resolved() -> bool:
        return await circuit_alert() == []

    await eventually(resolved, 45, f"AgencyCircuitOpen for {AGENCY} resolved")


async def test_the_consoles_operations_page_charts_what_prometheus_kept(
    prometheus: PrometheusServer, stack: Stack
) -> None:
    """The supervisor's operations page, as the browser gets it: per agency a line of deliveries over the window
    (the police delivered in the test above), per consumer group a line of its lag — Prometheus's series, drawn."""
    session = {"cookie": f"{SESSION_COOKIE}={stack.token('supervisor')}; console_lang=en"}

    async def charted() -> str | None:
        async with httpx.AsyncClient(timeout=15.0) as browser:
            page = (await browser.get(f"{stack.url('console')}/operations?window=15m", headers=session)).text
        police = re.search(rf'<tr data-agency="{AGENCY}">.*?</tr>', page, re.S)
        lag = re.search(r'<tr data-group="agency-gateway[^"]*">.*?</tr>', page, re.S)
        drawn = police and lag and '<polyline class="delivered"' in police[0] and "<polyline" in lag[0]
        # A line, not a dot: the window holds two of its points (15 s apart) once Prometheus has scraped that long.
        points = [int(n) for n in re.findall(r'data-points="(\d+)"', police[0])] if police else []
        return page if drawn and max(points, default=0) >= 2 else None

    page = await eventually(charted, 150, "the operations page's charts drawn from Prometheus's series")
    assert "No history" not in page

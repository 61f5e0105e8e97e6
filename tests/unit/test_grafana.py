"""deploy/grafana/onestop.json: what `python -m devstack grafana` writes, valid JSON laid out on Grafana's grid, and
every panel's query is PromQL that promtool parses and reads only metrics the services (or Prometheus) expose.

Grafana cannot run here: what is not checked is how Grafana renders it.
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml
from devstack import grafana
from devstack.paths import repo_root

from tests.unit.test_prometheus import METRIC_NAME, exposed_metric_names, promtool

DASHBOARD = repo_root() / grafana.DASHBOARD_PATH
# Grafana's own variables, as Grafana substitutes them, so that promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$agency": ".*"}
PROMETHEUS_OWN = {"up", "ALERTS"}


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"] if p["type"] != "row"]


def test_the_committed_dashboard_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == grafana.render(), "regenerate: uv run python -m devstack grafana"


def test_the_panels_sit_on_the_grid_without_overlapping() -> None:
    every = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    assert len({p["id"] for p in every}) == len(every)
    taken: set[tuple[int, int]] = set()
    for p in every:
        box = p["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= grafana.WIDTH, p["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_every_query_is_promql_that_promtool_parses(tmp_path: Path) -> None:
    rules = []
    for index, panel in enumerate(panels()):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable promtool would not parse: {expr}"
            rules.append({"record": f"grafana:panel_{index}:{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", path)


def test_every_query_reads_metrics_that_exist() -> None:
    exposed = exposed_metric_names() | PROMETHEUS_OWN
    for panel in panels():
        for target in panel["targets"]:
            names = set(METRIC_NAME.findall(target["expr"])) | set(re.findall(r"\b(up|ALERTS)\{", target["expr"]))
            assert names, f"{panel['title']} reads no metric"
            assert names <= exposed, f"{panel['title']}: {sorted(names - exposed)}"
    variables = json.loads(DASHBOARD.read_text(encoding="utf-8"))["templating"]["list"]
    [agency] = [v for v in variables if v["name"] == "agency"]
    assert set(METRIC_NAME.findall(agency["query"])) <= exposed

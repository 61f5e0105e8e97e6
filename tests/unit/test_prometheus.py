"""deploy/prometheus: the configuration and the alert rules pass promtool's checks, every alert has unit tests (firing
and not) that pass, a runbook in docs/operations.md, and reads only metrics the services expose; compose's targets and
the dev stack's are the same services.

promtool comes from Debian's `prometheus` package, which `./dev install` (run by `./dev test`) installs when missing.
"""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from devstack.prometheus import find_prometheus, prometheus_dir, target_groups
from devstack.stack import SERVICES
from kit.metrics import REGISTRY

from tests.unit.test_docs_links import anchors

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = prometheus_dir()
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC_NAME = re.compile(r"\b(onestop_[a-z_]+)\b")


def promtool(*args: str | Path) -> str:
    found = find_prometheus()
    assert found is not None, "promtool is missing: `./dev install` installs Debian's prometheus package"
    done = subprocess.run([found.promtool, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_configuration_and_its_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert f"SUCCESS: {len(alerts())} rules found" in promtool("check", "rules", RULES)


def test_every_alert_unit_test_passes() -> None:
    assert RULE_TESTS, "no unit tests of the alerts in deploy/prometheus/tests"
    assert "FAILED" not in promtool("test", "rules", *RULE_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never seen firing in deploy/prometheus/tests"
    assert names - quiet == set(), "alerts never seen quiet in deploy/prometheus/tests"


def test_every_alert_links_its_runbook_in_the_operations_doc() -> None:
    headings = anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in alerts():
        link = rule["annotations"]["runbook_url"]
        assert link == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert link.split("#")[1] in headings, f"{rule['alert']}: no runbook heading {link} in docs/operations.md"
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


def exposed_metric_names() -> set[str]:
    """Every series name the kit's metrics (and so every service's /metrics) can expose."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ())
        names |= {family.name, *(family.name + suffix for suffix in suffixes)}
    return names


def test_the_alerts_read_only_metrics_the_services_expose() -> None:
    used = {name for rule in alerts() for name in METRIC_NAME.findall(rule["expr"])}
    assert used, "the rules read none of the services' metrics"
    assert used - exposed_metric_names() == set()


def test_compose_scrapes_the_same_services_as_the_dev_stack() -> None:
    compose = json.loads((PROMETHEUS / "targets" / "compose.json").read_text(encoding="utf-8"))
    expected = target_groups({spec.name: f"{spec.name}:{spec.port}" for spec in SERVICES if spec.metrics})
    assert compose == expected
    assert "agency-simulator" not in json.dumps(compose), "the simulator serves no /metrics"


def test_the_configuration_reads_its_targets_and_rules_beside_it() -> None:
    """compose mounts the folder; the dev stack copies the file and rules.yml and writes targets/devstack.json."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["rules.yml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "onestop", "the alerts select job=onestop"
    assert job["file_sd_configs"] == [{"files": ["targets/*.json"]}]

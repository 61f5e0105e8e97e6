"""deploy/kubernetes: the generated manifests match the generator, both overlays render with `kubectl kustomize` and
every object passes kubeconform in strict mode against Kubernetes' schemas and the operators' CRD schemas (vendored
in deploy/kubernetes/schemas), and what the manifests say agrees with the services' code. No cluster is needed."""

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agency_gateway.main import create_app as gateway_app
from agency_gateway.settings import GatewaySettings
from console.main import create_app as console_app
from console.settings import ConsoleSettings
from devstack import kubernetes as k8s
from devstack.kafka_security import access_rules, catalogue_agencies
from devstack.kubernetes_kafka import PARTITIONS, consumer_groups
from fastapi.testclient import TestClient
from intake.settings import IntakeSettings
from notify.main import create_app as notify_app
from notify.settings import NotifySettings
from routing.main import create_app as routing_app
from routing.settings import RoutingSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = K8S / "schemas"
CATALOGUE = ROOT / "catalogue" / "agencies"
OVERLAYS = ("dev", "production")
KUBECONFORM_VERSION = "v0.8.0"
Manifest = dict[str, Any]


# ---------------------------------------------------------------------------------------------- tools


def kubeconform() -> str:
    """The binary `./dev install` puts in .state/tools (from the Go module proxy), or one already on the machine."""
    candidates = [os.environ.get("KUBECONFORM", ""), str(ROOT / ".state" / "tools" / "kubeconform")]
    candidates += [shutil.which("kubeconform") or "", str(Path.home() / "go" / "bin" / "kubeconform")]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    assert found, (
        f"kubeconform {KUBECONFORM_VERSION} is missing: `./dev install` fetches it "
        f"(GOBIN=$PWD/.state/tools go install github.com/yannh/kubeconform/cmd/kubeconform@{KUBECONFORM_VERSION})"
    )
    return found


def render(overlay: str) -> str:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def objects(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def kubernetes_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored schemas of Kubernetes' own kinds, with their `$ref`s pointed at this copy's definitions (as
    deploy/kubernetes/schemas/README.md says)."""
    copy = tmp_path_factory.mktemp("kubernetes-schemas")
    for path in (SCHEMAS / "kubernetes" / "v1.32.0-local-strict").glob("*.json"):
        text = path.read_text(encoding="utf-8").replace('"/api/_definitions.json', f'"file://{copy}/_definitions.json')
        (copy / path.name).write_text(text, encoding="utf-8")
    return copy


def validate(text: str, kubernetes_schemas: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """kubeconform in strict mode; without -ignore-missing-schemas, so a kind with no schema is an error."""
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text, encoding="utf-8")
    return subprocess.run(
        [
            kubeconform(),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-schema-location",
            str(SCHEMAS / "crds" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
            "-schema-location",
            f"{kubernetes_schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Manifest], kind: str, name: str) -> Manifest:
    return next(doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name)


# ---------------------------------------------------------------------------------------------- generated files


def test_the_committed_manifests_are_what_the_generator_writes() -> None:
    assert k8s.drift(ROOT) == [], "regenerate: uv run python -m devstack kubernetes"


def fake_repo(tmp_path: Path, extra: dict[str, str] | None = None, rules: str | None = None) -> Path:
    """A repository with the real catalogue (plus `extra` agency files) and, if given, a Prometheus rules file."""
    shutil.copytree(CATALOGUE, tmp_path / "catalogue" / "agencies")
    for name, text in (extra or {}).items():
        (tmp_path / "catalogue" / "agencies" / f"{name}.toml").write_text(text, encoding="utf-8")
    if rules is not None:
        (tmp_path / "deploy" / "prometheus").mkdir(parents=True)
        (tmp_path / "deploy" / "prometheus" / "rules.yml").write_text(rules, encoding="utf-8")
    return tmp_path


def generated(repo: Path, file: str) -> list[Manifest]:
    texts = {path.name: text for path, text in k8s.generated_files(repo).items()}
    return objects(texts[file])


def kafka_native_agency(agency_id: str) -> str:
    police = (CATALOGUE / "police.toml").read_text(encoding="utf-8")
    head, _, rest = police.partition("[channel]")
    _, _, tail = rest.partition("\n[consent_notice]")
    return head.replace('id = "police"', f'id = "{agency_id}"') + '[channel]\ntype = "kafka"\n\n[consent_notice]' + tail


def test_adding_an_agency_file_adds_its_topics_and_its_user(tmp_path: Path) -> None:
    before = fake_repo(tmp_path / "before")
    after = fake_repo(tmp_path / "after", {"test-kafka-native": kafka_native_agency("test-kafka-native")})
    assert "test-kafka-native" in catalogue_agencies(after / "catalogue" / "agencies")[1]

    def topics(repo: Path) -> set[str]:
        return {doc["spec"]["topicName"] for doc in generated(repo, "kafka-topics.yaml")}

    assert topics(after) - topics(before) == {
        "referrals.test-kafka-native",
        "referrals.test-kafka-native.dlq",
        "referrals.test-kafka-native.retry",
        "referrals.test-kafka-native.retry.dlq",
        "acks.test-kafka-native",
        "acks.test-kafka-native.dlq",
    }
    users = {doc["metadata"]["name"]: doc for doc in generated(after, "kafka-users.yaml")}
    assert set(users) - {doc["metadata"]["name"] for doc in generated(before, "kafka-users.yaml")} == {
        "agency-test-kafka-native"
    }
    acls = users["agency-test-kafka-native"]["spec"]["authorization"]["acls"]
    assert {(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]) for a in acls} == {
        ("topic", "referrals.test-kafka-native", "literal"),
        ("topic", "acks.test-kafka-native", "literal"),
        ("group", "agency.test-kafka-native.", "prefix"),
    }
    gateway = {a["resource"]["name"]: a["operations"] for a in users["agency-gateway"]["spec"]["authorization"]["acls"]}
    assert "Read" in gateway["referrals.test-kafka-native"]


def test_every_user_has_exactly_the_access_rules(tmp_path: Path) -> None:
    """The KafkaUsers say what devstack.kafka_security.access_rules says, rule for rule (the secured local broker and
    the secure compose profile apply the same rules)."""
    repo = fake_repo(tmp_path, {"test-kafka-native": kafka_native_agency("test-kafka-native")})
    agencies, native = catalogue_agencies(repo / "catalogue" / "agencies")
    expected = {
        (r.principal, r.resource.name.lower(), r.name, r.pattern.name, r.operation.name.capitalize())
        for r in access_rules(agencies, native)
    }
    granted = {
        (
            user["metadata"]["name"],
            acl["resource"]["type"],
            acl["resource"]["name"],
            "PREFIXED" if acl["resource"]["patternType"] == "prefix" else "LITERAL",
            operation,
        )
        for user in generated(repo, "kafka-users.yaml")
        for acl in user["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
    }
    assert granted == expected
    assert all(u["spec"]["authentication"]["type"] == "scram-sha-512" for u in generated(repo, "kafka-users.yaml"))


def test_the_alert_rules_become_a_prometheus_rule(tmp_path: Path) -> None:
    rules = (
        "groups:\n  - name: onestop\n    rules:\n      - alert: ServiceDown\n        expr: up == 0\n        for: 1m\n"
    )
    assert "prometheus-rule.yaml" not in {p.name for p in k8s.generated_files(fake_repo(tmp_path / "without"))}
    [rule] = generated(fake_repo(tmp_path / "with", rules=rules), "prometheus-rule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(rules)["groups"]
    listed = objects(
        dict((p.name, t) for p, t in k8s.generated_files(tmp_path / "with").items())["kustomization.yaml"]
    )[0]["resources"]
    assert "prometheus-rule.yaml" in listed


def test_a_stale_generated_file_is_drift(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path)
    k8s.write(repo)
    assert k8s.drift(repo) == []
    stale = repo / "deploy" / "kubernetes" / "base" / "generated" / "prometheus-rule.yaml"
    stale.write_text("# left over\n", encoding="utf-8")
    assert k8s.drift(repo) == [stale.relative_to(repo)]
    k8s.write(repo)
    assert not stale.exists()


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_every_object_is_valid_in_strict_mode(
    overlay: str, rendered: dict[str, str], kubernetes_schemas: Path, tmp_path: Path
) -> None:
    result = validate(rendered[overlay], kubernetes_schemas, tmp_path)
    count = len(objects(rendered[overlay]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} resources found in 1 file - Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


BROKEN = (  # one object of each kind broken, and what kubeconform must say of it
    ("Deployment", lambda d: d["spec"].update(replica=2), "additional properties 'replica' not allowed"),
    ("KafkaTopic", lambda d: d["spec"].update(partitions="6"), "got string, want integer"),
    ("ScaledObject", lambda d: d["spec"].update(maxReplicas=6), "additional properties 'maxReplicas' not allowed"),
    ("Cluster", lambda d: d["spec"].update(instance=3), "additional properties 'instance' not allowed"),
)


def test_the_validation_rejects_broken_objects(
    rendered: dict[str, str], kubernetes_schemas: Path, tmp_path: Path
) -> None:
    docs = objects(rendered["production"])
    for kind, corrupt, _ in BROKEN:
        corrupt(of_kind(docs, kind)[0])
    result = validate(yaml.safe_dump_all(docs), kubernetes_schemas, tmp_path)
    assert result.returncode != 0
    assert f"Invalid: {len(BROKEN)}, Errors: 0" in result.stdout, result.stdout
    for kind, _, message in BROKEN:
        assert any(kind in line and message in line for line in result.stdout.splitlines()), (kind, result.stdout)


def test_the_vendored_schemas_are_the_recorded_files() -> None:
    sums = (SCHEMAS / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    recorded = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums if line.strip()}
    present = {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert set(recorded) == present
    for name, digest in recorded.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, name


# ---------------------------------------------------------------------------------------------- what they say


def test_production_replicates_kafka_and_postgresql(rendered: dict[str, str]) -> None:
    docs = objects(rendered["production"])
    assert named(docs, "KafkaNodePool", "dual-role")["spec"]["replicas"] == 3
    config = named(docs, "Kafka", "onestop")["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert {t["spec"]["replicas"] for t in of_kind(docs, "KafkaTopic")} == {3}
    cluster = named(docs, "Cluster", "onestop-db")["spec"]
    assert cluster["instances"] == 3
    store = cluster["backup"]["barmanObjectStore"]
    assert store["s3Credentials"]["accessKeyId"]["name"] == "onestop-db-backup"  # by reference
    assert named(docs, "ScheduledBackup", "onestop-db-nightly")["spec"]["cluster"]["name"] == "onestop-db"
    assert {d["spec"]["replicas"] for d in of_kind(docs, "Deployment")} == {2}
    assert not of_kind(docs, "Secret"), "secrets are made by the operator of the deployment, never in manifests"
    dev = objects(rendered["dev"])
    assert {t["spec"]["replicas"] for t in of_kind(dev, "KafkaTopic")} == {1}
    assert named(dev, "Deployment", "agency-simulator") and not [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "agency-simulator"
    ]


SECRET_VARIABLES = ("AUTH_SECRET", "ACCESS_LOG_KEY", "CASE_KEYS", "KAFKA_SASL_PASSWORD", "DB_PASSWORD", "WEBHOOK_")


def containers(deployment: Manifest) -> Iterator[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def test_secrets_only_by_reference_and_each_service_has_its_own(rendered: dict[str, str]) -> None:
    docs = objects(rendered["dev"])
    webhook = k8s.webhook_secret_names(CATALOGUE)
    for deployment in of_kind(docs, "Deployment"):
        for container in containers(deployment):
            for variable in container.get("env", []):
                if variable["name"].startswith(SECRET_VARIABLES):
                    assert "value" not in variable and "secretKeyRef" in variable["valueFrom"], variable
        env = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        name = deployment["metadata"]["name"]
        assert set(webhook) <= set(env) or name not in ("agency-gateway", "agency-simulator")
        if "KAFKA_SASL_PASSWORD" in env:
            assert env["KAFKA_SASL_USERNAME"]["value"] == name
            assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == name  # the KafkaUser's
    assert "CASE_KEYS" in {
        v["name"] for v in named(docs, "Deployment", "intake")["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_migrations_first_readiness_on_health_and_liveness_never_on_dependencies(rendered: dict[str, str]) -> None:
    for deployment in of_kind(objects(rendered["dev"]), "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        workload = next(w for w in (*k8s.WORKLOADS, k8s.SIMULATOR) if w.name == deployment["metadata"]["name"])
        [container] = spec["containers"]
        assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["cpu"] == "1"
        probes = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
        if workload.probe_path is not None:  # the console: its /health asks the services it calls
            assert probes == {workload.probe_path} and not spec["initContainers"]
            continue
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"  # 200 ok/impaired, 503 degraded
        if workload.db_role is not None:
            assert [c["command"] for c in spec["initContainers"]] == [["python", "-m", workload.module, "migrate"]]
            assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"  # answers from memory
            assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] > 120


def test_scaling_is_bounded_by_the_partitions(rendered: dict[str, str]) -> None:
    docs = objects(rendered["production"])
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    scaled = {s["metadata"]["name"]: s for s in of_kind(docs, "ScaledObject")}
    assert set(scaled) == {"routing", "agency-gateway", "notify"}
    for name, scaled_object in scaled.items():
        for trigger in scaled_object["spec"]["triggers"]:
            metadata = trigger["metadata"]
            assert trigger["type"] == "kafka" and metadata["consumerGroup"].startswith(f"{name}.")
            if "topic" in metadata:
                assert scaled_object["spec"]["maxReplicaCount"] <= partitions[metadata["topic"]]
        assert scaled_object["spec"]["maxReplicaCount"] <= PARTITIONS
    hpas = {h["metadata"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"intake", "console"}  # HTTP only: no lag to scale on
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name and hpa["spec"]["maxReplicas"] <= PARTITIONS


def test_network_policies_allow_only_the_architecture_s_flows(rendered: dict[str, str]) -> None:
    docs = objects(rendered["dev"])

    def peers(policy: Manifest, direction: str) -> set[str]:
        return {
            peer["podSelector"]["matchLabels"].get("app.kubernetes.io/name", "")
            for rule in policy["spec"][direction]
            for peer in rule.get("from" if direction == "ingress" else "to", [])
            if "podSelector" in peer and "namespaceSelector" not in peer
        } - {""}

    policy = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    assert peers(policy["intake"], "ingress") == {"agency-gateway", "notify", "console"}
    assert peers(policy["routing"], "ingress") == {"intake", "console"}
    assert peers(policy["agency-gateway"], "ingress") == {"console"}
    assert peers(policy["notify"], "ingress") == {"agency-simulator", "console"}
    assert peers(policy["console"], "ingress") == set()  # staff and agencies come through the front door
    assert peers(policy["agency-gateway"], "egress") == {"intake", "agency-simulator"}
    assert peers(policy["console"], "egress") == {"intake", "routing", "agency-gateway", "notify"}
    assert peers(policy["routing"], "egress") == set()
    assert all(p["spec"]["policyTypes"] == ["Ingress", "Egress"] for p in policy.values())


# ---------------------------------------------------------------------------------------------- the console

CONSOLE_CALLS = {"intake": 8001, "routing": 8002, "agency-gateway": 8003, "notify": 8004}  # the services it reads
PROMETHEUS_API = "http://prometheus-operated.monitoring.svc:9090"  # the Prometheus Operator's Service
CONSOLE = next(w for w in k8s.WORKLOADS if w.name == "console")


def test_the_console_has_no_database_kafka_or_development_sign_in(
    rendered: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its Deployment gives it the four services' URLs, Prometheus's API and AUTH_SECRET, nothing of PostgreSQL or
    Kafka (it has no role and no KafkaUser: a reference to their Secrets would keep the pod from starting), and never
    the development sign-in; the console's own settings read them as meant (HTTP_HOST=0.0.0.0 is the image's,
    tests/unit/test_compose.py)."""
    docs = objects(rendered["production"])
    spec = named(docs, "Deployment", "console")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert not spec["initContainers"] and container["command"] == ["python", "-m", "console"]
    env = {v["name"]: v for v in container["env"]}
    assert not [n for n in env if n.startswith(("DB_", "DATABASE_", "KAFKA_", "ACCESS_LOG_", "CASE_KEYS", "WEBHOOK"))]
    assert env["AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "onestop-auth", "key": "AUTH_SECRET"}
    settings_map = named(docs, "ConfigMap", "onestop-settings")["data"]
    assert "CONSOLE_DEV_SIGN_IN" not in env and "CONSOLE_DEV_SIGN_IN" not in settings_map

    for variable in ("CONSOLE_DEV_SIGN_IN", "CONSOLE_SECURE_COOKIES", "CONSOLE_TRACE_URL", "HTTP_HOST"):
        monkeypatch.delenv(variable, raising=False)
    for name, value in {**settings_map, **{n: v["value"] for n, v in env.items() if "value" in v}}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTH_SECRET", "k" * 64)
    settings = ConsoleSettings()
    assert settings.service_urls() == {name: f"http://{name}:{port}" for name, port in CONSOLE_CALLS.items()}
    assert settings.console_prometheus_url == env["CONSOLE_PROMETHEUS_URL"]["value"] == PROMETHEUS_API
    assert settings.http_port == container["ports"][0]["containerPort"] == 8005
    assert not settings.console_dev_sign_in and settings.console_secure_cookies  # behind the ingress's TLS


def test_the_console_reaches_the_four_services_and_prometheus_and_they_admit_it(rendered: dict[str, str]) -> None:
    policy = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects(rendered["production"]), "NetworkPolicy")}

    def allows(rules: list[Manifest], direction: str, peer: Manifest, port: int) -> bool:
        return any(peer in rule[direction] and {"protocol": "TCP", "port": port} in rule["ports"] for rule in rules)

    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    front_door = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    console = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "console"}}}
    for name, port in CONSOLE_CALLS.items():
        service = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}
        assert allows(policy["console"]["egress"], "to", service, port), name
        assert allows(policy[name]["ingress"], "from", console, port), name
    assert allows(policy["console"]["egress"], "to", monitoring, 9090)  # the charts: Prometheus's API
    assert not [r for r in policy["console"]["egress"] if "cnpg.io" in str(r) or "strimzi.io" in str(r)]
    assert allows(policy["console"]["ingress"], "from", front_door, 8005)
    assert not allows(policy["console"]["ingress"], "from", monitoring, 8005)  # nothing to scrape


def test_the_console_scales_on_cpu_has_no_service_monitor_and_its_image_is_the_registry_s(
    rendered: dict[str, str],
) -> None:
    docs = objects(rendered["production"])
    hpa = named(docs, "HorizontalPodAutoscaler", "console")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "console"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and hpa["minReplicas"] == 2
    assert "console" not in {o["metadata"]["name"] for o in of_kind(docs, "ScaledObject")}
    assert {m["metadata"]["name"] for m in of_kind(docs, "ServiceMonitor")} == {
        "intake",
        "routing",
        "agency-gateway",
        "notify",
    }
    # Every image is the overlay's registry's: an `onestop-<service>` left as it is would be pulled from Docker Hub.
    images = {c["image"] for d in of_kind(docs, "Deployment") for c in containers(d)}
    assert "registry.example.org/onestop/console:0.1.0" in images
    assert all(image.startswith("registry.example.org/onestop/") for image in images), images


# ---------------------------------------------------------------------------------------------- against the code


def test_the_consumer_groups_are_the_services_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENCY_SIMULATOR_URL", "http://agency-simulator:8090")
    for name in k8s.webhook_secret_names(CATALOGUE):
        monkeypatch.setenv(name, "test-only-webhook-secret")
    apps = {
        "routing": routing_app(RoutingSettings(catalogue_dir=CATALOGUE)),
        "agency-gateway": gateway_app(GatewaySettings(catalogue_dir=CATALOGUE)),
        "notify": notify_app(NotifySettings(catalogue_dir=CATALOGUE)),
    }
    for service, app in apps.items():
        subscribed: dict[str, set[str]] = {}
        for group, topic, _ in app.state.runtime._consumers:
            subscribed.setdefault(group, set()).add(topic)
        declared = {g.group: g.topic for g in consumer_groups(service)}
        assert set(declared) == set(subscribed), service
        for group, topic in declared.items():
            assert topic is None or subscribed[group] == {topic}, group


def test_each_database_role_is_the_service_s_schema() -> None:
    defaults = {
        "intake": IntakeSettings.model_fields["db_schema"].default,
        "routing": RoutingSettings.model_fields["db_schema"].default,
        "agency-gateway": GatewaySettings.model_fields["db_schema"].default,
        "notify": NotifySettings.model_fields["db_schema"].default,
    }
    assert {w.name: w.db_role for w in k8s.WORKLOADS if w.db_role is not None} == defaults
    assert {w.name for w in k8s.WORKLOADS if w.db_role is None} == {"console"}
    sql = k8s.database_roles()["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    for role in defaults.values():
        assert f"CREATE SCHEMA {role} AUTHORIZATION {role}" in sql


def test_the_console_answers_its_probe_path_without_the_services_and_serves_no_metrics() -> None:
    """Its probes ask a path that calls nothing (its /health asks each service it calls in turn); it has no /metrics
    for a ServiceMonitor to scrape."""
    away = "http://127.0.0.1:9"  # nothing listens: every service it calls is down
    settings = ConsoleSettings(
        auth_secret="k" * 64, intake_url=away, routing_url=away, agency_gateway_url=away, notify_url=away
    )
    assert CONSOLE.probe_path is not None
    with TestClient(console_app(settings)) as client:
        assert client.get(CONSOLE.probe_path).status_code == 200
        assert client.get("/metrics").status_code == 404
        health = client.get("/health").json()
    assert {d["name"] for d in health["dependencies"]} == set(CONSOLE.calls) == set(CONSOLE_CALLS)
    assert not CONSOLE.spec.metrics

"""docker-compose.yml and the images' Dockerfiles: valid Compose, and the topology the services rely on.

The file is validated against the Compose Specification JSON schema that `docker compose` itself uses (the copy
embedded in github.com/compose-spec/compose-go/v2), vendored at deploy/docker/compose-spec.json with its provenance
in deploy/docker/compose-spec.source; deploy/docker/refresh-compose-spec.sh refreshes both. Neither Docker nor the
network is needed.
"""

import copy
import hashlib
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_DIR = ROOT / "deploy" / "docker"
SCHEMA_FILE = DOCKER_DIR / "compose-spec.json"
SCHEMA_SOURCE = DOCKER_DIR / "compose-spec.source"
HEALTHCHECK_SCRIPT = DOCKER_DIR / "healthcheck.py"
DOCKERFILE = DOCKER_DIR / "Dockerfile"  # the one image recipe of every Python service


@dataclass(frozen=True)
class App:
    """One of our images as compose runs it."""

    name: str  # compose service name
    module: str  # `python -m <module>`
    port: int  # HTTP_PORT
    package: str  # the workspace package its Dockerfile installs
    migrates: bool  # has a database, so a one-shot `<name>-migrate` step
    published: bool
    reads_catalogue: bool = False


APPS = (
    App("intake", "intake", 8001, "onestop-intake", migrates=True, published=True),
    App("routing", "routing", 8002, "onestop-routing", migrates=True, published=False, reads_catalogue=True),
    App(
        "agency-gateway",
        "agency_gateway",
        8003,
        "onestop-agency-gateway",
        migrates=True,
        published=False,
        reads_catalogue=True,
    ),
    App("notify", "notify", 8004, "onestop-notify", migrates=True, published=True),
    App("agency-simulator", "agency_simulator", 8090, "onestop-agency-simulator", migrates=False, published=True),
    App("console", "console", 8005, "onestop-console", migrates=False, published=True),
)
SERVICES = tuple(app for app in APPS if app.migrates)  # the four services proper: Kafka, PostgreSQL, migrations
# The Jaeger UI, and Prometheus (the UI and its API) where `./dev up` has it.
PUBLISHED_PORTS = {app.name: app.port for app in APPS if app.published} | {"jaeger": 16686, "prometheus": 9190}
CONTAINER_CATALOGUE_DIR = "/app/catalogue/agencies"


# ---------------------------------------------------------------------------------------------- loading


def load_compose(text: str | None = None) -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8") if text is None else text)
    assert isinstance(data, dict)
    return data


_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.DOTALL)


def interpolate(value: Any, env: dict[str, str], unset: set[str] | None = None) -> Any:
    """Compose's variable substitution (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`, ...).

    Names used without a default and not in `env` are added to `unset` (compose substitutes "" and warns).
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env, unset) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, unset) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            name, op, arg = match["named"], None, ""
        else:
            parsed = _BRACED.fullmatch(match["braced"])
            assert parsed, f"not a valid compose variable: {match[0]!r}"
            name, op, arg = parsed["name"], parsed["op"], parsed["arg"] or ""
        present = name in env
        if op in (":-", "-"):
            return env[name] if present and (env[name] or op == "-") else arg
        if op in (":?", "?"):
            assert present and (env[name] or op == "?"), f"{name} is required: {arg}"
            return env[name]
        if op in (":+", "+"):
            return arg if present and (env[name] or op == "+") else ""
        if not present and unset is not None:
            unset.add(name)
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def compose_schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)  # the schema declares draft 2020-12
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    return compose_schema_validator()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as `docker compose` sees it with no variables set: YAML merged, then interpolated."""
    unset: set[str] = set()
    data: dict[str, Any] = interpolate(load_compose(), {}, unset)
    assert not unset, f"variables without a default, so `docker compose up` needs them set: {sorted(unset)}"
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# ---------------------------------------------------------------------------------------------- workspace


def workspace_members() -> dict[str, Path]:
    """Package name -> member directory, from the root pyproject's `tool.uv.workspace.members` globs."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for directory in sorted(ROOT.glob(pattern)):
            if (directory / "pyproject.toml").is_file():
                project = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                members[project["name"]] = directory
    return members


def local_closure(package: str, members: dict[str, Path]) -> set[str]:
    """The package and every workspace member it depends on, transitively."""
    wanted, todo = set(), [package]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        project = tomllib.loads((members[name] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            dependency = re.match(r"[A-Za-z0-9._-]+", requirement)
            if dependency and dependency[0] in members:
                todo.append(dependency[0])
    return wanted


def module_owners(members: dict[str, Path]) -> dict[str, str]:
    """Runnable module (`src/<module>/__main__.py`) -> the workspace package holding it."""
    return {main.parent.name: name for name, path in members.items() for main in path.glob("src/*/__main__.py")}


# ---------------------------------------------------------------------------------------------- Dockerfiles


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not in exec (JSON) form"
        return [str(item) for item in value]


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, f"{path}: ends inside a continuation line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    froms = [index for index, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    assert froms, "no FROM"
    return instructions[froms[-1] :]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def flags_and_args(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(instruction.args)
    flags = dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))
    return flags, [word for word in words if not word.startswith("--")]


def dockerfile_of(service: dict[str, Any]) -> Path:
    build = service["build"]
    context = COMPOSE_FILE.parent / str(build["context"])
    return (context / str(build.get("dockerfile", "Dockerfile"))).resolve()


_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
SHARED_MEMBERS = {"onestop-schemas", "onestop-kit"}  # copied into every image; uv installs them only where needed


def substitute(text: str, scope: dict[str, str]) -> str:
    """`${NAME}` and `$NAME` replaced by their value where `scope` has one."""
    return _REFERENCE.sub(lambda m: scope.get(m[1] or m[2], m[0]), text)


def with_build_args(instructions: list[Instruction], build_args: dict[str, str]) -> list[Instruction]:
    """The instructions as the builder sees them: each stage's ARGs (a build argument over the default) and ENVs
    substituted where used. CMD, ENTRYPOINT and HEALTHCHECK keep theirs: those expand when the container runs."""
    resolved: list[Instruction] = []
    scope: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            scope = {}
        args = instruction.args
        if instruction.keyword not in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
            args = substitute(args, scope)
        if instruction.keyword == "ARG":
            name, has_default, default = args.partition("=")
            scope[name] = build_args.get(name, default if has_default else "")
        resolved.append(Instruction(instruction.keyword, args, instruction.line))
        if instruction.keyword == "ENV":
            scope.update(env_of([resolved[-1]]))
    return resolved


def image_instructions(service: dict[str, Any]) -> list[Instruction]:
    """A compose service's Dockerfile with its build arguments applied."""
    build_args = {key: str(value) for key, value in service["build"].get("args", {}).items()}
    return with_build_args(parse_dockerfile(dockerfile_of(service)), build_args)


def python_modules(argv: list[str]) -> Iterator[str]:
    for index, word in enumerate(argv[:-1]):
        if Path(word).name.startswith("python") and argv[index + 1] == "-m" and index + 2 < len(argv):
            yield argv[index + 2]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context (no `!` support)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for candidate in candidates:
            segments = candidate.split("/")
            tails = [candidate] if bare == pattern else ["/".join(segments[i:]) for i in range(len(segments))]
            if any(fnmatchcase(tail, bare) for tail in tails):
                return True
    return False


# ---------------------------------------------------------------------------------------------- the schema


def test_vendored_schema_is_the_recorded_upstream_file() -> None:
    source = dict(
        line.split("=", 1)
        for line in SCHEMA_SOURCE.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert source["module"] == "github.com/compose-spec/compose-go/v2"
    assert source["path"] == "schema/compose-spec.json"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", source["version"])
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == source["sha256"], (
        "compose-spec.json differs from the upstream file recorded in compose-spec.source; "
        "run deploy/docker/refresh-compose-spec.sh instead of editing it"
    )
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


def test_compose_file_is_valid_against_the_compose_specification(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    raw = load_compose()
    for document in (raw, compose, interpolate(raw, {"POSTGRES_PASSWORD": "s3cret", "LOG_LEVEL": "DEBUG"})):
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def _set(path: str, value: Any) -> Any:
    def corrupt(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return corrupt


@pytest.mark.parametrize(
    ("what", "corrupt", "where"),
    [
        ("unknown depends_on condition", _set("services.intake.depends_on.kafka.condition", "service_ready"), None),
        ("ports as a string", _set("services.intake.ports", "8001:8001"), "services.intake.ports"),
        ("misspelt service key", _set("services.routing.dependson", ["kafka"]), "services.routing"),
        ("misspelt top-level key", _set("service", {}), ""),
        ("environment as a number", _set("services.notify.environment", 8004), "services.notify.environment"),
        ("healthcheck retries as a list", _set("services.kafka.healthcheck.retries", [3]), None),
    ],
)
def test_the_validator_rejects_a_broken_copy(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any], what: str, corrupt: Any, where: str | None
) -> None:
    broken = copy.deepcopy(compose)
    corrupt(broken)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
    if where is not None:  # and the errors point at the broken spot, not somewhere else
        paths = {".".join(map(str, error.absolute_path)) for error in _all_errors(validator.iter_errors(broken))}
        assert any(path.startswith(where) for path in paths), (what, paths)


def _all_errors(errors: Iterator[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    for error in errors:
        yield error
        yield from _all_errors(iter(error.context))


def test_an_unquoted_restart_no_is_caught(validator: jsonschema.protocols.Validator) -> None:
    """YAML 1.1 reads `restart: no` as false, which Compose refuses; the file must quote it."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert 'restart: "no"' in text
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(interpolate(load_compose(text.replace('restart: "no"', "restart: no")), {}))


# ---------------------------------------------------------------------------------------------- topology


def test_every_piece_of_the_local_stack_is_there(compose: dict[str, Any]) -> None:
    expected = {"kafka", "postgres", "jaeger", "prometheus"} | {app.name for app in APPS}
    expected |= {f"{app.name}-migrate" for app in SERVICES}
    assert set(compose["services"]) == expected
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    local_kafka = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert local_kafka is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{local_kafka.group(1)}", "same Kafka as ./dev up"
    assert compose["services"]["postgres"]["image"] == "postgres:15"
    assert compose["services"]["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert compose["services"]["prometheus"]["image"].startswith("prom/prometheus:v2."), "2.x, as Debian's package"


def test_same_services_modules_and_ports_as_the_devstack(compose: dict[str, Any]) -> None:
    stack = pytest.importorskip("devstack.stack")
    for spec in stack.SERVICES:
        service = compose["services"][spec.name]
        assert list(python_modules(service["command"])) == [spec.module]
        assert environment(service)["HTTP_PORT"] == str(spec.port)
        assert (f"{spec.name}-migrate" in compose["services"]) == (spec.migrate_args is not None)
        if spec.url_env is not None:  # every service that the stack wires to this one finds it by name
            users = [s for s in compose["services"].values() if spec.url_env in environment(s)]
            assert users, f"nobody is given {spec.url_env}"
            assert {environment(s)[spec.url_env] for s in users} == {f"http://{spec.name}:{spec.port}"}


def check_service_waits_for_its_dependencies(compose: dict[str, Any], app: App) -> None:
    services = compose["services"]
    depends = services[app.name].get("depends_on", {})
    for target, condition in (
        ("kafka", "service_healthy"),
        ("postgres", "service_healthy"),
        (f"{app.name}-migrate", "service_completed_successfully"),
    ):
        assert depends.get(target, {}).get("condition") == condition, f"{app.name} must wait for {target}: {condition}"

    migrate = services[f"{app.name}-migrate"]
    assert migrate["command"] == ["python", "-m", app.module, "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["build"] == services[app.name]["build"], "the migrate step must run the service's own image"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert environment(migrate)["DATABASE_URL"] == environment(services[app.name])["DATABASE_URL"]


@pytest.mark.parametrize("app", SERVICES, ids=lambda app: app.name)
def test_a_service_waits_for_kafka_postgres_and_its_migrations(compose: dict[str, Any], app: App) -> None:
    check_service_waits_for_its_dependencies(compose, app)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda services: services["notify"]["depends_on"].pop("notify-migrate"),
        lambda services: services["notify"]["depends_on"]["kafka"].update(condition="service_started"),
        lambda services: services["notify-migrate"].update(restart="on-failure"),
        lambda services: services["notify-migrate"].update(command=["python", "-m", "notify", "serve"]),
    ],
    ids=["no-migrate-dependency", "kafka-only-started", "migrate-restarts", "migrate-serves"],
)
def test_the_dependency_check_catches_a_broken_copy(compose: dict[str, Any], corrupt: Any) -> None:
    broken = copy.deepcopy(compose)
    corrupt(broken["services"])
    with pytest.raises(AssertionError):
        check_service_waits_for_its_dependencies(broken, next(app for app in SERVICES if app.name == "notify"))


def test_depends_on_is_consistent_and_acyclic(compose: dict[str, Any]) -> None:
    services = compose["services"]
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        depends = (
            {target: {"condition": "service_started"} for target in depends} if isinstance(depends, list) else depends
        )
        graph[name] = set(depends)
        for target, how in depends.items():
            assert target in services, f"{name} depends on undefined service {target}"
            if how["condition"] == "service_healthy":
                has_check = "healthcheck" in services[target] or any(
                    i.keyword == "HEALTHCHECK" for i in final_stage(image_instructions(services[target]))
                )
                assert has_check, f"{name} waits for {target} to be healthy, but {target} has no health check"
            if how["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot step and must not restart"
    done: set[str] = set()
    while graph.keys() - done:
        ready = {name for name in graph.keys() - done if graph[name] <= done}
        assert ready, f"depends_on cycle among {sorted(graph.keys() - done)}"
        done |= ready


def test_every_service_is_given_its_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = environment(services["postgres"])
    kafka = environment(services["kafka"])
    for app in APPS:
        env = environment(services[app.name])
        assert env["HTTP_PORT"] == str(app.port)
        for key, value in env.items():
            if key.endswith("_URL") and key != "DATABASE_URL":  # another of our services, by its compose name
                url = urlsplit(value)
                assert url.hostname in services, f"{app.name}: {key}={value} names no service"
                if url.hostname == "prometheus":  # the console's charts: Prometheus's own listen address
                    assert f"--web.listen-address=:{url.port}" in services["prometheus"]["command"], key
                    continue
                assert str(url.port) == environment(services[url.hostname])["HTTP_PORT"], f"{app.name}: {key}"
        if not app.migrates:
            continue
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert kafka["KAFKA_ADVERTISED_LISTENERS"].split(",").count(f"PLAINTEXT://{env['KAFKA_BOOTSTRAP_SERVERS']}")
        database = urlsplit(env["DATABASE_URL"])
        assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == postgres["POSTGRES_PASSWORD"] == "onestop-dev"  # the dev-only default
        assert database.path == f"/{postgres['POSTGRES_DB']}"
        assert env["OTEL_SERVICE_NAME"] == app.name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert environment(services["intake"])["ROUTING_URL"] == "http://routing:8002"
    assert environment(services["agency-simulator"])["NOTIFY_URL"] == "http://notify:8004"
    assert environment(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"


def test_the_password_comes_from_one_variable(compose: dict[str, Any]) -> None:
    raw = load_compose()
    changed = interpolate(raw, {"POSTGRES_PASSWORD": "s3cret"})["services"]
    assert environment(changed["postgres"])["POSTGRES_PASSWORD"] == "s3cret"
    for app in SERVICES:
        for name in (app.name, f"{app.name}-migrate"):
            assert urlsplit(environment(changed[name])["DATABASE_URL"]).password == "s3cret"


@pytest.mark.parametrize("app", [app for app in APPS if app.reads_catalogue], ids=lambda app: app.name)
def test_catalogue_placeholders_are_set_in_the_container(compose: dict[str, Any], app: App) -> None:
    """schemas.catalogue refuses to start when a `${NAME}` in an agency file is not in the environment."""
    names = {
        name
        for path in (ROOT / "catalogue" / "agencies").glob("*.toml")
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text(encoding="utf-8"))
    }
    assert names, "the catalogue uses no placeholders any more: drop this test"
    image_env = env_of(final_stage(image_instructions(compose["services"][app.name])))
    missing = names - set(environment(compose["services"][app.name])) - set(image_env)
    assert not missing, f"{app.name} lacks {sorted(missing)}"
    assert image_env["CATALOGUE_DIR"] == CONTAINER_CATALOGUE_DIR


def test_only_the_front_doors_are_published(compose: dict[str, Any]) -> None:
    published: dict[str, int] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip, host_port, container_port = str(port).rsplit(":", 2)
            assert host_ip == "127.0.0.1", f"{name}: publish on localhost only"
            assert host_port == container_port
            published[name] = int(container_port)
    assert published == PUBLISHED_PORTS


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(":" + listeners["CONTROLLER"].rsplit(":", 1)[1])
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the services create their topics
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert kafka["healthcheck"]["test"] == [
        "CMD",
        "/opt/kafka/bin/kafka-broker-api-versions.sh",
        "--bootstrap-server",
        "localhost:9092",
    ]
    postgres = compose["services"]["postgres"]
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])


def test_health_check_timings_are_durations_compose_accepts(compose: dict[str, Any]) -> None:
    go_duration = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+)")
    for name, service in compose["services"].items():
        for key in ("interval", "timeout", "start_period", "start_interval"):
            value = service.get("healthcheck", {}).get(key)
            assert value is None or go_duration.fullmatch(value), f"{name}.healthcheck.{key}={value!r}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                assert source in compose.get("volumes", {}), f"{name}: volume {source} is not declared"


# ---------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("app", APPS, ids=lambda app: app.name)
def test_each_image_builds_from_the_repo_root_with_its_own_package(compose: dict[str, Any], app: App) -> None:
    service = compose["services"][app.name]
    assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == ROOT
    dockerfile = dockerfile_of(service)
    assert dockerfile.is_file(), f"{dockerfile} does not exist"
    assert dockerfile == DOCKERFILE, "every Python image is built from the one Dockerfile"

    members = workspace_members()
    instructions = image_instructions(service)
    packages = {
        word.split("=", 1)[1] if "=" in word else words[index + 1]
        for instruction in instructions
        if instruction.keyword == "RUN" and "uv sync" in instruction.args
        for words in [shlex.split(instruction.args)]
        for index, word in enumerate(words)
        if word.split("=", 1)[0] == "--package"
    }
    assert packages == {app.package}, f"{dockerfile}: installs {packages}"
    assert app.package in members, f"{app.package} is no workspace member"
    assert ROOT / service["build"]["args"]["SOURCE"] == members[app.package], "SOURCE is the package's folder"
    for instruction in instructions:
        if instruction.keyword == "RUN" and "uv sync" in instruction.args:
            assert {"--frozen", "--no-dev"} <= set(shlex.split(instruction.args)), instruction

    # The workspace members the package is made of are copied in (and the shared ones), and every COPY source exists.
    copied: set[Path] = set()
    for instruction in instructions:
        if instruction.keyword == "COPY":
            flags, args = flags_and_args(instruction)
            if "from" not in flags:
                for source in args[:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile}:{instruction.line}: {source} does not exist"
                    copied.add((ROOT / source).resolve())
    copied_members = {name for name, path in members.items() if path.resolve() in copied}
    closure = local_closure(app.package, members)
    assert closure <= copied_members <= closure | SHARED_MEMBERS
    assert {ROOT / "pyproject.toml", ROOT / "uv.lock"} <= copied


@pytest.mark.parametrize("app", APPS, ids=lambda app: app.name)
def test_each_image_runs_its_module_as_non_root_with_a_health_check(compose: dict[str, Any], app: App) -> None:
    instructions = image_instructions(compose["services"][app.name])
    assert [i.args for i in instructions if i.keyword == "FROM"][-1] == "python:3.11-slim"
    runtime = final_stage(instructions)
    user = [i.args for i in runtime if i.keyword == "USER"]
    assert user, "the runtime stage must switch to a non-root user"
    assert user[-1].split(":")[0] not in ("root", "0")

    env = env_of(runtime)
    assert env["HTTP_HOST"] == "0.0.0.0"
    assert env["HTTP_PORT"] == str(app.port)
    assert [i.args for i in runtime if i.keyword == "EXPOSE"] == [str(app.port)]

    # The default command: `python -m $APP_MODULE $APP_COMMAND`, exec'd so that python is PID 1 and gets the signal.
    cmd = [i for i in runtime if i.keyword == "CMD"][-1].exec_form()
    assert cmd == ["/bin/sh", "-c", 'exec python -m "$APP_MODULE" $APP_COMMAND']
    default = ["python", "-m", env["APP_MODULE"], *env["APP_COMMAND"].split()]
    assert default == ["python", "-m", app.module] + (["serve"] if app.migrates else [])
    assert compose["services"][app.name]["command"] == default

    healthcheck = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    argv = healthcheck[0].args.split(" CMD ", 1)[1]
    assert json.loads(argv) == ["python", "/app/healthcheck.py"]
    copies = [flags_and_args(i)[1] for i in runtime if i.keyword == "COPY"]
    assert ["deploy/docker/healthcheck.py", "/app/healthcheck.py"] in copies
    if app.reads_catalogue:
        assert ["catalogue/", "/app/catalogue/"] in copies
        assert (ROOT / "catalogue" / "agencies").is_dir()


def test_every_python_module_named_exists_in_the_repo(compose: dict[str, Any]) -> None:
    owners = module_owners(workspace_members())
    named: set[str] = set()
    for service in compose["services"].values():
        command = service.get("command")
        if isinstance(command, list):
            named.update(python_modules(command))
        elif isinstance(command, str):
            named.update(python_modules(shlex.split(command)))
        if "build" in service:
            named.add(env_of(final_stage(image_instructions(service)))["APP_MODULE"])  # the image's default
    assert named >= {app.module for app in APPS}
    unknown = named - set(owners)
    assert not unknown, f"`python -m` names modules with no src/<module>/__main__.py in the workspace: {unknown}"
    for app in APPS:  # and each module is in the package that image installs
        assert owners[app.module] == app.package


def test_dockerignore_keeps_what_the_images_copy(compose: dict[str, Any]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "negations are not modelled here; extend the test"
    for pattern in (".git", "**/.venv", ".state", "**/.env"):
        assert pattern in patterns
    for app in APPS:
        dockerfile = dockerfile_of(compose["services"][app.name])
        for instruction in image_instructions(compose["services"][app.name]):
            flags, args = flags_and_args(instruction)
            if instruction.keyword == "COPY" and "from" not in flags:
                for source in args[:-1]:
                    assert not dockerignored(source, patterns), f"{dockerfile}: .dockerignore excludes {source}"
    assert dockerignored("services/intake/src/intake/__pycache__/api.cpython-311.pyc", patterns)
    assert dockerignored(".venv/bin/python", patterns)


# ---------------------------------------------------------------------------------------------- health check


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_healthcheck(port: int) -> int:
    env = {"HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT)], env=env, capture_output=True, timeout=30
    ).returncode


def test_the_images_health_check_follows_the_services_health_endpoint() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        _Health.status = 200
        assert _run_healthcheck(port) == 0
        _Health.status = 503  # what a service answers while Kafka or PostgreSQL is down
        assert _run_healthcheck(port) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert _run_healthcheck(port) == 1  # nobody listening


def test_the_gateway_and_the_simulator_share_every_webhook_agencys_secret(compose: dict[str, Any]) -> None:
    names = {
        match.group(1)
        for path in (ROOT / "catalogue" / "agencies").glob("*.toml")
        if (match := re.search(r'secret_env = "([A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    }
    assert names, "the sample catalogue has webhook agencies"
    for service in ("agency-gateway", "agency-simulator"):
        environment = compose["services"][service]["environment"]
        assert names <= set(environment), f"{service} lacks {sorted(names - set(environment))}"


# ---------------------------------------------------------------------------------------------- secure profile

SECURE_FILE = ROOT / "docker-compose.secure.yml"
SECURE_SETUP_SCRIPT = ROOT / "deploy" / "kafka" / "compose-secure-setup.sh"
KAFKA_PASSWORDS = {
    "CASE_KEYS": "k1=ZGV2LW9ubHkta2V5LW5vdC1mb3ItcmVhbC1kYXRhISE",
    "AUTH_SECRET": "a-real-secret-from-the-operator-0123456789abcdef",
    "KAFKA_ADMIN_PASSWORD": "admin-pw",
    **{f"KAFKA_PASSWORD_{app.name.upper().replace('-', '_')}": f"{app.name}-pw" for app in SERVICES},
}


def merge_override(base: Any, override: Any) -> Any:
    """`docker compose -f base -f override`: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {key: merge_override(base[key], value) if key in base else value for key, value in override.items()} | {
            key: value for key, value in base.items() if key not in override
        }
    return override


@pytest.fixture(scope="module")
def secure_compose() -> dict[str, Any]:
    override = yaml.safe_load(SECURE_FILE.read_text(encoding="utf-8"))
    merged: dict[str, Any] = interpolate(merge_override(load_compose(), override), KAFKA_PASSWORDS)
    return merged


def test_the_secure_profile_is_valid_compose_and_needs_every_password(
    validator: jsonschema.protocols.Validator, secure_compose: dict[str, Any]
) -> None:
    errors = sorted(validator.iter_errors(secure_compose), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    override = yaml.safe_load(SECURE_FILE.read_text(encoding="utf-8"))
    for missing in KAFKA_PASSWORDS:
        with pytest.raises(AssertionError, match=f"{missing} is required"):
            interpolate(override, {k: v for k, v in KAFKA_PASSWORDS.items() if k != missing})


def test_the_secure_profile_signs_tokens_with_the_operators_secret_only(secure_compose: dict[str, Any]) -> None:
    for app in SERVICES:
        assert environment(secure_compose["services"][app.name])["AUTH_SECRET"] == KAFKA_PASSWORDS["AUTH_SECRET"]


def test_the_secure_broker_authenticates_everyone_and_denies_by_default(secure_compose: dict[str, Any]) -> None:
    env = environment(secure_compose["services"]["kafka"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    assert set(listeners) <= set(protocols) and set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert "SCRAM-SHA-512" in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    # PLAIN logs in only the admin: its JAAS entry lists that one user.
    plain = env["KAFKA_LISTENER_NAME_CLIENT_PLAIN_SASL_JAAS_CONFIG"]
    assert re.findall(r"\buser_(\S+?)=", plain) == ["admin"] and 'password="admin-pw"' in plain
    assert "--command-config" in secure_compose["services"]["kafka"]["healthcheck"]["test"][1]


@pytest.mark.parametrize("app", SERVICES, ids=lambda app: app.name)
def test_each_service_logs_in_to_kafka_as_itself(secure_compose: dict[str, Any], app: App) -> None:
    service = secure_compose["services"][app.name]
    env = environment(service)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == app.name
    assert env["KAFKA_SASL_PASSWORD"] == f"{app.name}-pw"  # its own variable, the one kafka-setup registers
    registered = environment(secure_compose["services"]["kafka-setup"])
    assert registered[f"KAFKA_PASSWORD_{app.name.upper().replace('-', '_')}"] == env["KAFKA_SASL_PASSWORD"]
    assert service["depends_on"]["kafka-setup"]["condition"] == "service_completed_successfully"
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"  # still there from the base file


def test_the_setup_script_grants_what_devstack_grants() -> None:
    from devstack.kafka_security import kafka_setup_script

    assert SECURE_SETUP_SCRIPT.read_text(encoding="utf-8") == kafka_setup_script(ROOT / "catalogue" / "agencies"), (
        "regenerate: uv run python -m devstack kafka-setup-script > deploy/kafka/compose-secure-setup.sh"
    )
    script = SECURE_SETUP_SCRIPT.read_text(encoding="utf-8")
    for app in SERVICES:
        assert f'scram {app.name} "${{KAFKA_PASSWORD_{app.name.upper().replace("-", "_")}}}"' in script
    # Only literal topic names: no principal is granted topics by prefix or wildcard.
    assert "--topic *" not in script
    assert all("--topic" not in line for line in script.splitlines() if "prefixed" in line)

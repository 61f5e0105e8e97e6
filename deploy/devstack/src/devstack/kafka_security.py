"""The secure profile of the local Kafka: SASL/SCRAM-SHA-512 principals, their passwords, and the ACLs they get.

One principal per service and per Kafka-native agency, each allowed only its own topics and consumer groups
(`allow.everyone.if.no.acl.found=false`); `admin` is the super user devstack itself uses. Passwords are made
once per state folder into `<state>/kafka/credentials.json` (owner-only), never kept in the repository.
SCRAM credentials are written into the metadata when the storage is formatted; ACLs are created through the
Admin API (CreateAcls) every start, which is idempotent.
"""

import json
import os
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest, CreateAclsRequestStruct

from devstack.errors import DevstackError

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
# The services that use Kafka, by principal name (= their service name, the prefix of their consumer groups).
SERVICE_PRINCIPALS = ("intake", "routing", "agency-gateway", "notify")

CASE_SUBMITTED = "case.submitted"
CASE_ERASED = "case.erased"
CONSENT_WITHDRAWN = "consent.withdrawn"
CONSENT_RECORDED = "consent.recorded"
CASE_CLOSED = "case.closed"
REFERRAL_EVENTS = "referral.events"
REFERRAL_REROUTING = "referral.rerouting"


class Resource(IntEnum):  # Kafka's AclResourceType
    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):  # Kafka's PatternType
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):  # Kafka's AclOperation
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


_ALLOW = 3  # AclPermissionType.ALLOW


@dataclass(frozen=True, order=True)
class AclRule:
    """`principal` may do `operation` on the topic or group `name` (or every one starting with it)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def describe(self) -> str:
        prefix = "*" if self.pattern is Pattern.PREFIXED else ""
        return f"User:{self.principal} {self.operation.name} {self.resource.name.lower()} {self.name}{prefix}"


@dataclass(frozen=True)
class ClientCredentials:
    username: str
    password: str

    def aiokafka(self) -> dict[str, str]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }

    def env(self) -> dict[str, str]:
        """The variables a service reads into its settings (kit.settings)."""
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
        }


def agency_principal(agency_id: str) -> str:
    return f"agency-{agency_id}"


def agency_group_prefix(agency_id: str) -> str:
    """A Kafka-native agency's consumer groups must start with this."""
    return f"agency.{agency_id}."


def access_rules(agencies: Iterable[str], kafka_agencies: Iterable[str]) -> list[AclRule]:
    """Every ACL of the stack: what each service and each Kafka-native agency may do, and nothing more.

    `agencies` are all catalogue agencies (routing writes their topics, the gateway reads them); `kafka_agencies`
    those that consume their own topic and answer on `acks.<agency-id>`.
    """
    agency_ids = sorted(set(agencies))
    native = sorted(set(kafka_agencies))
    T, G = Resource.TOPIC, Resource.GROUP
    R, W, C, D = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE
    rules: list[AclRule] = []

    def topics(principal: str, names: Iterable[str], *operations: Operation) -> None:
        rules.extend(AclRule(principal, T, name, op) for name in names for op in operations)

    def consumes(principal: str, names: Iterable[str]) -> None:
        # Reads it; creates it and its dead-letter topic if missing (kit.runtime does) and dead-letters into it.
        names = list(names)
        topics(principal, names, R, D, C)
        topics(principal, [f"{n}.dlq" for n in names], W, D, C)

    def produces(principal: str, names: Iterable[str]) -> None:
        topics(principal, names, W, D, C)

    def groups(principal: str, prefix: str) -> None:
        rules.extend(AclRule(principal, G, prefix, op, Pattern.PREFIXED) for op in (R, D))

    produces("intake", [CASE_SUBMITTED, CASE_ERASED])

    # Every service that holds something of a case purges it on case.erased.
    consumes("routing", [CASE_SUBMITTED, REFERRAL_REROUTING, CASE_ERASED])
    produces("routing", [REFERRAL_EVENTS, *(f"referrals.{a}" for a in agency_ids)])
    # A referral's state (an agency's answer, a delivery that failed): a stage of a case's plan may end by its rule.
    consumes("routing", [REFERRAL_EVENTS])
    groups("routing", "routing.")

    gateway = "agency-gateway"
    consumes(gateway, [f"referrals.{a}" for a in agency_ids] + [f"referrals.{a}.retry" for a in agency_ids])
    # Erasures purge; a re-routing (case.routed on referral.events) means the old referral is never delivered again.
    consumes(gateway, [CASE_ERASED, REFERRAL_EVENTS])
    produces(gateway, [REFERRAL_EVENTS, *(f"referrals.{a}.retry" for a in agency_ids)])
    produces(gateway, [f"acks.{a}" for a in native])  # it creates a Kafka-native agency's answer topic
    groups(gateway, f"{gateway}.")
    # An operator's replay through the gateway's API (its replay.py): it reads each agency's DLQ and puts the dead
    # letters back on the agency's topic, as `onestop-replay-dlq` does under an operator's own login.
    topics(gateway, [f"referrals.{a}.dlq" for a in agency_ids], R)
    produces(gateway, [f"referrals.{a}" for a in agency_ids])

    # Notify creates and reads every agency's answer topic; only a Kafka-native agency may write its own.
    consumes("notify", [CASE_SUBMITTED, CASE_ERASED, REFERRAL_EVENTS, *(f"acks.{a}" for a in agency_ids)])
    # Notify tells an agency on its own topic when staff cancel its referral (consent withdrawn, say).
    produces("notify", [REFERRAL_EVENTS, REFERRAL_REROUTING, *(f"referrals.{a}" for a in agency_ids)])
    groups("notify", "notify.")

    # The victim withdrew a consent: notify cancels the agency's referrals, routing never chooses it again.
    produces("intake", [CONSENT_WITHDRAWN])
    consumes("notify", [CONSENT_WITHDRAWN])
    consumes("routing", [CONSENT_WITHDRAWN])
    # A consent given (or an override recorded) after submission: routing tries the case's pending needs again.
    produces("intake", [CONSENT_RECORDED])
    consumes("routing", [CONSENT_RECORDED])

    # A caseworker closed the case: notify cancels its open referrals and ends its pending needs; routing stops
    # looking for agencies for it.
    produces("intake", [CASE_CLOSED])
    consumes("notify", [CASE_CLOSED])
    consumes("routing", [CASE_CLOSED])

    for agency in native:
        principal = agency_principal(agency)
        topics(principal, [f"referrals.{agency}"], R, D)
        topics(principal, [f"acks.{agency}"], W, D)
        groups(principal, agency_group_prefix(agency))
    return sorted(set(rules))


def catalogue_agencies(catalogue: Path) -> tuple[list[str], list[str]]:
    """(every agency id, the Kafka-native ones) from the catalogue's files: the id is the file name."""
    every, native = [], []
    for path in sorted(catalogue.glob("*.toml")):
        every.append(path.stem)
        with path.open("rb") as file:
            channel: Mapping[str, Any] = tomllib.load(file).get("channel", {})
        if channel.get("type") == "kafka":
            native.append(path.stem)
    return every, native


class KafkaSecurity:
    """The principals of one state folder, their passwords (made once, kept owner-only) and their ACLs."""

    def __init__(self, state_dir: Path, agencies: Iterable[str] = (), kafka_agencies: Iterable[str] = ()) -> None:
        self.path = state_dir.resolve() / "kafka" / "credentials.json"
        self.agencies = sorted(set(agencies))
        self.kafka_agencies = sorted(set(kafka_agencies))
        principals = [ADMIN, *SERVICE_PRINCIPALS, *(agency_principal(a) for a in self.kafka_agencies)]
        self._passwords = self._load_or_create(principals)

    @classmethod
    def for_catalogue(cls, state_dir: Path, catalogue: Path) -> "KafkaSecurity":
        every, native = catalogue_agencies(catalogue)
        return cls(state_dir, every, native)

    @property
    def principals(self) -> list[str]:
        return sorted(self._passwords)

    def credentials(self, principal: str) -> ClientCredentials:
        if principal not in self._passwords:
            raise DevstackError(f"no Kafka principal {principal!r} in {self.path}")
        return ClientCredentials(principal, self._passwords[principal])

    @property
    def admin(self) -> ClientCredentials:
        return self.credentials(ADMIN)

    def rules(self) -> list[AclRule]:
        return access_rules(self.agencies, self.kafka_agencies)

    def scram_arguments(self) -> list[str]:
        """StorageTool's `--add-scram` arguments: every principal's SCRAM credential, written at format time."""
        args: list[str] = []
        for name, password in sorted(self._passwords.items()):
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def broker_settings(self, client_listener: str) -> dict[str, str]:
        """server.properties entries: SCRAM on the client listener, PLAIN between controller and broker, ACLs."""
        admin = self._passwords[ADMIN]
        controller_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{admin}" user_{ADMIN}="{admin}";'
        )
        scram_jaas = (
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" password="{admin}";'
        )
        listener = client_listener.lower()
        return {
            "listener.security.protocol.map": f"{client_listener}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.{listener}.scram-sha-512.sasl.jaas.config": scram_jaas,
            # The controller quorum cannot use SCRAM (its credentials live in the metadata it serves): PLAIN, admin.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": controller_jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    async def apply_acls(self, bootstrap_servers: str) -> int:
        """Create every rule's ACL as the admin (existing ones stay as they are); returns how many."""
        rules = self.rules()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="devstack-acls",
            request_timeout_ms=10000,
            **self.admin.aiokafka(),
        )
        await admin.start()
        try:
            await _create_acls(admin, rules)
        finally:
            await admin.close()
        return len(rules)

    def _load_or_create(self, principals: list[str]) -> dict[str, str]:
        known: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        missing = [p for p in principals if p not in known]
        if missing:
            known.update({p: secrets.token_hex(24) for p in missing})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(known, file, indent=2, sort_keys=True)
        return {p: known[p] for p in principals}


class _CreateAcls(CreateAclsRequest):  # type: ignore[misc]  # aiokafka.protocol is untyped
    """Every rule's ACL in one CreateAcls request (aiokafka's request carries one): the controller writes them
    together, not in one metadata record batch each."""

    def __init__(self, rules: list[AclRule]) -> None:
        self.rules = rules

    def build(self, request_struct_class: type[CreateAclsRequestStruct]) -> CreateAclsRequestStruct:
        if request_struct_class.API_VERSION < 1:
            raise DevstackError("the broker is too old for prefixed ACLs (CreateAcls v1, Kafka 2.0)")
        return request_struct_class(
            [(r.resource, r.name, r.pattern, f"User:{r.principal}", "*", r.operation, _ALLOW) for r in self.rules]
        )


async def _create_acls(admin: AIOKafkaAdminClient, rules: list[AclRule]) -> None:
    # aiokafka 0.14 speaks the protocol's CreateAcls but has no public method for it.
    response = await admin._send_request(_CreateAcls(rules))
    for rule, (code, message) in zip(rules, response.creation_responses, strict=True):
        if code != 0:
            raise DevstackError(f"creating the ACL {rule.describe()} failed: error {code} {message}")


def password_variable(principal: str) -> str:
    """The environment variable holding a principal's password in docker-compose.secure.yml."""
    return "KAFKA_PASSWORD_" + principal.upper().replace("-", "_")


_OPERATION_FLAGS = {op: op.name.capitalize() for op in Operation}


def compose_setup_script(rules: list[AclRule], principals: Iterable[str]) -> str:
    """The one-shot script docker-compose.secure.yml runs in an apache/kafka container: each principal's SCRAM
    credential (from its environment variable) and every ACL of `rules`, through Kafka's own admin tools."""
    lines = [
        "#!/bin/sh",
        "# Generated by `python -m devstack kafka-setup-script > deploy/kafka/compose-secure-setup.sh` from",
        "# devstack.kafka_security (the same rules `./dev up --secure-kafka` applies); a unit test checks it matches.",
        "# Runs once per `docker compose -f docker-compose.yml -f docker-compose.secure.yml up`: both steps are",
        "# idempotent. Passwords come from the environment, never from this file.",
        "set -eu",
        "BOOTSTRAP=kafka:9092",
        'ADMIN_CONFIG="$(mktemp)"',
        'cat > "$ADMIN_CONFIG" <<EOF',
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=PLAIN",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="${{KAFKA_ADMIN_PASSWORD}}";',
        "EOF",
        "scram() {",
        '    /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" \\',
        f'        --alter --entity-type users --entity-name "$1" --add-config "{MECHANISM}=[password=$2]"',
        "}",
        "acl() {",
        '    /opt/kafka/bin/kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add "$@"',
        "}",
    ]
    lines += [f'scram {p} "${{{password_variable(p)}}}"' for p in sorted(principals)]
    grouped: dict[tuple[str, Resource, Pattern, tuple[Operation, ...]], list[str]] = {}
    by_resource: dict[tuple[str, Resource, Pattern, str], set[Operation]] = {}
    for rule in rules:
        by_resource.setdefault((rule.principal, rule.resource, rule.pattern, rule.name), set()).add(rule.operation)
    for (principal, resource, pattern, name), allowed in sorted(by_resource.items()):
        grouped.setdefault((principal, resource, pattern, tuple(sorted(allowed))), []).append(name)
    for (principal, resource, pattern, operations), names in grouped.items():
        args = [f"--allow-principal User:{principal}"]
        args += [f"--operation {_OPERATION_FLAGS[op]}" for op in operations]
        args += [f"--{resource.name.lower()} {name}" for name in names]
        if pattern is Pattern.PREFIXED:
            args.append("--resource-pattern-type prefixed")
        lines.append("acl " + " ".join(args))
    lines.append('rm -f "$ADMIN_CONFIG"')
    return "\n".join(lines) + "\n"


def kafka_setup_script(catalogue: Path) -> str:
    """`compose_setup_script` for the principals and rules of `catalogue`."""
    every, native = catalogue_agencies(catalogue)
    principals = [*SERVICE_PRINCIPALS, *(agency_principal(a) for a in native)]
    return compose_setup_script(access_rules(every, native), principals)

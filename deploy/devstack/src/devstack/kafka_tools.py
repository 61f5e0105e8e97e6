"""Kafka's own command-line tools against the running dev stack: `./dev kafka consumer-groups --describe --all-groups`.

The tools are the `kafka-tools` jar of the broker's version (deploy/kafka/pom.xml), run from the same libs folder as
the broker. The bootstrap servers are read from the stack's state folder (each node's `server.properties`, which
devstack writes at every start); on a secured stack (`./dev up --secure`) the tools log in as its admin, whose
password devstack keeps in `<state>/kafka/credentials.json`, through a client properties file made owner-only.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from devstack.errors import DevstackError
from devstack.kafka import ensure_kafka_jars, java_executable
from devstack.kafka_security import MECHANISM, KafkaSecurity

# `kafka-<name>.sh` of Kafka's distribution -> its main class in Kafka 4.3 (kafka-tools, or the broker's jar).
TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "acls": "org.apache.kafka.tools.AclCommand",
    "configs": "kafka.admin.ConfigCommand",
}
# The option through which each tool takes a client properties file (the login on a secured broker).
_CLIENT_CONFIG_OPTION = {"console-consumer": "--consumer.config", "console-producer": "--producer.config"}
_TOOLS_LOG4J2 = """\
# Written by devstack: Kafka's tools print their results on stdout and only warnings on stderr.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
"""


def stack_bootstrap(state_dir: Path) -> tuple[str, bool]:
    """The running stack's bootstrap servers (its nodes' advertised listeners), and whether they take SASL."""
    nodes = sorted((state_dir / "kafka").glob("node-*/server.properties"))
    listeners = [_property(path, "advertised.listeners") for path in nodes]
    found = [listener for listener in listeners if listener]
    if not found:
        raise DevstackError(
            f"no dev stack's Kafka in {state_dir} (no kafka/node-*/server.properties): start `./dev up`, "
            "or pass --state-dir, or the tool's own --bootstrap-server"
        )
    addresses = [listener.split("://", 1)[1] for listener in found]
    return ",".join(addresses), any(listener.startswith("SASL_") for listener in found)


def _property(path: Path, key: str) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def admin_client_properties(state_dir: Path) -> Path:
    """`<state>/kafka/admin-client.properties` (owner-only): the secured stack's admin login for Kafka's tools."""
    security = KafkaSecurity(state_dir)
    admin = security.admin
    path = state_dir / "kafka" / "admin-client.properties"
    path.touch(mode=0o600)
    path.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{admin.username}" password="{admin.password}";\n',
        encoding="utf-8",
    )
    return path


def tool_argv(state_dir: Path, tool: str, args: Sequence[str]) -> list[str]:
    """The java command line running Kafka's `tool` with `args` against the stack of `state_dir`."""
    if tool not in TOOLS:
        raise DevstackError(f"no Kafka tool {tool!r}; there are: {', '.join(sorted(TOOLS))}")
    state_dir = state_dir.resolve()
    libs = ensure_kafka_jars(state_dir)
    given = set(args)
    extra: list[str] = []
    if "--bootstrap-server" not in given and not any(a.startswith("--bootstrap-server=") for a in given):
        bootstrap, secured = stack_bootstrap(state_dir)
        extra += ["--bootstrap-server", bootstrap]
        option = _CLIENT_CONFIG_OPTION.get(tool, "--command-config")
        if secured and option not in given:
            extra += [option, str(admin_client_properties(state_dir))]
    log_config = state_dir / "kafka" / "tools-log4j2.properties"
    log_config.write_text(_TOOLS_LOG4J2, encoding="utf-8")
    return [
        java_executable(),
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # a short-lived command: start fast rather than run fast
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        f"{libs}/*",
        TOOLS[tool],
        *args,
        *extra,
    ]


def run_tool(state_dir: Path, tool: str, args: Sequence[str]) -> None:
    """Replace this process with the tool: its output, exit code and Ctrl-C are the tool's own."""
    argv = tool_argv(state_dir, tool, args)
    os.execv(argv[0], argv)

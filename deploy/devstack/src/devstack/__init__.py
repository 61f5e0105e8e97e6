"""The local stack without Docker: Kafka, PostgreSQL and the services as plain processes."""

from devstack.errors import DevstackError
from devstack.kafka import KafkaCluster, ensure_kafka_jars
from devstack.kafka_security import KafkaSecurity
from devstack.postgres import PostgresServer
from devstack.process import ManagedProcess
from devstack.stack import SERVICES, ServiceSpec, Stack, StackPorts

__all__ = [
    "SERVICES",
    "DevstackError",
    "KafkaCluster",
    "KafkaSecurity",
    "ManagedProcess",
    "PostgresServer",
    "ServiceSpec",
    "Stack",
    "StackPorts",
    "ensure_kafka_jars",
]

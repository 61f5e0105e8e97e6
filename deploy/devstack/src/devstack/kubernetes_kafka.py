"""Kafka on Kubernetes, generated from the catalogue: a Strimzi `KafkaTopic` for every topic and a `KafkaUser` for
every service and Kafka-native agency, with exactly the ACLs of `devstack.kafka_security.access_rules` (the ones
`./dev up --secure-kafka` and docker-compose.secure.yml apply), and a KEDA `ScaledObject` per consuming service on
its consumer groups' lag. Pure functions: manifests as dictionaries, written out by `devstack.kubernetes`."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.topics import (
    CASE_CLOSED,
    CASE_ERASED,
    CASE_SUBMITTED,
    CONSENT_RECORDED,
    CONSENT_WITHDRAWN,
    REFERRAL_EVENTS,
    REFERRAL_REROUTING,
)

from devstack.kafka_security import (
    MECHANISM,
    SERVICE_PRINCIPALS,
    AclRule,
    Pattern,
    Resource,
    access_rules,
    agency_principal,
)

Manifest = dict[str, Any]

KAFKA_CLUSTER = "onestop"  # the Strimzi `Kafka` resource; its bootstrap Service is `<name>-kafka-bootstrap`
BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap:9092"
# kit.settings' TOPIC_PARTITIONS default: the services and the KafkaTopics agree, and no consumer group can use more
# replicas than its topics have partitions.
PARTITIONS = 6
REPLICAS = 3  # the base's replication factor; the dev overlay patches every KafkaTopic to 1
LAG_THRESHOLD = 50  # records waiting per replica before KEDA adds one (a batch consumer takes up to 200 at once)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group of a service and the topics it reads; `topics` empty means every agency's topic of a kind,
    too many to name in a trigger: KEDA then counts the lag of every topic the group has committed offsets on."""

    group: str
    topic: str | None


def consumer_groups(service: str) -> list[ConsumerGroup]:
    """The consumer groups of each service, as its main.py subscribes them (a unit test compares the two)."""
    groups: dict[str, list[ConsumerGroup]] = {
        "routing": [
            ConsumerGroup("routing.case-submitted", CASE_SUBMITTED),
            ConsumerGroup("routing.referral-rerouting", REFERRAL_REROUTING),
            ConsumerGroup("routing.consent-withdrawn", CONSENT_WITHDRAWN),
            ConsumerGroup("routing.consent-recorded", CONSENT_RECORDED),
            ConsumerGroup("routing.case-erased", CASE_ERASED),
            ConsumerGroup("routing.case-closed", CASE_CLOSED),
            ConsumerGroup("routing.referral-events", REFERRAL_EVENTS),
        ],
        "agency-gateway": [
            ConsumerGroup("agency-gateway.deliveries", None),  # every referrals.<agency> and its .retry
            ConsumerGroup("agency-gateway.case-erased", CASE_ERASED),
            ConsumerGroup("agency-gateway.reroutings", REFERRAL_EVENTS),
        ],
        "notify": [
            ConsumerGroup("notify.case-submitted", CASE_SUBMITTED),
            ConsumerGroup("notify.case-erased", CASE_ERASED),
            ConsumerGroup("notify.referral-events", REFERRAL_EVENTS),
            ConsumerGroup("notify.consent-withdrawn", CONSENT_WITHDRAWN),
            ConsumerGroup("notify.case-closed", CASE_CLOSED),
            ConsumerGroup("notify.acks", None),  # every acks.<agency>
        ],
    }
    return groups.get(service, [])


def _strimzi(kind: str, name: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": spec,
    }


def topic_names(rules: Iterable[AclRule]) -> list[str]:
    """Every topic some principal may use: all of them are named literally in the rules."""
    return sorted({r.name for r in rules if r.resource is Resource.TOPIC and r.pattern is Pattern.LITERAL})


def kafka_topics(agencies: Iterable[str], kafka_agencies: Iterable[str]) -> list[Manifest]:
    """One KafkaTopic per topic: the agencies' topics, retry, DLQ and answer topics, and the shared ones."""
    # A topic's name is its resource name: Kafka's names here are lower-case words, dots and dashes, all valid.
    return [
        _strimzi("KafkaTopic", name, {"topicName": name, "partitions": PARTITIONS, "replicas": REPLICAS})
        for name in topic_names(access_rules(agencies, kafka_agencies))
    ]


def _acl(rules: list[AclRule]) -> list[Manifest]:
    """Strimzi's ACL entries: one per resource, with its operations."""
    operations: dict[tuple[Resource, str, Pattern], set[str]] = {}
    for rule in rules:
        operations.setdefault((rule.resource, rule.name, rule.pattern), set()).add(rule.operation.name.capitalize())
    return [
        {
            "resource": {
                "type": resource.name.lower(),
                "name": name,
                "patternType": "prefix" if pattern is Pattern.PREFIXED else "literal",
            },
            "operations": sorted(allowed),
            "host": "*",
        }
        for (resource, name, pattern), allowed in sorted(operations.items())
    ]


def kafka_users(agencies: Iterable[str], kafka_agencies: Iterable[str]) -> list[Manifest]:
    """A SCRAM-SHA-512 KafkaUser per service and per Kafka-native agency, each with its own rules only. The User
    Operator makes each one's password into a Secret of the same name (key `password`)."""
    native = sorted(set(kafka_agencies))
    rules = access_rules(agencies, native)
    assert MECHANISM == "SCRAM-SHA-512"
    principals = [*SERVICE_PRINCIPALS, *(agency_principal(a) for a in native)]
    return [
        _strimzi(
            "KafkaUser",
            principal,
            {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": _acl([r for r in rules if r.principal == principal])},
            },
        )
        for principal in principals
    ]


def scaled_objects(services: Iterable[str]) -> list[Manifest]:
    """Per consuming service: a TriggerAuthentication (its own Kafka user: the name from its container's
    environment, the password from the Secret the User Operator made) and a ScaledObject with one kafka trigger per
    consumer group, at most as many replicas as a topic has partitions."""
    manifests: list[Manifest] = []
    for service in services:
        groups = consumer_groups(service)
        if not groups:
            continue
        manifests.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": {"name": f"{service}-kafka"},
                "spec": {
                    "env": [{"parameter": "username", "name": "KAFKA_SASL_USERNAME", "containerName": service}],
                    "secretTargetRef": [{"parameter": "password", "name": service, "key": "password"}],
                },
            }
        )
        manifests.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": service},
                "spec": {
                    "scaleTargetRef": {"name": service},
                    "minReplicaCount": 1,
                    "maxReplicaCount": PARTITIONS,
                    "pollingInterval": 15,
                    "cooldownPeriod": 300,
                    "triggers": [_lag_trigger(service, group) for group in groups],
                },
            }
        )
    return manifests


def _lag_trigger(service: str, group: ConsumerGroup) -> Manifest:
    metadata = {
        "bootstrapServers": BOOTSTRAP,
        "consumerGroup": group.group,
        "lagThreshold": str(LAG_THRESHOLD),
        "offsetResetPolicy": "earliest",
        "sasl": "scram_sha512",
        "tls": "disable",
    }
    if group.topic is not None:
        metadata["topic"] = group.topic
    return {
        "type": "kafka",
        "name": group.group.replace(".", "-"),
        "metadata": metadata,
        "authenticationRef": {"name": f"{service}-kafka"},
    }

"""The system's own outages: a dependency (PostgreSQL, Kafka, intake) that cannot serve now. Never counted against a
record, an agency or a caller; whoever meets one waits and tries again."""

from aiokafka.errors import KafkaError

from .db import UNAVAILABLE_ERRORS
from .errors import DependencyUnavailable

__all__ = ["DependencyUnavailable", "is_outage"]


def is_outage(error: BaseException) -> bool:
    """The system's own outage (PostgreSQL, Kafka, intake unreachable), never counted against a record."""
    if isinstance(error, KafkaError):
        return bool(error.retriable)
    return isinstance(error, (DependencyUnavailable, *UNAVAILABLE_ERRORS))

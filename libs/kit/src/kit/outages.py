"""The system's own outages: a dependency (PostgreSQL, Kafka, intake) that cannot serve now. Never counted against a
record, an agency or a caller; whoever meets one waits and tries again."""

from aiokafka.errors import KafkaError

from .db import UNAVAILABLE_ERRORS


class DependencyUnavailable(Exception):
    """A dependency of the system's own (intake, say) cannot serve the record now. The consumer waits and tries the
    same record again, for as long as it takes: this is never the record's fault nor an agency's."""


def is_outage(error: BaseException) -> bool:
    """The system's own outage (PostgreSQL, Kafka, intake unreachable), never counted against a record."""
    if isinstance(error, KafkaError):
        return bool(error.retriable)
    return isinstance(error, (DependencyUnavailable, *UNAVAILABLE_ERRORS))

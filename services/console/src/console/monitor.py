"""The operator's numbers, read from the services' own Prometheus text (`/metrics`, the same series Prometheus
scrapes): per agency its deliveries and failures, SLA breaches and circuit; dead letters by topic and reason; each
service's outbox backlog and its consumers' lag. Pure: text in, figures out. Counters count since each process
started; Prometheus keeps the history."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class AgencyFigures:
    delivered: float = 0.0
    failed: float = 0.0
    sla_breaches: float = 0.0
    circuit_open: bool = False


@dataclass
class Figures:
    agencies: dict[str, AgencyFigures] = field(default_factory=dict)
    dead_letters: dict[tuple[str, str], float] = field(default_factory=dict)  # (topic, reason) -> records
    outbox_backlog: dict[str, float] = field(default_factory=dict)  # service -> rows
    consumer_lag: dict[str, float] = field(default_factory=dict)  # consumer group -> records, over its topics

    def most_delivered(self) -> float:
        """The scale of the agencies' bars: the largest number of deliveries (1 when none)."""
        return max([a.delivered + a.failed for a in self.agencies.values()] + [1.0])


def _samples(text: str) -> Iterable[tuple[str, Mapping[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def read_figures(texts: Mapping[str, str]) -> Figures:
    """The figures from each service's /metrics text, by service name (a service that did not answer is left out)."""
    figures = Figures()

    def agency(labels: Mapping[str, str]) -> AgencyFigures:
        return figures.agencies.setdefault(labels.get("agency_id", "?"), AgencyFigures())

    for service, text in texts.items():
        for name, labels, value in _samples(text):
            if name == "onestop_deliveries_total":
                if labels.get("outcome") == "delivered":
                    agency(labels).delivered += value
                elif labels.get("outcome") == "failed":
                    agency(labels).failed += value
            elif name == "onestop_sla_breaches_total":
                agency(labels).sla_breaches += value
            elif name == "onestop_circuit_open":
                agency(labels).circuit_open = value >= 1
            elif name == "onestop_dlq_records_total":
                key = (labels.get("topic", "?"), labels.get("reason", "?"))
                figures.dead_letters[key] = figures.dead_letters.get(key, 0.0) + value
            elif name == "onestop_outbox_backlog":
                figures.outbox_backlog[service] = value
            elif name == "onestop_consumer_lag":
                group = labels.get("group", "?")
                figures.consumer_lag[group] = figures.consumer_lag.get(group, 0.0) + value
    figures.agencies = dict(sorted(figures.agencies.items()))
    return figures

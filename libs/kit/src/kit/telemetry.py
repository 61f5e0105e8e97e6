"""OpenTelemetry set-up from the standard OTEL_* variables, and trace context carried in event headers."""

import os
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure_tracing(service: str) -> TracerProvider:
    """A tracer provider named for the service; spans go over OTLP when OTEL_EXPORTER_OTLP_* says where."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    exporter_wanted = os.environ.get("OTEL_TRACES_EXPORTER", "otlp") == "otlp"
    endpoint_set = any(k in os.environ for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if exporter_wanted and endpoint_set:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), to store with an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str]) -> context.Context:
    return propagate.extract(dict(headers))

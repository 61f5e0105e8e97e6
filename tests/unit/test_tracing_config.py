"""Spans are recorded only when they go somewhere; trace context is carried either way."""

from kit.telemetry import context_from_headers, span_sampler
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider


def test_without_an_exporter_no_span_is_recorded_but_the_trace_ids_still_travel() -> None:
    tracer = TracerProvider(sampler=span_sampler({})).get_tracer("test")
    with tracer.start_as_current_span("POST /cases") as request:
        headers: dict[str, str] = {}
        propagate.inject(headers)
    assert not request.is_recording()
    assert request.get_span_context().is_valid, "logs and the timeline still get a trace id"
    carried = trace.get_current_span(context_from_headers(headers)).get_span_context()
    assert carried.trace_id == request.get_span_context().trace_id


def test_with_an_exporter_or_a_sampler_named_the_standard_variables_decide() -> None:
    assert span_sampler({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is None
    assert span_sampler({"OTEL_TRACES_SAMPLER": "always_on"}) is None
    assert span_sampler({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}) is not None

"""Spans are recorded only when they go somewhere; trace context is carried either way."""

from kit.telemetry import context_from_headers, instrument_libraries, sampled_flag, span_sampler
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
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


def test_a_trace_resumed_from_stored_ids_claims_sampled_only_where_spans_are_recorded() -> None:
    # Notify resumes a case's trace from the ids in its timeline for an agency's acknowledgement. Flagged
    # "sampled" with no exporter, every span of that request and every service downstream would be recorded
    # (ParentBased honours the flag) for nobody to read.
    assert sampled_flag({}) == "00"
    assert sampled_flag({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "01"
    tracer = TracerProvider(sampler=span_sampler({})).get_tracer("test")
    stored = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{sampled_flag({})}"}
    with tracer.start_as_current_span("referral acknowledgement", context=context_from_headers(stored)) as span:
        assert not span.is_recording()
        assert format(span.get_span_context().trace_id, "032x") == "ab" * 16, "still the case's trace"


def test_postgresql_statements_get_spans_only_when_spans_are_recorded() -> None:
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    try:
        instrument_libraries({})
        assert not instrumentor.is_instrumented_by_opentelemetry, "a span per statement, for nobody"
        instrument_libraries({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
        assert instrumentor.is_instrumented_by_opentelemetry
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()

"""OpenTelemetry set-up from the standard OTEL_* variables, trace context carried in event headers, and a privacy
filter so that no span leaves the process with personal data in it."""

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import Link, Span, Status
from opentelemetry.util.types import Attributes

__all__ = [
    "PrivacyFilter",
    "annotate_span",
    "configure_tracing",
    "context_from_headers",
    "continue_trace",
    "current_trace_headers",
    "current_trace_ids",
    "instrument_libraries",
    "records_spans",
    "sampled_flag",
    "untraced",
]

tracer = trace.get_tracer("kit")

# Attributes the instrumentations may set that can hold personal data: who called (an address, a browser),
# query strings, headers, SQL parameters and exception messages. Dropped from every span and span event.
_DROPPED_ATTRIBUTES = frozenset(
    {
        "client.address",
        "client.port",
        "net.peer.ip",
        "net.sock.peer.addr",
        "net.sock.peer.port",
        "http.client_ip",
        "http.user_agent",
        "user_agent.original",
        "url.query",
        "db.statement.parameters",
        "db.query.parameter",
        "exception.message",
    }
)
_DROPPED_PREFIXES = ("http.request.header.", "http.response.header.", "db.query.parameter.")
_URL_ATTRIBUTES = frozenset({"http.url", "url.full", "http.target", "url.path"})
_STACK_FRAME = re.compile(r'^\s*File ".*", line \d+, in \S+$')


def configure_tracing(service: str) -> TracerProvider:
    """A tracer provider named for the service; spans go over OTLP when OTEL_EXPORTER_OTLP_* says where.

    Everything else comes from the standard variables too: OTEL_SERVICE_NAME (else `service`),
    OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS and so on.
    With no exporter (and no OTEL_TRACES_SAMPLER) spans are not recorded, since nobody would read them: building
    them cost about a tenth of a busy service's CPU. Trace and span ids are still made and carried in headers, for
    the logs, the timeline and the services downstream (which, told "not sampled", do not record them either).
    """
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=span_sampler(os.environ))
    if exports_traces(os.environ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(PrivacyFilter(BatchSpanProcessor(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)
    instrument_libraries()
    return provider


def span_sampler(environ: Mapping[str, str]) -> Sampler | None:
    """None (the SDK's choice from OTEL_TRACES_SAMPLER) when spans are exported; else record none of them."""
    if records_spans(environ):
        return None
    return ParentBased(ALWAYS_OFF)


def records_spans(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process records spans at all: an exporter is named, or a sampler is (for a test's own)."""
    return exports_traces(environ) or "OTEL_TRACES_SAMPLER" in environ


def sampled_flag(environ: Mapping[str, str] = os.environ) -> str:
    """The W3C trace flags for a trace this process resumes from stored ids: sampled only when it records spans.

    A stored trace id carries no sampling decision; claiming "sampled" without an exporter would make every
    service downstream record spans that nobody reads (ParentBased honours the flag).
    """
    return "01" if records_spans(environ) else "00"


def exports_traces(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables name somewhere to send spans to."""
    exporter_wanted = environ.get("OTEL_TRACES_EXPORTER", "otlp") == "otlp"
    return exporter_wanted and any(
        k in environ for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def instrument_libraries(environ: Mapping[str, str] = os.environ) -> None:
    """Spans for every PostgreSQL statement (the SQL text, never its parameters) and every outgoing HTTP call.

    Outgoing HTTP calls are always instrumented: that carries the trace context to intake and to the agencies.
    PostgreSQL statements only when spans are recorded: their spans are leaves, carry nothing anywhere, and
    making one per statement cost a tenth of a busy service's CPU (py-spy under `./dev bench`, issue #15).
    """
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    asyncpg_instrumentor = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
    if records_spans(environ) and not asyncpg_instrumentor.is_instrumented_by_opentelemetry:
        asyncpg_instrumentor.instrument()
    if not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        HTTPXClientInstrumentor().instrument()
    if not AioHttpClientInstrumentor().is_instrumented_by_opentelemetry:  # the gateway's webhooks
        AioHttpClientInstrumentor().instrument()


def current_trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), to store with an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str]) -> context.Context:
    """A fresh context holding only the trace that `headers` carry (nothing of the caller's context)."""
    return propagate.extract(dict(headers), context=context.Context())


def current_trace_ids() -> tuple[str | None, str | None]:
    """The current trace id and span id as hex, or (None, None) outside any trace."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None, None
    return format(span.trace_id, "032x"), format(span.span_id, "016x")


def annotate_span(**ids: object) -> None:
    """Put ids (never personal data) on the current span as `onestop.<name>`, so a case's spans can be found."""
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in ids.items():
            if value is not None:
                span.set_attribute(f"onestop.{name}", str(value))


@contextmanager
def continue_trace(headers: Mapping[str, str] | None, name: str) -> Iterator[Span]:
    """Run the block in a span of the trace that `headers` name (stored with a case's data), not the caller's.

    For work that arrives without the case's trace context (an agency's HTTP acknowledgement, say): the span
    joins the case's trace and links back to the request's own span. When the caller already is in that trace,
    or nothing was stored, it is a plain child span.
    """
    stored = context_from_headers(headers or {})
    stored_span = trace.get_current_span(stored).get_span_context()
    current = trace.get_current_span().get_span_context()
    if not stored_span.is_valid or (current.is_valid and current.trace_id == stored_span.trace_id):
        with tracer.start_as_current_span(name) as span:
            yield span
        return
    links = [Link(current, {"onestop.link": "request"})] if current.is_valid else []
    with tracer.start_as_current_span(name, context=stored, links=links) as span:
        yield span


@contextmanager
def untraced() -> Iterator[None]:
    """No instrumentation spans inside (polling loops, health checks): they would be noise with no case in them."""
    with suppress_instrumentation():
        yield


class PrivacyFilter(SpanProcessor):
    """Hands `inner` a copy of each finished span without attributes that can hold personal data.

    Exception events keep the exception's type and where it was raised, not its message (a database error or a
    validation error quotes the values it refused); URLs lose their query strings; status descriptions go.
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: sdk_trace.Span, parent_context: context.Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(redacted(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def redacted(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean(span.attributes),
        events=[Event(e.name, _clean(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _clean(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _clean(attributes: Attributes) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    # A request's path is what the client sent, anything at all (a malformed one may hold personal data): where
    # the route matched, its template (`/cases/{case_id}`) stands in for it.
    route = (attributes or {}).get("http.route")
    for key, value in (attributes or {}).items():
        if key in _DROPPED_ATTRIBUTES or key.startswith(_DROPPED_PREFIXES):
            continue
        if key in _URL_ATTRIBUTES and isinstance(value, str):
            value = _without_query(value, route if isinstance(route, str) else None)
        elif key == "exception.stacktrace" and isinstance(value, str):
            value = "\n".join(line for line in value.splitlines() if _STACK_FRAME.match(line))
        clean[key] = value
    return clean


def _without_query(url: str, route: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # no user:password either
    return urlunsplit((parts.scheme, netloc, route or parts.path, "", ""))

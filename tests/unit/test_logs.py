"""The one logger setup: JSON lines with the case's ids and the trace, never an exception's message."""

import json
import logging
from uuid import uuid4

from kit.logs import JsonFormatter, log_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

if not isinstance(trace.get_tracer_provider(), TracerProvider):
    trace.set_tracer_provider(TracerProvider())


def formatted(record_logger: logging.Logger, emit: object) -> dict[str, object]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    record_logger.addHandler(handler)
    try:
        emit()  # type: ignore[operator]
    finally:
        record_logger.removeHandler(handler)
    return dict(json.loads(JsonFormatter("unit").format(records[-1])))


def test_a_line_carries_the_case_ids_and_the_current_trace() -> None:
    log = logging.getLogger("unit.ids")
    log.setLevel(logging.INFO)
    case_id, referral_id = uuid4(), uuid4()
    with (
        trace.get_tracer("unit").start_as_current_span("work") as span,
        log_context(case_id=case_id, referral_id=referral_id, agency_id=None),
    ):
        line = formatted(log, lambda: log.info("delivered"))
    context = span.get_span_context()
    assert line["case_id"] == str(case_id) and line["referral_id"] == str(referral_id)
    assert "agency_id" not in line
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["service"] == "unit" and line["msg"] == "delivered"


def test_an_exception_is_logged_by_type_and_place_never_by_its_message() -> None:
    log = logging.getLogger("unit.errors")

    phone = "+82 10-" + "7777-3141"  # built, so the source line in the stack does not hold it

    def fail() -> None:
        try:
            raise ValueError(f"violates unique constraint: (victim_phone)=({phone})")
        except ValueError:
            log.exception("storing the case failed")

    line = formatted(log, fail)
    assert line["error"] == "ValueError"
    assert "test_logs.py" in str(line["stack"])
    assert "7777" not in json.dumps(line)


def test_outside_a_trace_and_a_case_a_line_has_neither() -> None:
    log = logging.getLogger("unit.plain")
    log.setLevel(logging.INFO)
    line = formatted(log, lambda: log.info("started"))
    assert "trace_id" not in line and "case_id" not in line


def test_the_services_log_level_holds_for_faststreams_lines_and_no_message_is_logged_unless_debugging() -> None:
    """FastStream logs "Received" and "Processed" for every message it hands a handler, at the broker's `log_level`
    through the broker's logger. They were written at LOG_LEVEL=WARNING all the same (FastStream sets its own logger
    to INFO): two JSON lines per message, about a tenth of a consumer's CPU under `./dev bench`."""
    from kit.logs import configure_logging
    from kit.messaging import make_broker

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level

    def per_message_lines_at(level: str) -> bool:
        configure_logging("unit", level)
        broker = make_broker("127.0.0.1:9", "unit-logs")
        return logging.getLogger("faststream.unit-logs").isEnabledFor(broker.config.logger.log_level)

    def faststream_warnings_at(level: str) -> bool:
        configure_logging("unit", level)
        return logging.getLogger("faststream.unit-logs").isEnabledFor(logging.INFO)

    try:
        assert not per_message_lines_at("WARNING")
        assert not per_message_lines_at("INFO"), "no line per message at INFO either: only when debugging"
        assert per_message_lines_at("DEBUG")
        assert not faststream_warnings_at("WARNING"), "FastStream's own INFO lines follow LOG_LEVEL"
        assert faststream_warnings_at("INFO")
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level

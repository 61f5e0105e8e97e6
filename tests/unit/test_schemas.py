"""Event contracts: the checked-in JSON Schema matches the models; bad records are rejected with a reason."""

import json
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator
from schemas.events import (
    CaseSubmitted,
    CaseSubmittedV1,
    EventRejected,
    ReferralDeclined,
    ReferralRequested,
    current_form,
    decode_event,
    encode_event,
)
from schemas.export import DEFAULT_DIR, exported, render

from tests.samples import sample_case


def test_checked_in_json_schemas_match_the_models() -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in DEFAULT_DIR.glob("*.json")}
    expected = {name: render(schema) for name, schema in exported().items()}
    assert set(on_disk) == set(expected), "run `uv run python -m schemas.export` and commit schemas/json"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name} drifted from the models: run `uv run python -m schemas.export`"


def test_an_event_round_trips_and_its_wire_form_satisfies_the_exported_schema() -> None:
    event = CaseSubmitted(case_id=uuid4(), producer="intake", case=sample_case().facts())
    wire = encode_event(event)
    assert decode_event(wire) == event
    schema = json.loads((DEFAULT_DIR / "case.submitted.v2.schema.json").read_text())
    Draft202012Validator(schema).validate(json.loads(wire))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (None, "empty_record"),
        (b'{"type": "case.submitted", "version": 99, "case_id": "x"}', "unknown_event"),
        (b'{"type": "no.such.event", "version": 1}', "unknown_event"),
    ],
)
def test_records_that_are_not_known_events_are_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventRejected) as rejected:
        decode_event(raw)
    assert rejected.value.reason == reason


def test_an_invalid_event_names_the_field_and_never_echoes_its_value() -> None:
    event = CaseSubmitted(case_id=uuid4(), producer="intake", case=sample_case().facts())
    body = json.loads(encode_event(event))
    body["case"]["language"] = "SECRET-LANGUAGE"
    with pytest.raises(EventRejected) as rejected:
        decode_event(json.dumps(body).encode())
    assert rejected.value.reason == "invalid_event"
    assert "case.language" in rejected.value.detail
    assert "SECRET" not in str(rejected.value)


def test_a_consumer_can_refuse_events_that_do_not_belong_on_its_topic() -> None:
    declined = ReferralDeclined(
        case_id=uuid4(), producer="notify", referral_id=uuid4(), agency_id="police", reason="no_capacity"
    )
    with pytest.raises(EventRejected) as rejected:
        decode_event(encode_event(declined), accepts=(ReferralRequested,))
    assert rejected.value.reason == "unexpected_event"


def test_a_case_submitted_carries_which_personal_items_exist_never_their_values() -> None:
    case = sample_case()
    wire = encode_event(CaseSubmitted(case_id=uuid4(), producer="intake", case=case.facts()))
    for value in case.personal_values().values():
        assert value.encode() not in wire
    assert json.loads(wire)["case"]["personal_items"] == case.personal_items()


def test_an_old_case_submitted_still_decodes_and_upgrades_without_its_personal_values() -> None:
    case = sample_case()
    old = CaseSubmittedV1(case_id=uuid4(), producer="intake", case=case)
    upgraded = current_form(decode_event(encode_event(old)))  # type: ignore[arg-type]
    assert upgraded.version == 2 and upgraded.event_id == old.event_id
    assert upgraded.case == case.facts()
    assert case.victim.name.encode() not in encode_event(upgraded)

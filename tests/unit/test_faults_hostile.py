"""The fault-injection tool's pure parts for the hostile-agency and outage scenarios: the moves a hostile agency
makes and what each must come to, how answers are judged, CPU read from /proc, delivery latency by window, and the
dead letters matched by where they came from."""

import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from faults import cpu, hostile, timing
from faults.load import Load
from faults.observe import Record, TopicTail
from faults.outcome import Outcome, count
from faults.scenarios import SCENARIOS, Context, Options, Poison, scenario_named
from notify.context import AGENCY_ANSWERS
from notify.domain import Change, change
from schemas.events import EventRejected, decode_event
from schemas.vocab import ReferralState

TARGET = hostile.Target(
    agency_id="police",
    referral_id=str(uuid.uuid4()),
    case_id=str(uuid.uuid4()),
    other_agency_id="legal-aid",
    other_referral_id=str(uuid.uuid4()),
    other_case_id=str(uuid.uuid4()),
)

# What an agency's answer asks notify for, by its path or its event type.
TARGET_STATE = {
    "accept": ReferralState.accepted,
    "decline": ReferralState.declined,
    "start": ReferralState.in_progress,
    "complete": ReferralState.completed,
    "referral.accepted": ReferralState.accepted,
    "referral.declined": ReferralState.declined,
    "referral.in_progress": ReferralState.in_progress,
    "referral.completed": ReferralState.completed,
}


def test_the_new_scenarios_are_numbered_after_the_first_six_and_found_by_name_or_number() -> None:
    assert [s.number for s in SCENARIOS] == list(range(1, len(SCENARIOS) + 1))
    assert scenario_named("hostile").number == 7
    assert scenario_named("8").name == "intake-outage"
    assert scenario_named("agency-outage").number == 9


@pytest.mark.parametrize("huge", [False, True])
def test_every_bad_kafka_record_is_refused_by_the_contracts_with_the_reason_expected(huge: bool) -> None:
    for move in hostile.probes_over_kafka(TARGET, huge=huge):
        assert move.expect == "dead-letter"
        if set(move.reasons) & {"wrong_agency", "wrong_case"}:
            # A valid answer by the contracts: notify refuses it (another agency's referral, another case).
            event = decode_event(move.value, AGENCY_ANSWERS)
            named = (str(getattr(event, "referral_id", "")), getattr(event, "agency_id", ""), str(event.case_id))
            assert named != (TARGET.referral_id, "police", TARGET.case_id), move.label
            continue
        with pytest.raises(EventRejected) as rejected:
            decode_event(move.value, AGENCY_ANSWERS)
        assert rejected.value.reason in move.reasons, move.label
    labels = [m.label for m in hostile.probes_over_kafka(TARGET, huge=huge)]
    assert ("huge note" in labels) is huge
    assert len(labels) == len(set(labels))


def test_the_huge_kafka_record_stays_under_the_brokers_limit_with_room_for_the_dlq_headers() -> None:
    (huge,) = [m for m in hostile.probes_over_kafka(TARGET, huge=True) if m.label == "huge note"]
    assert huge.value is not None and 512 * 1024 < len(huge.value) < 1_000_000


def test_the_kafka_answers_follow_notifys_state_machine() -> None:
    """Each answer's expectation is what notify's rules make of it, in the order sent, from a delivered referral."""
    state = ReferralState.delivered
    applied_ids = set()
    for move in hostile.answers_over_kafka(TARGET):
        event = decode_event(move.value, AGENCY_ANSWERS)  # every one is valid by the contracts
        assert str(event.referral_id) == TARGET.referral_id and str(event.case_id) == TARGET.case_id  # type: ignore[attr-defined]
        outcome = change(state, TARGET_STATE[event.type])
        if move.expect == "applied":
            assert outcome is Change.applied, move.label
            assert move.event_id == str(event.event_id)
            applied_ids.add(move.event_id)
            state = TARGET_STATE[event.type]
        elif move.expect == "absorbed":
            # A verbatim replay is dropped by its event id; a new id asking for the state it is in changes nothing.
            assert str(event.event_id) in applied_ids or outcome is Change.duplicate, move.label
        else:
            assert outcome in (Change.refused, Change.stale), move.label
            assert move.reasons == ("transition_refused",)
    assert state is ReferralState.completed


def test_the_good_answers_allow_control_characters_but_never_nul() -> None:
    assert "\x00" not in hostile.CONTROL_NOTE and "\x1b" in hostile.CONTROL_NOTE and "\r\n" in hostile.CONTROL_NOTE
    assert len(hostile.CONTROL_NOTE) <= hostile.NOTE_MAX
    accepted = hostile.answers_over_kafka(TARGET)[2]
    assert decode_event(accepted.value, AGENCY_ANSWERS).note == hostile.CONTROL_NOTE  # type: ignore[attr-defined]


def test_the_http_answers_follow_notifys_state_machine() -> None:
    state = ReferralState.delivered
    for move in hostile.answers_over_http(TARGET):
        outcome = change(state, TARGET_STATE[move.path.rsplit("/", 1)[-1]])
        if move.expect == "applied":
            assert outcome is Change.applied, move.label
            state = TARGET_STATE[move.path.rsplit("/", 1)[-1]]
        elif move.expect == "replay":
            assert outcome is Change.duplicate, move.label
        else:
            assert outcome in (Change.refused, Change.stale) and move.statuses == (409,), move.label
    assert state is ReferralState.completed


def test_the_http_probes_are_all_bad_requests_and_only_the_huge_ones_exceed_the_body_limit() -> None:
    small = hostile.probes_over_http(TARGET, huge=False)
    large = hostile.probes_over_http(TARGET, huge=True)
    assert all(m.expect == "refused" and m.statuses and all(400 <= s < 500 for s in m.statuses) for m in large)
    assert all(len(m.body or b"") < hostile.HTTP_BODY_MAX for m in small)
    extra = [m for m in large if m.label not in {s.label for s in small}]
    assert {m.statuses for m in extra} == {(413,)} and any(m.chunked for m in extra)
    assert all(len(m.body or b"") > hostile.HTTP_BODY_MAX for m in extra)
    others = [m for m in small if TARGET.other_referral_id in m.path]
    assert others and all(m.must_status and m.statuses == (404,) for m in others)


def _result(
    expect: hostile.HttpExpect, status: int | None, changed: bool | None = None, **kw: Any
) -> hostile.HttpResult:
    move = hostile.HttpMove("m", "/referrals/x/accept", b"{}", expect, **kw)
    return hostile.HttpResult(move, "x", status, changed, None if status else "ReadError")


@pytest.mark.parametrize(
    ("result", "wrong"),
    [
        (_result("refused", 422), False),
        (_result("refused", 409), False),
        (_result("refused", 500), True),
        (_result("refused", None), True),
        (_result("refused", 200, True), True),
        (_result("refused", 409, statuses=(404,), must_status=True), True),
        (_result("refused", 404, statuses=(404,), must_status=True), False),
        (_result("replay", 200, False), False),
        (_result("replay", 200, True), True),
        (_result("replay", 409), True),
        (_result("applied", 200, True), False),
        (_result("applied", 200, False), True),
        (_result("applied", 503), True),
    ],
)
def test_http_answers_are_judged_by_what_the_move_expects(result: hostile.HttpResult, wrong: bool) -> None:
    assert (hostile.judge_http(result) is not None) is wrong


def _event(kind: str, referral: str, event_id: str | None = None) -> dict[str, Any]:
    return {"type": kind, "referral_id": referral, "event_id": event_id or str(uuid.uuid4())}


def test_events_show_good_answers_applied_once_and_bad_ones_changing_nothing() -> None:
    good, short, extra, other, meddled = "good", "short", "extra", "other", "meddled"
    expected = {r: dict(hostile.SCRIPTED_EVENTS) for r in (good, short, extra)}
    untouched = {other: {"referral.accepted": 1}, meddled: {"referral.accepted": 1}}
    same = str(uuid.uuid4())
    events = [
        *(_event(t, good) for t in hostile.SCRIPTED_EVENTS),
        _event("referral.accepted", good, same),
        _event("referral.accepted", good, same),  # one event on the topic twice: one answer
        _event("referral.accepted", short),
        *(_event(t, extra) for t in hostile.SCRIPTED_EVENTS),
        _event("referral.declined", extra),
        _event("referral.delivered", other),  # not an answer
        _event("referral.accepted", other),
        _event("referral.accepted", meddled),
        _event("referral.completed", meddled),
    ]
    judged = hostile.judge_events(expected, untouched, events)
    assert judged == {"not_applied": ["short"], "changed": ["extra", "good", "meddled"]}
    # the good one is "changed" only because of its second accepted event above (another event id)
    assert hostile.judge_events({good: {"referral.accepted": 1}}, {}, events[3:5]) == {"not_applied": [], "changed": []}


def test_stat_lines_give_the_process_group_and_the_ticks_even_with_odd_command_names() -> None:
    line = "4242 (python -m (notify) x) S 1 4240 4240 0 -1 4194560 100 0 0 0 750 250 3 4 20 0 9 0 100 1 1"
    assert cpu.parse_stat(line) == (4240, 1000)
    assert cpu.percent(200, 10.0, 100) == 20.0
    assert cpu.percent(5, 0.0, 100) == 0.0


def test_a_groups_ticks_add_up_every_process_in_it(tmp_path: Path) -> None:
    def stat(pid: int, group: int, utime: int, stime: int) -> None:
        (tmp_path / str(pid)).mkdir()
        fields = ["S", "1", str(group), *["0"] * 8, str(utime), str(stime), "0", "0"]
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (svc) {' '.join(fields)}\n")

    stat(100, 100, 30, 10)
    stat(101, 100, 5, 5)  # a child in the same group
    stat(200, 200, 1000, 0)  # another service
    (tmp_path / "self").mkdir()
    assert cpu.group_ticks(100, tmp_path) == 50
    assert cpu.group_ticks(300, tmp_path) is None


def _routed(case: str, referrals: list[tuple[str, str]], at: str) -> dict[str, Any]:
    return {
        "type": "case.routed",
        "case_id": case,
        "occurred_at": at,
        "referrals": [{"referral_id": r, "agency_id": a} for r, a in referrals],
    }


def _done(kind: str, case: str, referral: str, agency: str, at: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "case_id": case, "referral_id": referral, "agency_id": agency, "occurred_at": at, **more}


def test_delivery_latency_is_from_routing_to_the_first_delivery_by_the_window_it_was_routed_in() -> None:
    events = [
        _routed("c1", [("r1", "police"), ("r2", "legal-aid")], "2026-01-01T00:00:00+00:00"),
        _done("referral.delivered", "c1", "r1", "police", "2026-01-01T00:00:01+00:00"),
        _done("referral.delivered", "c1", "r1", "police", "2026-01-01T00:00:09+00:00"),  # a redelivery
        _done("referral.delivered", "c1", "r2", "legal-aid", "2026-01-01T00:00:02.500000+00:00"),
        _routed("c2", [("r3", "police")], "2026-01-01T00:01:00+00:00"),
        _done("referral.failed", "c2", "r3", "police", "2026-01-01T00:03:00+00:00", attempts=6, reason="503"),
        _routed("c3", [("r4", "police")], "2026-01-01T00:10:00+00:00"),
        _done("referral.delivered", "c3", "r4", "police", "2026-01-01T00:10:00.200000+00:00"),
        _routed("elsewhere", [("r9", "police")], "2026-01-01T00:00:00+00:00"),
    ]
    found = timing.referrals(events, {"c1", "c2", "c3"})
    assert set(found) == {"r1", "r2", "r3", "r4"}
    assert found["r1"].latency == 1.0 and found["r2"].latency == 2.5
    assert found["r3"].latency is None and found["r3"].failed == [
        {"agency_id": "police", "attempts": 6, "reason": "503", "event_id": None}
    ]
    start = timing._seconds("2026-01-01T00:00:30+00:00")
    end = timing._seconds("2026-01-01T00:05:00+00:00")
    windows = timing.latency_by_window(found.values(), start, end)
    assert windows["before"] == {"n": 2, "p50": 1.0, "p95": 2.5, "max": 2.5}
    assert windows["during"]["n"] == 0 and windows["after"]["n"] == 1
    assert timing.latency_by_window(found.values(), start, end, exclude={"police"})["before"]["n"] == 1
    assert timing.latency_by_window(found.values(), start, end, agencies={"police"})["before"]["n"] == 1


def test_latency_is_comparable_within_the_stated_margins_and_undecided_on_too_few_referrals() -> None:
    before = timing.summary([0.1] * 20)
    assert before == {"n": 20, "p50": 0.1, "p95": 0.1, "max": 0.1}
    assert timing.comparable(before, timing.summary([0.3] * 19 + [1.2])) is True
    assert timing.comparable(before, timing.summary([0.8] * 20)) is False  # median 0.8 > 2 × 0.1 + 0.5
    assert timing.comparable(before, timing.summary([0.1] * 18 + [30.0] * 2)) is False  # p95 30 s
    assert timing.comparable(before, timing.summary([0.1] * 4)) is None


class _Tail:
    def __init__(self, records: dict[str, list[Record]]) -> None:
        self.records = records

    def events(self, topic: str) -> list[Record]:
        return [r for r in self.records.get(topic, []) if r.event is not None]

    def dead_letters(self) -> list[Record]:
        return [r for t, rs in self.records.items() if t.endswith(".dlq") for r in rs]


def _dead_letter(offset: int, source: tuple[str, int, int], reason: str, key: bytes = b"case") -> Record:
    headers = (
        ("dlq.reason", reason.encode()),
        ("dlq.source.topic", source[0].encode()),
        ("dlq.source.partition", str(source[1]).encode()),
        ("dlq.source.offset", str(source[2]).encode()),
        ("dlq.consumer.group", b"notify.acks"),
    )
    return Record("acks.police.dlq", 0, offset, key, headers, 10, None)


def test_dead_letters_are_matched_by_where_they_came_from_and_their_reason_checked() -> None:
    """Records the scenario wrote under a real key (a case id) are found by their source offset, not their key; one
    that lands with another reason is a problem; the scenario's own replays are not counted as real events lost."""
    load = Load("http://intake.test", ["police"], 0, key_prefix="t")
    poison = [
        Poison(
            "h:0", "acks.police", 0, "hostile: malformed", 5, ("notify.acks",), offset=10, reasons=("invalid_json",)
        ),
        Poison("h:1", "acks.police", 0, "hostile: foreign", 5, ("notify.acks",), offset=11, reasons=("wrong_agency",)),
        Poison("h:2", "acks.police", 1, "hostile: nul", 5, ("notify.acks",), offset=3, reasons=("invalid_event",)),
    ]
    tail = _Tail(
        {
            "acks.police.dlq": [
                _dead_letter(0, ("acks.police", 0, 10), "invalid_json"),
                _dead_letter(1, ("acks.police", 0, 11), "transition_refused"),
                _dead_letter(2, ("acks.police", 0, 12), "transition_refused"),  # the scenario's own replay
                _dead_letter(3, ("acks.police", 0, 99), "handler_failed"),  # a real event
            ]
        }
    )
    ctx = Context(
        stack=cast(Any, None),
        load=load,
        tail=cast(TopicTail, tail),
        options=Options(),
        rng=random.Random(1),
        poison=poison,
        checks={"bad HTTP requests not refused with 4xx": 0, "services above 20% CPU": 1},
        own_records={("acks.police", 0, 10), ("acks.police", 0, 11), ("acks.police", 0, 12)},
    )
    outcome = Outcome("hostile", "t")
    count(ctx, outcome, cast(TopicTail, tail), [], [], set())
    assert outcome.poison_expected_in_dlq == 3 and outcome.poison_in_dlq == 2
    assert outcome.poison_missing == ["acks.police/1 hostile: nul by notify.acks"]
    assert outcome.poison_wrong_reason == ["acks.police/0@11 hostile: foreign: transition_refused (not wrong_agency)"]
    assert outcome.dead_lettered_events == 1
    assert outcome.checks == ctx.checks
    assert "services above 20% CPU: 1" in outcome.problems
    assert not any(p.startswith("bad HTTP requests") for p in outcome.problems)
    assert json.loads(json.dumps(outcome.as_json(), default=str))["passed"] is False


def test_a_failure_the_scenario_allows_is_not_counted_lost() -> None:
    load = Load("http://intake.test", ["police"], 1, key_prefix="t")
    load.submissions[0].case_ids.append("c1")
    routed = Record(
        "referral.events",
        0,
        0,
        b"c1",
        (),
        10,
        _routed("c1", [("r1", "police"), ("r2", "legal-aid")], "2026-01-01T00:00:00+00:00") | {"event_id": "e1"},
    )
    tail = _Tail({"referral.events": [routed]})
    taken = [{"case_id": "c1", "agency_id": "legal-aid", "decision": "accept", "duplicates": 0}]
    ctx = Context(cast(Any, None), load, cast(TopicTail, tail), Options(), random.Random(1), excused={("c1", "police")})
    outcome = Outcome("agency-outage", "t")
    count(ctx, outcome, cast(TopicTail, tail), taken, [], set())
    assert outcome.lost == 0 and outcome.failures_allowed == 1 and outcome.delivered_exactly_once == 1
    ctx.excused.clear()
    count(ctx, outcome, cast(TopicTail, tail), taken, [], set())
    assert outcome.lost == 1


async def test_a_script_waiting_for_another_agencys_answer_looks_for_one_itself() -> None:
    """Every referral of the agency can be taken before any other agency has answered (the simulator accepts 5 s
    after a delivery); `take_new` is then called no more, and a script waiting for a foreign referral to aim at
    waited in vain until its deadline (180 s, four scripts at a time: CI's short hostile run hit its timeout)."""
    case = str(uuid.uuid4())
    looks: list[str] = []

    def simulator(request: httpx.Request) -> httpx.Response:
        agency = request.url.path.split("/")[2]
        looks.append(agency)
        answered = len(looks) > 1  # the other agency answers after the first look
        ack = {"status": "sent"} if answered else None
        return httpx.Response(200, json={"referrals": [{"referral_id": f"r-{agency}", "case_id": case, "ack": ack}]})

    player = hostile.HostileAgency(
        "police",
        notify_url="http://notify",
        simulator_url="http://simulator",
        bootstrap_servers="",
        token="t",
        scripted=1,
        rng=random.Random(3),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(simulator)) as client:
        await player._find_others(client, {case}, ["legal-aid"])  # what `take_new` does, before anyone answered
        assert player._others == []
        player._looking = (client, {case}, ["legal-aid"])
        other = await asyncio.wait_for(player._other(time.monotonic() + 5), 10)
    assert other == ("legal-aid", "r-legal-aid", case) and player._others == [other]

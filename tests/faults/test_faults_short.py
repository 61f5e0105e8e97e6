"""Short fault injection on the real stack: no acknowledged case lost, no agency acting twice, poison dead-lettered.

The full runs (thousands of cases, all nine scenarios) are `./dev faults`; these are scenarios 1, 2, 5 and 6 with a
few hundred cases, the hostile agency (7) with six referrals scripted, and the intake and agency outages (8, 9)
shortened to 12 seconds, read only from the outside like the full ones.
"""

import asyncio
import time
from dataclasses import replace

import pytest
from devstack.stack import Stack
from faults import observe
from faults.load import case_body
from faults.outcome import table
from faults.runner import Observer, run_scenario
from faults.scenarios import (
    AgencyOutage,
    HostileAgencyAnswers,
    IntakeOutage,
    KillServices,
    PoisonRecords,
    Replay,
    RestartPostgres,
    Scenario,
)

from tests.faults.conftest import SHORT

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(420)]


async def test_intake_answers_503_while_postgres_is_down_and_keeps_every_case_it_acknowledged(
    fault_stack: Stack, observer: Observer
) -> None:
    intake = fault_stack.url("intake")
    agencies = await observer.agencies()
    client = observer.client
    before = [case_body(i, f"pg-before-{i}", agencies) for i in range(5)]
    acknowledged = []
    for i, body in enumerate(before):
        answer = await client.post(f"{intake}/cases", json=body, headers={"Idempotency-Key": f"pg-before-{i}"})
        assert answer.status_code == 201, answer.text
        acknowledged.append(answer.json()["case_id"])

    await asyncio.to_thread(fault_stack.postgres.kill)  # immediate stop: no checkpoint, as a crash
    try:
        during = [case_body(i, f"pg-during-{i}", agencies) for i in range(5)]
        for i, body in enumerate(during):
            answer = await client.post(f"{intake}/cases", json=body, headers={"Idempotency-Key": f"pg-during-{i}"})
            assert answer.status_code == 503, f"intake answered {answer.status_code} with its database down"
            assert answer.headers["content-type"] == "application/problem+json"
            assert "Retry-After" in answer.headers
    finally:
        await asyncio.to_thread(fault_stack.postgres.start)

    # The same keys again once PostgreSQL is back: stored now, each once.
    async def submit_again(i: int) -> str | None:
        answer = await client.post(f"{intake}/cases", json=during[i], headers={"Idempotency-Key": f"pg-during-{i}"})
        return str(answer.json()["case_id"]) if answer.status_code == 201 else None

    for i in range(len(during)):
        deadline = time.monotonic() + 60
        while (case_id := await submit_again(i)) is None:
            assert time.monotonic() < deadline, "intake did not take cases again after PostgreSQL came back"
            await asyncio.sleep(0.5)
        acknowledged.append(case_id)

    # Every case acknowledged, before or after the crash, is still there and reaches its agencies.
    for case_id in acknowledged:
        assert (await client.get(f"{intake}/cases/{case_id}")).status_code == 200
    deadline = time.monotonic() + 120
    while True:
        record = await observe.simulator_record(client, fault_stack.url("agency-simulator"))
        reached = {str(e["case_id"]) for e in record if e.get("decision") is not None}
        missing = set(acknowledged) - reached
        if not missing:
            break
        assert time.monotonic() < deadline, f"{len(missing)} acknowledged case(s) never reached an agency"
        await asyncio.sleep(1)


# Replay first: it resets every consumer group to the start, so it re-reads least while the topics are short.
@pytest.mark.parametrize(
    "scenario", [Replay(), KillServices(), RestartPostgres(), PoisonRecords()], ids=lambda s: s.name
)
async def test_a_short_fault_scenario_loses_nothing_and_duplicates_nothing(
    scenario: Scenario, fault_stack: Stack, observer: Observer
) -> None:
    settings = SHORT
    if isinstance(scenario, Replay):  # one reset of every group (each restarts three services) is enough here
        settings = replace(SHORT, options=replace(SHORT.options, min_faults=1, max_faults=1))
    outcome = await run_scenario(scenario, fault_stack, observer, settings, print)
    print(table([outcome]), *outcome.fault_log, sep="\n")  # shown when the test fails (or with -s)

    assert outcome.acknowledged > 0 and outcome.faults > 0
    assert outcome.lost == 0 and outcome.cases_not_routed == 0, outcome.samples
    assert outcome.duplicated_side_effects == 0, outcome.samples["duplicated_side_effects"]
    assert outcome.delivered_exactly_once == outcome.referrals_expected
    assert outcome.passed, (outcome.problems, outcome.samples)
    if isinstance(scenario, PoisonRecords):
        assert outcome.poison_sent > 0 and outcome.poison_in_dlq == outcome.poison_expected_in_dlq, (
            outcome.poison_missing
        )


async def test_a_hostile_agency_changes_nothing_and_every_bad_record_is_parked(
    fault_stack: Stack, observer: Observer
) -> None:
    # It waits for every referral to the agency to be taken at most 240 s (a minute here, usually), well inside the
    # test's timeout: a stall then fails with the scenario's own account of what was missing, not a bare timeout.
    options = replace(SHORT.options, hostile_referrals=6, cpu_window=10.0, hostile_wait=240.0)
    settings = replace(SHORT, options=options)
    outcome = await run_scenario(HostileAgencyAnswers(), fault_stack, observer, settings, print)
    print(table([outcome]))

    assert "hostile_gave_up_waiting_s" not in outcome.notes, (outcome.notes, outcome.samples)
    assert outcome.notes["hostile"]["referrals_scripted"] == 6 and outcome.notes["hostile"]["kafka_records"] > 100
    assert outcome.poison_sent > 0 and outcome.poison_in_dlq == outcome.poison_expected_in_dlq, outcome.poison_missing
    assert not outcome.poison_wrong_reason
    assert outcome.lost == 0 and outcome.duplicated_side_effects == 0, outcome.samples
    assert not outcome.notes["http_wrong_answers"], outcome.notes["http_wrong_answers"]
    assert outcome.passed, (outcome.problems, outcome.notes["samples"])


@pytest.mark.parametrize("scenario", [IntakeOutage(), AgencyOutage()], ids=lambda s: s.name)
async def test_an_outage_fails_no_referral_and_holds_up_no_other_agency(
    scenario: Scenario, fault_stack: Stack, observer: Observer
) -> None:
    options = replace(SHORT.options, outage_start=4.0, outage_seconds=12.0)
    outcome = await run_scenario(scenario, fault_stack, observer, replace(SHORT, rate=5.0, options=options), print)
    print(table([outcome]), *outcome.fault_log, sep="\n")

    assert outcome.faults == 1 and outcome.acknowledged == outcome.submitted
    assert outcome.lost == 0 and outcome.failures_allowed == 0 and outcome.duplicated_side_effects == 0
    assert outcome.delivered_exactly_once == outcome.referrals_expected
    assert not any(outcome.checks.values()), outcome.checks
    assert outcome.passed, (outcome.problems, outcome.samples)

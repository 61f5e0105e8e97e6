"""Who may do what on the secured broker (devstack.kafka_security): the rules themselves, without a broker."""

from pathlib import Path

from devstack.kafka_security import (
    KafkaSecurity,
    Operation,
    Pattern,
    Resource,
    access_rules,
    agency_principal,
    catalogue_agencies,
)

ROOT = Path(__file__).resolve().parents[2]


def readable_topics(principal: str, agencies: list[str], native: list[str]) -> set[str]:
    return {
        r.name
        for r in access_rules(agencies, native)
        if r.principal == principal and r.resource is Resource.TOPIC and r.operation is Operation.READ
    }


def test_a_kafka_native_agency_reads_only_its_own_referrals() -> None:
    agencies, native = ["police", "agency-a", "agency-b"], ["agency-a", "agency-b"]
    assert readable_topics(agency_principal("agency-a"), agencies, native) == {"referrals.agency-a"}
    assert readable_topics(agency_principal("agency-b"), agencies, native) == {"referrals.agency-b"}
    writes = {
        r.name
        for r in access_rules(agencies, native)
        if r.principal == agency_principal("agency-b") and r.operation is Operation.WRITE
    }
    assert writes == {"acks.agency-b"}


def test_only_the_gateway_and_the_agency_read_an_agency_topic() -> None:
    rules = access_rules(["police", "agency-a"], ["agency-a"])
    readers = {r.principal for r in rules if r.name == "referrals.agency-a" and r.operation is Operation.READ}
    assert readers == {"agency-gateway", agency_principal("agency-a")}
    for service in ("intake", "routing", "notify"):
        assert "referrals.police" not in readable_topics(service, ["police"], [])


def test_intake_alone_announces_a_withdrawn_consent_and_notify_and_routing_read_it() -> None:
    rules = [r for r in access_rules(["police"], []) if r.resource is Resource.TOPIC and r.name == "consent.withdrawn"]
    assert {r.principal for r in rules if r.operation is Operation.WRITE} == {"intake"}
    assert {r.principal for r in rules if r.operation is Operation.READ} == {"notify", "routing"}


def test_groups_are_granted_by_the_principal_s_own_prefix_and_topics_only_by_name() -> None:
    for rule in access_rules(["police", "agency-a"], ["agency-a"]):
        if rule.resource is Resource.GROUP:
            assert rule.pattern is Pattern.PREFIXED
            assert rule.name.startswith(f"{rule.principal}.") or rule.name == "agency.agency-a."
        else:
            assert rule.pattern is Pattern.LITERAL and "*" not in rule.name


def test_passwords_are_made_once_per_state_folder_and_kept_owner_only(tmp_path: Path) -> None:
    first = KafkaSecurity(tmp_path, ["agency-a"], ["agency-a"])
    again = KafkaSecurity(tmp_path, ["agency-a"], ["agency-a"])
    assert first.credentials("intake") == again.credentials("intake")
    assert first.credentials("intake").password != first.credentials("routing").password
    assert first.path.stat().st_mode & 0o077 == 0
    assert KafkaSecurity(tmp_path / "other").credentials("intake") != first.credentials("intake")


def test_the_real_catalogue_is_read_for_agencies() -> None:
    every, native = catalogue_agencies(ROOT / "catalogue" / "agencies")
    assert "police" in every and set(native) <= set(every)


def test_every_service_that_holds_a_case_may_read_its_erasure() -> None:
    rules = access_rules(["police"], [])
    for service in ("routing", "agency-gateway", "notify"):
        assert "case.erased" in readable_topics(service, ["police"], [])
        groups = {r.name for r in rules if r.principal == service and r.resource is Resource.GROUP}
        assert any(f"{service}.case-erased".startswith(prefix) for prefix in groups)
    assert "case.erased" not in readable_topics("intake", ["police"], [])


def test_the_gateway_alone_reads_an_agency_s_dlq_and_may_put_its_letters_back() -> None:
    rules = access_rules(["police"], [])
    readers = {r.principal for r in rules if r.name == "referrals.police.dlq" and r.operation is Operation.READ}
    assert readers == {"agency-gateway"}  # an operator's replay through the gateway's API
    writers = {r.principal for r in rules if r.name == "referrals.police" and r.operation is Operation.WRITE}
    assert "agency-gateway" in writers

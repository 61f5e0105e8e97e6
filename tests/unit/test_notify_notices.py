"""Who is told what: caseworkers on decline, breach, failure and completion; victims only as their rules allow."""

from datetime import UTC, datetime, time
from uuid import uuid4

import pytest
from notify.notices import (
    News,
    Recipient,
    ReferralNews,
    VictimReach,
    caseworker_notice,
    next_safe_moment,
    victim_notice,
    victim_reach,
)
from pydantic import ValidationError
from schemas.events import CaseDetails, ContactRules, SafeHours, VictimContact

from tests.samples import sample_case_json

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 in Seoul
VICTIM = {"name": "Kim Example", "phone": "+82 10-0000-0000", "email": "victim@example.org"}
EVENING = SafeHours(start=time(18, 0), end=time(21, 0), timezone="Asia/Seoul")


def news(what: News, **extra: object) -> ReferralNews:
    return ReferralNews(
        what=what,
        case_id=uuid4(),
        referral_id=uuid4(),
        agency_id="police",
        agency_name="Seoul Metropolitan Police (서울경찰청)",
        **extra,
    )


def reach(**rules: object) -> VictimReach:
    return victim_reach(ContactRules.model_validate(rules))


def test_a_victim_marked_do_not_contact_is_told_nothing_even_with_a_safe_channel() -> None:
    notice = victim_notice(news(News.accepted), reach(do_not_contact=True, safe_channel="email"), NOW)
    assert notice is not None and notice.address is None and notice.withheld == "do_not_contact"
    assert notice.subject == notice.body == ""


def test_without_contact_rules_or_a_safe_channel_the_victim_is_not_contacted() -> None:
    no_rules = victim_reach(None)
    assert no_rules == VictimReach(False, None, None)
    notice = victim_notice(news(News.accepted), no_rules, NOW)
    assert notice is not None and notice.address is None and notice.withheld == "no_safe_channel"
    assert victim_notice(news(News.accepted), reach(), NOW).withheld == "no_safe_channel"


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_only_the_safe_channel_is_kept_and_no_address(channel: str) -> None:
    kept = reach(safe_channel=channel)
    assert kept.channel == channel
    notice = victim_notice(news(News.accepted), kept, NOW)
    assert notice is not None and (notice.channel, notice.address, notice.not_before) == (channel, None, NOW)


def test_a_victims_message_reveals_nothing_about_the_case_the_crime_or_the_agency() -> None:
    notice = victim_notice(news(News.accepted), reach(safe_channel="sms"), NOW)
    assert notice is not None
    text = (notice.subject + notice.body).lower()
    for revealing in ("police", "경찰", "crime", "범죄", "victim", "피해", "referral", "legal", "assault"):
        assert revealing not in text


def test_victims_hear_only_good_news_caseworkers_the_rest() -> None:
    victim = reach(safe_channel="email")
    for what in (News.declined, News.deadline_breached, News.failed, News.completed):
        assert victim_notice(news(what), victim, NOW) is None
        assert caseworker_notice(news(what), "cw@centre.example", NOW, "http://notify/cases/x/status") is not None
    assert caseworker_notice(news(News.accepted), "cw@centre.example", NOW, "u") is None


def test_outside_safe_hours_the_message_waits_for_the_next_window() -> None:
    notice = victim_notice(news(News.accepted), reach(safe_channel="email", safe_hours=EVENING.model_dump()), NOW)
    assert notice is not None
    assert notice.not_before == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 18:00 in Seoul the same day


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),  # 19:00 KST: inside
        (datetime(2026, 3, 2, 12, 30, tzinfo=UTC), datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),  # 21:30 KST: tomorrow
        (datetime(2026, 3, 2, 12, 0, tzinfo=UTC), datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),  # 21:00 KST: end excluded
    ],
)
def test_next_safe_moment(now: datetime, expected: datetime) -> None:
    assert next_safe_moment(now, EVENING) == expected


def test_safe_hours_may_span_midnight() -> None:
    night = SafeHours(start=time(22, 0), end=time(6, 0), timezone="Asia/Seoul")
    assert next_safe_moment(datetime(2026, 3, 2, 14, 0, tzinfo=UTC), night) == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert next_safe_moment(datetime(2026, 3, 2, 20, 30, tzinfo=UTC), night) == datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    assert next_safe_moment(datetime(2026, 3, 2, 22, 0, tzinfo=UTC), night) == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)


def test_a_caseworkers_email_names_the_agency_and_what_happened_but_no_personal_data() -> None:
    about = news(News.declined, reason="no_capacity")
    notice = caseworker_notice(about, "cw@centre.example", NOW, f"http://notify/cases/{about.case_id}/status")
    assert notice is not None and notice.recipient is Recipient.caseworker and notice.address == "cw@centre.example"
    assert "declined" in notice.subject and "Seoul Metropolitan Police" in notice.subject
    assert "no_capacity" in notice.body and str(about.referral_id) in notice.body
    assert f"/cases/{about.case_id}/status" in notice.body
    for personal in ("Kim", "+82", "victim@example.org"):
        assert personal not in notice.subject + notice.body


def test_a_breach_tells_the_deadline_and_a_case_without_caseworker_is_recorded_as_such() -> None:
    deadline = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    notice = caseworker_notice(news(News.deadline_breached, deadline=deadline), "cw@centre.example", NOW, "u")
    assert notice is not None and "2026-03-02 11:00:00 UTC" in notice.body
    nobody = caseworker_notice(news(News.failed, reason="timeout"), None, NOW, "u")
    assert nobody is not None and nobody.address is None and nobody.withheld == "no_caseworker"


def test_contact_rules_and_caseworker_are_optional_and_validated_without_echoing_values() -> None:
    assert CaseDetails.model_validate(sample_case_json()).caseworker is None
    case = CaseDetails.model_validate(
        sample_case_json(
            caseworker={"id": "cw-17", "email": "cw17@centre.example"},
            victim={
                **VICTIM,
                "contact_rules": {"safe_channel": "sms", "safe_hours": {"start": "18:00", "end": "21:00"}},
            },
        )
    )
    assert case.caseworker is not None and case.victim.contact_rules is not None
    with pytest.raises(ValidationError) as no_email:
        VictimContact.model_validate({"name": "Kim Example", "contact_rules": {"safe_channel": "email"}})
    assert "no email is given" in str(no_email.value)
    with pytest.raises(ValidationError) as bad_zone:
        SafeHours.model_validate({"start": "18:00", "end": "21:00", "timezone": "Mars/Olympus"})
    assert "Mars/Olympus" not in str(bad_zone.value).split("input_value")[0]
    with pytest.raises(ValidationError):
        SafeHours(start=time(9, 0), end=time(9, 0))

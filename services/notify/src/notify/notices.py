"""Who is told what about a referral, through which channel and when, pure.

Caseworkers hear about declines, breached deadlines, failed deliveries and completions. Victims hear only through
the case's contact rules: never when marked do-not-contact, only on the safe channel they named, only within their
safe hours, and with a message that says nothing about the case, the crime or the agency — whoever else reads it
learns only that the centre wrote.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID
from zoneinfo import ZoneInfo

from schemas.events import ContactRules, SafeHours


class Recipient(StrEnum):
    caseworker = "caseworker"
    victim = "victim"


class News(StrEnum):
    accepted = "accepted"
    declined = "declined"
    deadline_breached = "deadline_breached"
    failed = "failed"
    completed = "completed"


CASEWORKER_NEWS = frozenset({News.declined, News.deadline_breached, News.failed, News.completed})
VICTIM_NEWS = frozenset({News.accepted})


@dataclass(frozen=True)
class ReferralNews:
    """Something that happened to a referral, in ids and codes only."""

    what: News
    case_id: UUID
    referral_id: UUID
    agency_id: str
    agency_name: str
    reason: str | None = None
    outcome: str | None = None
    deadline: datetime | None = None


@dataclass(frozen=True)
class VictimReach:
    """What notify keeps of a victim's contact: the rules only. The address stays in intake, asked for at each send."""

    do_not_contact: bool
    channel: str | None  # "email" or "sms"; None: no safe channel was named
    safe_hours: SafeHours | None

    @classmethod
    def nobody(cls) -> "VictimReach":
        return cls(do_not_contact=False, channel=None, safe_hours=None)


def victim_reach(rules: ContactRules | None) -> VictimReach:
    if rules is None or rules.do_not_contact or rules.safe_channel is None:
        return VictimReach(rules is not None and rules.do_not_contact, None, None)
    return VictimReach(False, rules.safe_channel, rules.safe_hours)


@dataclass(frozen=True)
class VictimAddress:
    """Intake's answer at the moment of sending: the victim's current rules and the safe channel's address.

    Held in memory for one send only; notify never stores it.
    """

    do_not_contact: bool
    channel: str | None
    address: str | None
    safe_hours: SafeHours | None = None


def withheld_now(contact: VictimAddress) -> str | None:
    """Why a queued victim notice must not go after all (the rules changed since it was queued), or None."""
    if contact.do_not_contact:
        return "do_not_contact"
    if contact.channel is None or contact.address is None:
        return "no_safe_channel"
    return None


@dataclass(frozen=True)
class Notice:
    """One message to send, or (`withheld` set) one deliberately not sent.

    `address` is the caseworker's e-mail; a victim notice has none: intake gives it when the notice is sent.
    """

    recipient: Recipient
    channel: str
    address: str | None
    subject: str
    body: str
    not_before: datetime
    withheld: str | None = None


ERASED = "case_erased"  # why nothing more is sent about a case erased on request


def withheld_for_erasure(notice: Notice) -> Notice:
    """After a case is erased nobody is written to about it: the notice is recorded as withheld, with no text."""
    return replace(notice, address=None, subject="", body="", withheld=ERASED)


def in_safe_hours(moment: datetime, hours: SafeHours) -> bool:
    local = moment.astimezone(ZoneInfo(hours.timezone)).time()
    if hours.start < hours.end:
        return hours.start <= local < hours.end
    return local >= hours.start or local < hours.end  # the window spans midnight


def next_safe_moment(now: datetime, hours: SafeHours | None) -> datetime:
    """`now` if the victim may be contacted now, else the next opening of their safe hours."""
    if hours is None or in_safe_hours(now, hours):
        return now
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    opening = datetime.combine(local.date(), hours.start, tzinfo=zone)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), hours.start, tzinfo=zone)
    return opening.astimezone(UTC)


VICTIM_SUBJECT = "원스톱 솔루션 센터 안내 / One-Stop Centre"
VICTIM_TEXT = (
    "요청하신 지원에 관한 새 소식이 있습니다. 자세한 내용은 담당자에게 문의해 주세요.\n"
    "There is news about the support you asked for. Your caseworker can tell you more."
)


def victim_notice(news: ReferralNews, reach: VictimReach, now: datetime) -> Notice | None:
    if news.what not in VICTIM_NEWS:
        return None
    if reach.do_not_contact or reach.channel is None:
        withheld = "do_not_contact" if reach.do_not_contact else "no_safe_channel"
        return Notice(Recipient.victim, reach.channel or "none", None, "", "", now, withheld=withheld)
    return Notice(
        Recipient.victim,
        reach.channel,
        None,
        VICTIM_SUBJECT,
        VICTIM_TEXT,
        next_safe_moment(now, reach.safe_hours),
    )


def caseworker_notice(
    news: ReferralNews, caseworker_email: str | None, now: datetime, status_url: str
) -> Notice | None:
    if news.what not in CASEWORKER_NEWS:
        return None
    if caseworker_email is None:
        return Notice(Recipient.caseworker, "email", None, "", "", now, withheld="no_caseworker")
    subject, lines = _caseworker_text(news)
    body = "\n".join(
        [
            *lines,
            "",
            f"Case: {news.case_id}",
            f"Referral: {news.referral_id} ({news.agency_id})",
            f"Case status: {status_url}",
        ]
    )
    return Notice(Recipient.caseworker, "email", caseworker_email, subject, body, now)


def _caseworker_text(news: ReferralNews) -> tuple[str, list[str]]:
    agency, case = news.agency_name, str(news.case_id)[:8]
    rerouting = "Routing has been asked to find another agency for the needs this referral leaves unmet."
    if news.what is News.declined:
        return f"[one-stop] {agency} declined a referral (case {case})", [
            f"{agency} declined the referral (reason: {news.reason}).",
            rerouting,
        ]
    if news.what is News.deadline_breached:
        deadline = news.deadline.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if news.deadline else "?"
        return f"[one-stop] {agency} missed its acknowledgement deadline (case {case})", [
            f"{agency} did not acknowledge the referral by {deadline}.",
            rerouting,
            "Once another agency has the needs, this referral is cancelled and its agency told; until then it stays"
            " open in case the agency answers late.",
        ]
    if news.what is News.failed:
        return f"[one-stop] A referral to {agency} could not be delivered (case {case})", [
            f"Delivery to {agency} gave up ({news.reason}).",
            rerouting,
        ]
    outcome = news.outcome if news.reason is None else f"{news.outcome} ({news.reason})"
    lines = [
        f"{agency} completed the referral: {outcome}.",
        "A follow-up task is open on the case's status: check with the victim, within their contact rules.",
    ]
    if news.reason is not None:  # not successful
        lines.append(
            "It proposes re-routing the referral's needs to another agency: nothing is re-routed unless you"
            " accept it, once you have heard the victim."
        )
    return f"[one-stop] {agency} completed a referral (case {case})", lines

"""The console's pure parts (forms, flow, labels, dates, the Korean catalogue) and its guards (sign-in, CSRF, roles),
without the services: the APIs are replaced by a fake that answers what the page asks."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import extract_from_dir
from console import flow, history
from console.apis import ApiError
from console.forms import Form, case_payload, check_case, consents_given, field_errors
from console.i18n import Translator, catalogue, language_of
from console.main import create_app
from console.monitor import read_figures
from console.session import CSRF_COOKIE, SESSION_COOKIE
from console.settings import ConsoleSettings
from fastapi.testclient import TestClient
from kit.auth import Role, issue_token

SECRET = "unit-test-signing-secret-of-32-bytes!"
CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
CASE_FORM = [
    ("crime_type", "stalking"),
    ("needs", "safety"),
    ("needs", "legal"),
    ("urgency", "high"),
    ("region", "seoul"),
    ("language", "ko"),
    ("intake_channel", "visit"),
    ("victim.name", "Example Person"),
    ("victim.phone", "+82 10-0000-0000"),
    ("victim.contact_rules.safe_channel", "sms"),
    ("victim.contact_rules.do_not_contact", "on"),
]


def test_the_form_becomes_the_contracts_body_and_passes_its_validation() -> None:
    body = case_payload(Form(CASE_FORM))
    assert body["needs"] == ["safety", "legal"]
    assert body["victim"] == {
        "name": "Example Person",
        "phone": "+82 10-0000-0000",
        "contact_rules": {"safe_channel": "sms", "do_not_contact": True},
    }
    assert "summary" not in body and "email" not in body["victim"]  # what was left empty is not sent
    assert check_case(body) == {} and "staged" not in body
    staged = Form([*CASE_FORM, ("staged", "on")])
    assert case_payload(staged)["staged"] is True and ("staged", "on") in staged.case_fields()  # carried to submit
    assert check_case(case_payload(staged)) == {}


def test_contract_errors_land_next_to_their_fields_without_the_input() -> None:
    form = Form([*CASE_FORM[:7], ("victim.name", "Example Person"), ("victim.phone", "SECRET-not-a-phone")])
    errors = check_case(case_payload(form))
    assert set(errors) == {"victim.phone"}
    assert "SECRET" not in str(errors)
    errors = check_case(case_payload(Form([("victim.name", "x")])))
    assert {"crime_type", "needs", "urgency", "region", "language", "intake_channel"} <= set(errors)
    # The API's problem+json names fields as body.<path>; a rule across the victim's fields goes to the safe channel.
    api = [{"loc": "body.victim.phone", "msg": "bad"}, {"loc": "body.victim", "msg": "sms needs a phone"}]
    assert field_errors(api) == {"victim.phone": ["bad"], "victim.contact_rules.safe_channel": ["sms needs a phone"]}


def test_consents_are_given_per_agency_and_sensitive_items_only_where_asked_and_consented() -> None:
    form = Form([("consent.police", "on"), ("sensitive.police", "on"), ("sensitive.legal-aid", "on")])
    given = consents_given(form, ["police", "legal-aid", "employment-center"], ["police", "legal-aid"])
    assert given == [
        {"agency_id": "police", "granted": True, "sensitive_granted": True},
        {"agency_id": "legal-aid", "granted": False, "sensitive_granted": False},  # no consent: no sensitive either
        {"agency_id": "employment-center", "granted": False, "sensitive_granted": False},
    ]


def test_the_timeline_reads_as_steps_without_any_detail() -> None:
    events = [
        {"type": "case.submitted", "occurred_at": "2026-01-01T00:00:00+00:00", "step_ms": None, "detail": {}},
        {
            "type": "referral.declined",
            "agency_id": "police",
            "occurred_at": "2026-01-01T00:02:00+00:00",
            "step_ms": 120_000,
            "step_after": "referral.delivered",
            "detail": {"note": "free text"},
        },
    ]
    steps = flow.steps(events)
    assert [(s.event, s.agency_id, s.took) for s in steps] == [
        ("case.submitted", None, ""),
        ("referral.declined", "police", "2 min"),
    ]
    assert "free text" not in repr(steps)
    assert [flow.duration(ms) for ms in (850, 4200, 7_500_000)] == ["850 ms", "4.2 s", "2 h 5 min"]


def test_a_staged_cases_plan_reads_as_routings_stages_with_notifys_referrals() -> None:
    now = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    at = "2026-01-01T00:{:02d}:00+00:00".format
    routing = {
        "stages": [
            {"stage": "crisis", "needs": ["safety"], "state": "done", "started_at": at(0), "ended_at": at(30),
             "name_ko": "위기 개입 및 안전", "name_en": "Crisis and safety"},
            {"stage": "recovery", "needs": ["counselling"], "state": "active", "started_at": at(30),
             "name_ko": "회복", "name_en": "Recovery"},
            {"stage": "daily_life", "needs": [], "state": "waiting", "name_ko": "일상", "name_en": "Daily life"},
        ]
    }  # fmt: skip
    police = {"referral_id": "r1", "agency_id": "police", "state": "accepted"}
    notify = [  # a moment behind routing: recovery has not started there yet
        {"stage": "crisis", "needs": ["safety"], "state": "active", "referrals": [police]},
        {"stage": "recovery", "needs": ["counselling"], "state": "waiting", "referrals": []},
    ]
    stages = flow.plan_stages(routing, notify, now)
    assert [(s.stage, s.state, s.spent, s.referrals) for s in stages] == [
        ("crisis", "done", "30 min", [police]),
        ("recovery", "active", "30 min", []),
        ("daily_life", "waiting", "", []),
    ]
    assert Translator("en").name(stages[0].names) == "Crisis and safety"
    assert not flow.can_advance(stages)  # the only stage waiting has no needs
    unread = flow.plan_stages(None, notify, now)  # routing's plan not readable: notify's, named by its ids
    first = unread[0]
    assert (first.stage, first.state, Translator("ko").name(first.names, first.stage)) == ("crisis", "active", "crisis")
    assert flow.can_advance(unread) and flow.plan_stages(None, None, now) == []


def test_the_inbox_puts_overdue_referrals_first_then_the_nearest_deadline() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).isoformat()

    referrals = [
        {"referral_id": "later", "state": "delivered", "ack_deadline": at(90), "overdue_at": None},
        {"referral_id": "taken", "state": "accepted", "ack_deadline": at(1), "overdue_at": None},
        {"referral_id": "soon", "state": "requested", "ack_deadline": at(5), "overdue_at": None},
        {"referral_id": "late", "state": "delivered", "ack_deadline": at(-30), "overdue_at": at(-30)},
        {"referral_id": "none", "state": "delivered", "ack_deadline": None, "overdue_at": None},
    ]
    assert [r["referral_id"] for r in flow.inbox_order(referrals, now)] == ["late", "soon", "later", "none"]
    countdown = flow.countdown(at(-30), now)
    assert countdown is not None and countdown.overdue and countdown.words() == "30 min"


def test_korean_by_default_dates_in_seoul_and_names_from_the_catalogue() -> None:
    assert language_of(None) == language_of("fr") == "ko" and language_of("en") == "en"
    ko, en = Translator("ko"), Translator("en")
    assert ko.gettext("New case") == "새 사건" and en.gettext("New case") == "New case"
    assert "오후 6:30" in ko.when("2026-01-01T09:30:00+00:00")  # 09:30 UTC is 18:30 in Seoul
    assert "6:30" in en.when("2026-01-01T09:30:00+00:00")
    police = {"name_ko": "서울경찰청", "name_en": "Seoul Metropolitan Police Agency"}
    assert (ko.name(police), en.name(police)) == (police["name_ko"], police["name_en"])
    assert ko.name(None, "police") == "police"


def test_every_label_of_the_console_has_a_korean_translation() -> None:
    """What `pybabel extract -F babel.cfg` finds in the templates and the code is all in the Korean catalogue."""
    method_map = [("src/console/**.py", "python"), ("src/console/templates/**.html", "jinja2")]
    keywords = {"_": None, "N_": None, "gettext": None}
    found = {str(m[2]) for m in extract_from_dir(str(CONSOLE), method_map, keywords=keywords)}
    assert len(found) > 100
    missing = sorted(found - set(catalogue("ko")))
    assert not missing, f"labels without a Korean translation (pybabel update, then translate): {missing}"


class FakeApis:
    """The services as the console sees them: each call recorded; answers by path, or the API's refusal."""

    client = None  # the console's own HTTP client (Prometheus's charts); unused without CONSOLE_PROMETHEUS_URL

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None]] = []
        self.submitted: list[tuple[str, Any]] = []  # each call's path and JSON body, where it sent one
        self.answers: dict[str, Any] = {
            "/agencies": [{"id": "police", "name_ko": "서울경찰청", "name_en": "Seoul Police"}],
            "/cases/needing-attention": [],
            "/follow-ups?state=open&limit=100": [],
            "/follow-ups?state=open&limit=100&mine=true": [],
        }

    async def call(self, service: str, method: str, path: str, token: str | None, **sent: Any) -> Any:
        self.calls.append((service, method, path, token))
        if sent.get("body") is not None:
            self.submitted.append((path, sent["body"]))
        if path not in self.answers:
            raise ApiError(404, "not here")
        return self.answers[path]

    async def health(self, service: str) -> tuple[int | None, dict[str, Any]]:
        return 200, {"status": "ok"}

    async def metrics(self, service: str) -> str | None:
        return None

    async def close(self) -> None:
        return None


def console(**settings: Any) -> tuple[TestClient, FakeApis]:
    app = create_app(ConsoleSettings(auth_secret=SECRET, **settings))
    fake = FakeApis()
    app.state.apis = fake
    return TestClient(app, base_url="https://console.test", follow_redirects=False), fake


@pytest.fixture
def dev_console() -> Iterator[tuple[TestClient, FakeApis]]:
    yield console(console_dev_sign_in=True)


def csrf_of(client: TestClient) -> str:
    client.get("/signin")
    token = client.cookies.get(CSRF_COOKIE)
    assert token
    return token


def test_the_development_sign_in_is_off_unless_set() -> None:
    assert ConsoleSettings().console_dev_sign_in is False
    client, _ = console()
    assert "caseworker" not in client.get("/signin").text
    answer = client.post("/signin/dev", data={"identity": "caseworker", "csrf_token": csrf_of(client)})
    assert answer.status_code == 403 and SESSION_COOKIE not in answer.cookies


def test_signing_in_keeps_the_token_in_a_secure_http_only_strict_cookie(dev_console: tuple[TestClient, Any]) -> None:
    client, fake = dev_console
    assert "agency-police" in client.get("/signin").text
    answer = client.post("/signin/dev", data={"identity": "agency-police", "csrf_token": csrf_of(client)})
    assert answer.status_code == 303
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert {"HttpOnly", "Secure", "SameSite=strict"} <= {part.strip() for part in cookie.split(";")}
    # The agency's own token goes to the API; its inbox is its home.
    fake.answers["/referrals"] = []
    assert client.get("/", follow_redirects=True).status_code == 200
    token = fake.calls[-1][3]
    assert fake.calls[-1][:3] == ("notify", "GET", "/referrals") and token is not None


@pytest.mark.parametrize(
    "path",
    [
        "/signin/dev",
        "/signin/token",
        "/signout",
        "/cases",
        "/cases/preview",
        "/guidance",
        "/inbox/0/accept",
        "/operations/agencies/police/dead-letters/replay",
        "/cases/0/plan/advance",
        "/cases/0/pending-needs/housing/close",
        "/cases/0/follow-ups/0/done",
        "/cases/0/follow-ups/0/reroute",
        "/capacities/police",
    ],
)
def test_every_form_without_its_csrf_token_is_refused_and_calls_nothing(
    dev_console: tuple[TestClient, FakeApis], path: str
) -> None:
    client, fake = dev_console
    staff = issue_token(SECRET, Role.supervisor, "sv-1")
    client.cookies.set(SESSION_COOKIE, staff)
    csrf_of(client)
    path = path.replace("/0/", "/00000000-0000-0000-0000-000000000000/")
    calls = len(fake.calls)
    answer = client.post(path, data={"identity": "caseworker", "csrf_token": "forged"})
    assert answer.status_code == 403, path
    assert len(fake.calls) == calls, "a forged form reached a service"
    assert "Traceback" not in answer.text


def test_each_role_sees_only_its_pages(dev_console: tuple[TestClient, FakeApis]) -> None:
    client, fake = dev_console
    assert client.get("/cases").headers["location"] == "/signin"  # nobody signed in
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.agency, "agency-police", agency="police"))
    for path in ("/cases", "/cases/new", "/guidance", "/operations"):
        assert client.get(path).status_code == 403, path
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    assert client.get("/cases").status_code == 200
    assert client.get("/operations").status_code == 403
    assert client.get("/inbox").status_code == 403
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.auditor, "au-1"))
    assert client.get("/cases").status_code == 403
    client.cookies.set(SESSION_COOKIE, "not-a-token")
    assert client.get("/cases").headers["location"] == "/signin"
    assert all(call[0] != "notify" or call[2] != "/referrals" for call in fake.calls)


CASE = "00000000-0000-0000-0000-00000000abcd"
TASK = "00000000-0000-0000-0000-0000000000f1"


def follow_up(due_at: str, proposed: bool = False) -> dict[str, Any]:
    """A follow-up task as notify shows it (GET /follow-ups, the status's follow_ups)."""
    return {
        "task_id": TASK,
        "case_id": CASE,
        "referral_id": "00000000-0000-0000-0000-0000000000e1",
        "agency_id": "police",
        "needs": ["safety"],
        "completion": {"outcome": "not_successful" if proposed else "successful", "reason": None},
        "kind": "check_with_victim",
        "no_contact": None,
        "due_at": due_at,
        "proposal": {"action": "reroute", "needs": ["safety"], "state": "proposed"} if proposed else None,
        "state": "open",
        "outcome": None,
        "closed_at": None,
    }


def test_follow_ups_are_the_caseworkers_to_do_list_on_the_home_page_and_the_case_page(
    dev_console: tuple[TestClient, FakeApis],
) -> None:
    client, fake = dev_console
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    client.cookies.set("console_lang", "en")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    fake.answers["/follow-ups?state=open&limit=100&mine=true"] = [follow_up(past, proposed=True)]
    attention = {"referral_id": "r", "agency_id": "police", "reason": "reroute_proposed", "task_id": TASK}
    fake.answers["/cases/needing-attention"] = [{"case_id": CASE, "attention": [attention]}]
    home = client.get("/cases").text
    assert "Completed without success: re-routing proposed" in home and "reroute_proposed" not in home
    assert f'data-task="{TASK}"' in home and "overdue" in home and "re-routing proposed" in home

    status = {"case_id": CASE, "status": "needs_attention", "referrals": [], "attention": [attention]}
    fake.answers[f"/cases/{CASE}/status"] = {**status, "follow_ups": [follow_up(past, proposed=True)]}
    fake.answers[f"/cases/{CASE}/consents"] = {"agencies": []}
    page = client.get(f"/cases/{CASE}").text
    assert f"/cases/{CASE}/follow-ups/{TASK}/done" in page and f"/cases/{CASE}/follow-ups/{TASK}/reroute" in page
    assert 'value="rerouted"' not in page and 'value="case_closed"' not in page  # not a caseworker's to give

    csrf = csrf_of(client)
    fake.answers[f"/cases/{CASE}/follow-ups/{TASK}/done"] = {"state": "done"}
    sent = client.post(f"/cases/{CASE}/follow-ups/{TASK}/done", data={"csrf_token": csrf, "outcome": "needs_met"})
    assert sent.status_code == 303 and fake.calls[-1][:3] == ("notify", "POST", f"/cases/{CASE}/follow-ups/{TASK}/done")
    calls = len(fake.calls)
    for outcome in ("rerouted", "case_closed", "whatever"):  # refused here, before any service is asked
        refused = client.post(f"/cases/{CASE}/follow-ups/{TASK}/done", data={"csrf_token": csrf, "outcome": outcome})
        assert refused.status_code == 422 and "Traceback" not in refused.text, outcome
    assert len(fake.calls) == calls
    fake.answers[f"/cases/{CASE}/follow-ups/{TASK}/reroute"] = {"state": "done"}
    assert client.post(f"/cases/{CASE}/follow-ups/{TASK}/reroute", data={"csrf_token": csrf}).status_code == 303
    assert fake.calls[-1][:3] == ("notify", "POST", f"/cases/{CASE}/follow-ups/{TASK}/reroute")


def test_a_caseworkers_home_lists_their_own_follow_ups_unless_asked_for_everyones(
    dev_console: tuple[TestClient, FakeApis],
) -> None:
    client, fake = dev_console
    client.cookies.set("console_lang", "en")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    fake.answers["/follow-ups?state=open&limit=100"] = [follow_up(future)]  # everyone's: one task
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    mine = client.get("/cases").text
    assert fake.calls[-2][2] == "/follow-ups?state=open&limit=100&mine=true"  # notify matches the token's subject
    assert f'data-task="{TASK}"' not in mine and "No follow-up is waiting." in mine
    assert '<a href="/cases?follow_ups=mine#follow-ups" aria-current="page">' in mine
    everyone = client.get("/cases?follow_ups=all").text
    assert (
        f'data-task="{TASK}"' in everyone
        and '<a href="/cases?follow_ups=all#follow-ups" aria-current="page">' in everyone
    )
    assert client.get("/cases?follow_ups=theirs").status_code == 422  # no third choice
    # A supervisor's home lists everyone's by default.
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.supervisor, "sv-1"))
    assert f'data-task="{TASK}"' in client.get("/cases").text


def fields(*items: tuple[str, str]) -> dict[str, list[str]]:
    """A form's fields as TestClient posts them: each name with all its values."""
    posted: dict[str, list[str]] = {}
    for key, value in items:
        posted.setdefault(key, []).append(value)
    return posted


def test_the_signed_in_user_is_the_cases_caseworker_when_they_give_an_address(
    dev_console: tuple[TestClient, FakeApis],
) -> None:
    client, fake = dev_console
    token = issue_token(SECRET, Role.caseworker, "cw-7", email="cw-7@centre.example")
    client.cookies.set(SESSION_COOKIE, token)
    form_page = client.get("/cases/new").text
    assert 'value="cw-7@centre.example"' in form_page  # from the token's email claim
    csrf = csrf_of(client)
    fake.answers["/cases"] = {"case_id": CASE}
    # The form cannot name another caseworker: the id is the token's subject, whatever is posted.
    posted = fields(
        *CASE_FORM, ("caseworker.email", "cw-7@centre.example"), ("caseworker.id", "cw-99"), ("csrf_token", csrf)
    )
    assert client.post("/cases", data=posted).status_code == 303
    [submitted] = [c for c in fake.submitted if c[0] == "/cases"]
    assert submitted[1]["caseworker"] == {"id": "cw-7", "email": "cw-7@centre.example"}
    # Left empty, the case has no caseworker; and case_payload alone never invents one.
    assert client.post("/cases", data=fields(*CASE_FORM, ("csrf_token", csrf))).status_code == 303
    assert "caseworker" not in fake.submitted[-1][1]
    assert "caseworker" not in case_payload(Form([*CASE_FORM, ("caseworker.email", "cw-7@centre.example")]))
    bad_address = fields(*CASE_FORM, ("caseworker.email", "not-an-address"), ("csrf_token", csrf))
    bad = client.post("/cases/preview", data=bad_address)
    assert bad.status_code == 422 and 'id="caseworker-email-error"' in bad.text
    assert "not-an-address" not in [c[2] for c in fake.calls]


def test_the_language_switch_goes_back_only_to_a_page_of_this_site(dev_console: tuple[TestClient, Any]) -> None:
    client, _ = dev_console
    assert client.get("/language/en?back=/cases/new").headers["location"] == "/cases/new"
    assert client.get("/language/en?back=//evil.example/").headers["location"] == "/"
    assert client.get("/language/en?back=https://evil.example/").headers["location"] == "/"
    assert 'lang="en"' in client.get("/signin").text


def test_an_erasure_needs_the_cases_id_typed_and_is_a_supervisors(dev_console: tuple[TestClient, FakeApis]) -> None:
    client, fake = dev_console
    case_id = "00000000-0000-0000-0000-00000000abcd"
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    csrf = csrf_of(client)
    assert client.post(f"/cases/{case_id}/erase", data={"csrf_token": csrf, "confirm": case_id}).status_code == 403
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.supervisor, "sv-1"))
    answer = client.post(f"/cases/{case_id}/erase", data={"csrf_token": csrf, "confirm": case_id[:-1]})
    assert answer.status_code == 422
    assert not any(method == "DELETE" for _, method, _, _ in fake.calls)
    fake.answers[f"/cases/{case_id}"] = {"status": "erased"}
    assert client.post(f"/cases/{case_id}/erase", data={"csrf_token": csrf, "confirm": case_id}).status_code == 200
    assert fake.calls[-1][:3] == ("intake", "DELETE", f"/cases/{case_id}")


def test_the_operators_figures_come_from_the_services_metrics() -> None:
    gateway = "\n".join(
        [
            "# TYPE onestop_deliveries_total counter",
            'onestop_deliveries_total{agency_id="police",outcome="delivered"} 3.0',
            'onestop_deliveries_total{agency_id="police",outcome="failed"} 1.0',
            'onestop_deliveries_total{agency_id="legal-aid",outcome="delivered"} 6.0',
            "# TYPE onestop_circuit_open gauge",
            'onestop_circuit_open{agency_id="police"} 1.0',
            "# TYPE onestop_dlq_records_total counter",
            'onestop_dlq_records_total{topic="referrals.police",reason="permanent_failure"} 2.0',
            "# TYPE onestop_outbox_backlog gauge",
            "onestop_outbox_backlog 4.0",
            "# TYPE onestop_consumer_lag gauge",
            'onestop_consumer_lag{group="agency-gateway.deliveries",topic="referrals.police"} 5.0',
            'onestop_consumer_lag{group="agency-gateway.deliveries",topic="referrals.legal-aid"} 2.0',
        ]
    )
    notify = '# TYPE onestop_sla_breaches_total counter\nonestop_sla_breaches_total{agency_id="police"} 2.0\n'
    figures = read_figures({"agency-gateway": gateway + "\n", "notify": notify})
    police = figures.agencies["police"]
    assert (police.delivered, police.failed, police.sla_breaches, police.circuit_open) == (3, 1, 2, True)
    assert list(figures.agencies) == ["legal-aid", "police"] and figures.most_delivered() == 6
    assert figures.dead_letters == {("referrals.police", "permanent_failure"): 2}
    assert figures.outbox_backlog == {"agency-gateway": 4} and figures.consumer_lag == {"agency-gateway.deliveries": 7}
    assert read_figures({}).most_delivered() == 1


def test_the_report_is_notifys_own_fetched_with_the_supervisors_token(dev_console: tuple[TestClient, Any]) -> None:
    client, fake = dev_console
    asked: list[tuple[str, dict[str, str]]] = []

    async def document(service: str, path: str, token: str, params: dict[str, str]) -> tuple[bytes, str]:
        asked.append((token, params))
        return b"<html lang='en'>report</html>", "text/html; charset=utf-8"

    fake.document = document
    supervisor = issue_token(SECRET, Role.supervisor, "sv-1")
    client.cookies.set(SESSION_COOKIE, supervisor)
    client.cookies.set("console_lang", "en")
    answer = client.get("/reports/referrals?month=2026-11&crime_type=stalking&format=html")
    assert answer.status_code == 200 and answer.text.endswith("report</html>")
    assert "script-src" not in answer.headers["content-security-policy"]  # the report runs no script
    assert asked == [(supervisor, {"month": "2026-11", "format": "html", "lang": "en", "crime_type": "stalking"})]
    assert client.get("/reports/referrals?month=2026-13").status_code == 422
    assert client.get("/reports/referrals?month=2026-11&crime_type=nope").status_code == 422
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    assert client.get("/reports/referrals?month=2026-11").status_code == 403
    assert len(asked) == 1


def test_a_form_too_large_is_refused_before_it_is_read(dev_console: tuple[TestClient, FakeApis]) -> None:
    client, fake = dev_console
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    answer = client.post("/cases/preview", data={"csrf_token": csrf_of(client), "summary": "x" * 300_000})
    assert answer.status_code == 413 and not fake.calls[1:]  # only the sign-in page's call, none for the form


def test_a_dead_letter_replay_is_the_gateways_under_the_supervisors_token(
    dev_console: tuple[TestClient, FakeApis],
) -> None:
    client, fake = dev_console
    seen = {"first_seen": "2026-12-06T01:00:00+00:00", "last_seen": "2026-12-06T02:00:00+00:00"}
    fake.answers["/dead-letters"] = [
        {"agency_id": "police", "topic": "referrals.police.dlq", "reason": "permanent_failure", "count": 2,
         "waiting": 1, **seen},
        {"agency_id": "legal-aid", "topic": "referrals.legal-aid.dlq", "reason": "retries_exhausted", "count": 1,
         "waiting": 0, **seen},
    ]  # fmt: skip
    replay = "/operations/agencies/police/dead-letters/replay"
    fake.answers["/agencies/police/dead-letters/replay"] = {"agency_id": "police", "replayed": 1, "letters": []}
    caseworker = issue_token(SECRET, Role.caseworker, "cw-1")
    client.cookies.set(SESSION_COOKIE, caseworker)
    csrf = csrf_of(client)
    assert client.post(replay, data={"csrf_token": csrf}).status_code == 403
    assert not any(path.endswith("/replay") for _, _, path, _ in fake.calls)

    supervisor = issue_token(SECRET, Role.supervisor, "sv-1")
    client.cookies.set(SESSION_COOKIE, supervisor)
    page = client.get("/operations").text
    assert page.count('action="/operations/agencies/') == 1 and f'action="{replay}"' in page  # where one waits
    answer = client.post(replay, data={"csrf_token": csrf})
    assert answer.headers["location"] == "/operations?replayed=1&agency=police#dead-letters"
    assert fake.calls[-1] == ("agency-gateway", "POST", "/agencies/police/dead-letters/replay", supervisor)
    assert client.get("/operations?replayed=1&agency=police").text.count('class="replayed-count">1<') == 1


def test_a_supervisor_sets_or_forgets_any_agencys_capacity_with_their_own_token(
    dev_console: tuple[TestClient, FakeApis],
) -> None:
    client, fake = dev_console
    fake.answers["/agencies/police/capacity"] = {"agency_id": "police"}
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.caseworker, "cw-1"))
    csrf = csrf_of(client)
    assert client.get("/capacities").status_code == 403
    assert client.post("/capacities/police", data={"csrf_token": csrf, "available": "3"}).status_code == 403
    supervisor = issue_token(SECRET, Role.supervisor, "sv-1")
    client.cookies.set(SESSION_COOKIE, supervisor)
    assert client.get("/capacities").status_code == 200
    assert client.post("/capacities/police", data={"csrf_token": csrf, "available": "many"}).status_code == 422
    assert client.post("/capacities/police", data={"csrf_token": csrf, "available": "3"}).status_code == 303
    assert fake.calls[-1] == ("routing", "PUT", "/agencies/police/capacity", supervisor)
    assert client.post("/capacities/police", data={"csrf_token": csrf, "forget": "1"}).status_code == 303
    assert fake.calls[-1] == ("routing", "DELETE", "/agencies/police/capacity", supervisor)


def test_the_operators_charts_come_from_prometheus_over_the_chosen_window() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    asked: list[dict[str, str]] = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        assert request.url.path == "/api/v1/query_range"
        end = float(params["end"])
        if "deliveries" in params["query"]:
            values = [[end - 120, "0"], [end - 60, "3"], [end, "1"]]
            result = [{"metric": {"agency_id": "police"}, "values": values}]
        else:
            result = [{"metric": {"group": "notify.events", "service": "notify"}, "values": [[end, "7"]]}]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})

    async def fetch(url: str | None, window: str) -> history.History:
        async with httpx.AsyncClient(transport=httpx.MockTransport(prometheus)) as client:
            return await history.fetch(client, url, window, now)

    over = asyncio.run(fetch("http://prometheus.test:9190/", "1h"))
    assert over.unavailable is None and over.end - over.start == 3600
    assert len(asked) == 4 and {a["step"] for a in asked} == {"60s"} and asked[0]["end"] == f"{now.timestamp():.3f}"
    police = over.of("delivered", "police")
    assert police is not None and (police.total, police.peak) == (4.0, 3.0)
    assert over.of("lag", "notify.events") is not None and over.of("lag", "routing.cases") is None
    # The last point is now at the right edge; the peak touches the top, 0 the bottom (a pixel free each side).
    assert history.sparkline(police, over.start, over.end) == "116.0,23.0 118.0,1.0 120.0,15.7"
    assert history.sparkline(None, over.start, over.end) == ""
    assert asyncio.run(fetch("http://prometheus.test:9190", "forever")).window == history.DEFAULT_WINDOW
    asked.clear()  # the shortest window: a point per scrape (15 s), increase() still over a minute
    fifteen = asyncio.run(fetch("http://prometheus.test:9190", "15m"))
    assert fifteen.window == "15m" and fifteen.end - fifteen.start == 900
    deliveries = [a["query"] for a in asked if "deliveries" in a["query"]]
    assert {a["step"] for a in asked} == {"15s"} and deliveries and all("[60s]" in q for q in deliveries)

    assert asyncio.run(fetch(None, "6h")).unavailable == "not_configured"
    asked.clear()

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def unreachable() -> history.History:
        async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
            return await history.fetch(client, "http://prometheus.test:9190", "6h", now)

    assert asyncio.run(unreachable()).unavailable == "not_answering"
    assert history.series_of({"status": "error", "error": "bad query"}, "agency_id") == {}


def test_the_operations_page_says_why_it_has_no_history(dev_console: tuple[TestClient, FakeApis]) -> None:
    client, fake = dev_console
    client.cookies.set(SESSION_COOKIE, issue_token(SECRET, Role.supervisor, "sv-1"))
    client.cookies.set("console_lang", "en")
    fake.answers["/dead-letters"] = []
    page = client.get("/operations?window=24h").text
    assert "No history: the console knows no Prometheus" in page and '<strong aria-current="true">24h</strong>' in page
    assert 'data-points="0"' in page and "<polyline" not in page

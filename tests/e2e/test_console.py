"""The web console in a real browser (Debian's Chromium driven by Playwright) on the real stack: a caseworker submits
a case through the form with consents and sees it delivered and accepted; each role against each page; every page in
Korean and English with no untranslated label. Screenshots of the main screens go to docs/img/."""

import asyncio
import os
import re
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from console.i18n import catalogue
from devstack.stack import DATABASE, Stack
from kit.auth import Role, issue_token
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"  # `./dev test` installs it when missing (with fonts-noto-cjk for Korean)
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no {CHROMIUM}: `./dev install` installs it", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
# The screenshots in docs/img are refreshed only when asked (UPDATE_SCREENSHOTS=1 ./dev test tests/e2e/test_console.py);
# any other run takes them in a folder of its own and leaves the repository as it was.
SHOTS = (
    ROOT / "docs" / "img"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="console-screenshots-"))
)
LEGAL_AGENCIES = ["legal-aid", "legal-home-doctor", "victim-public-lawyer"]
WAIT_MS = 60_000  # a busy machine: the case's referrals are delivered and accepted within seconds, usually one
expect.set_options(timeout=WAIT_MS)
VICTIM = {"name": "Kim Example", "phone": "+82 10-0000-0000", "summary": "Assaulted near home (synthetic)."}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (the bundled browser cannot be downloaded on these machines: ../shared/BROWSER.md), for this
    module only: Playwright's sync API marks an event loop as running while it lives, which the asynchronous tests
    after this module could not start their own under (so not pytest-playwright's session-wide browser)."""
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        yield launched
        launched.close()


@pytest.fixture
def console(stack: Stack) -> str:
    return stack.url("console")


def new_context(browser: Browser, lang: str = "ko", phone: bool = False) -> BrowserContext:
    viewport = {"width": 390, "height": 844} if phone else {"width": 1100, "height": 900}
    context = browser.new_context(viewport=viewport, locale="ko-KR" if lang == "ko" else "en-US")
    context.set_default_timeout(WAIT_MS)
    return context


def sign_in(page: Page, console: str, identity: str, lang: str = "ko") -> None:
    page.goto(f"{console}/language/{lang}?back=/signin")
    page.get_by_role("button", name=identity, exact=True).click()
    page.wait_for_load_state()


@pytest.fixture
def caseworker(browser: Browser, console: str) -> Iterator[Page]:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "caseworker")
    yield page
    context.close()


def count_cases(stack: Stack) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(stack.postgres.dsn(DATABASE))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM intake.cases"))
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop running in this one
        return thread.submit(asyncio.run, count()).result()


def fill_case(page: Page, console: str, needs: list[str], staged: bool = False) -> None:
    page.goto(f"{console}/cases/new")
    if staged:
        page.get_by_label("센터의 단계별 지원 계획 따르기").check()
    page.get_by_label("범죄 유형").select_option("violent_crime")
    for need in needs:
        page.locator(f"input[name=needs][value={need}]").check()
    page.get_by_label("긴급도").select_option("high")
    page.get_by_label("지역").select_option("seoul")
    page.get_by_label("피해자 사용 언어").select_option("ko")
    page.get_by_label("접수 경로").select_option("visit")
    page.get_by_label("이름").fill(VICTIM["name"])
    page.get_by_label("전화", exact=True).fill(VICTIM["phone"])
    page.get_by_label("사건 요약").fill(VICTIM["summary"])
    page.get_by_role("button", name="연계 기관 미리 보기").click()


def test_a_caseworker_submits_a_case_with_consents_and_sees_it_accepted(
    caseworker: Page, console: str, stack: Stack
) -> None:
    page = caseworker
    fill_case(page, console, ["safety", "legal", "employment"])
    expect(page.get_by_role("heading", name="연계 기관 미리 보기")).to_be_visible()
    agencies = page.locator("article.agency")
    expect(agencies).to_have_count(3)
    expect(page.get_by_text("거부할 권리").first).to_be_visible()  # each notice says the victim may refuse
    for box in page.locator("input[type=checkbox][name^='consent.'], input[type=checkbox][name^='sensitive.']").all():
        box.check()
    page.screenshot(path=str(SHOTS / "console-preview.png"), full_page=True)

    before = count_cases(stack)
    page.get_by_role("button", name="사건 접수").dblclick()  # a double click is still one case
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}$"))
    rows = page.locator("tr.referral")
    expect(rows).to_have_count(3)
    for row in rows.all():
        expect(row).to_have_attribute("data-state", "accepted", timeout=WAIT_MS)
    expect(page.locator("li[data-event='referral.delivered']")).to_have_count(3)
    expect(page.locator("tr.consent")).to_have_count(3)
    assert count_cases(stack) == before + 1
    # The signed-in caseworker follows the case: the form had their address from their token, the id is theirs.
    case_id = page.url.rsplit("/", 1)[-1]
    recorded = staff_get(stack, "intake", f"/cases/{case_id}", "caseworker").json()["caseworker"]
    assert recorded == {"id": "dev-caseworker", "email": "dev-caseworker@centre.example"}
    page.screenshot(path=str(SHOTS / "console-case.png"), full_page=True)


def test_a_form_error_shows_next_to_its_field_and_keeps_what_was_typed(caseworker: Page, console: str) -> None:
    page = caseworker
    page.goto(f"{console}/cases/new")
    page.get_by_label("이름").fill(VICTIM["name"])
    page.get_by_label("전화", exact=True).fill("not a phone")
    page.get_by_role("button", name="연계 기관 미리 보기").click()
    expect(page.locator("#victim-phone-error")).to_be_visible()
    expect(page.locator("#needs-error")).to_be_visible()
    expect(page.get_by_label("이름")).to_have_value(VICTIM["name"])
    assert "Traceback" not in page.content()


def test_phone_guidance_shows_agencies_and_records_nothing(caseworker: Page, console: str, stack: Stack) -> None:
    page = caseworker
    before = count_cases(stack)
    page.goto(f"{console}/guidance")
    page.get_by_label("범죄 유형").select_option("stalking")
    page.locator("input[name=needs][value=safety]").check()
    page.get_by_label("긴급도").select_option("urgent")
    page.get_by_label("지역").select_option("seoul")
    page.get_by_label("피해자 사용 언어").select_option("ko")
    page.get_by_role("button", name="기관 보기").click()
    expect(page.locator("article.agency").first).to_be_visible()
    assert count_cases(stack) == before
    page.screenshot(path=str(SHOTS / "console-guidance.png"), full_page=True)


def test_a_form_without_the_csrf_token_changes_nothing(caseworker: Page, console: str, stack: Stack) -> None:
    before = count_cases(stack)
    answer = caseworker.request.post(
        f"{console}/cases", form={"crime_type": "fraud", "needs": "legal", "victim.name": "X"}, max_redirects=0
    )
    assert answer.status == 403
    assert count_cases(stack) == before


def submit_case_by_api(
    stack: Stack, needs: list[str], consents: list[str], refused: tuple[str, ...] = (), **more: Any
) -> str:
    """A case as intake's API takes it (the form's own test is above), consented for `consents`; `more`: other fields
    of the case (`staged=True`)."""
    body = {
        **more,
        "crime_type": "violent_crime",
        "needs": needs,
        "urgency": "high",
        "region": "seoul",
        "language": "ko",
        "intake_channel": "visit",
        "victim": {"name": VICTIM["name"], "phone": VICTIM["phone"]},
        "summary": VICTIM["summary"],
        "consents": [{"agency_id": a, "granted": True, "sensitive_granted": True} for a in consents]
        + [{"agency_id": a, "granted": False} for a in refused],
    }
    token = stack.token("caseworker")
    answer = httpx.post(f"{stack.url('intake')}/cases", json=body, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_id"])


def referrals_of(stack: Stack, case_id: str) -> list[dict[str, Any]]:
    token = stack.token("caseworker")
    answer = httpx.get(f"{stack.url('notify')}/cases/{case_id}/referrals", headers={"authorization": f"Bearer {token}"})
    return list(answer.json()) if answer.status_code == 200 else []


def wait_for(what: str, check: Any, timeout: float = WAIT_MS / 1000) -> Any:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = check()
        if seen:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {seen!r}")


@contextmanager
def silent(stack: Stack, agency_id: str) -> Iterator[None]:
    """The agency's simulator answers nothing while the block runs."""
    simulator = stack.url("agency-simulator")
    assert httpx.put(f"{simulator}/behaviour/{agency_id}", json={"action": "silent"}).status_code == 200
    try:
        yield
    finally:
        httpx.delete(f"{simulator}/behaviour/{agency_id}")


@pytest.fixture
def silent_legal_aid(stack: Stack) -> Iterator[None]:
    """legal-aid's simulator answers nothing, so its referral waits for a person to answer it in the console."""
    with silent(stack, "legal-aid"):
        yield


@pytest.fixture
def silent_police(stack: Stack) -> Iterator[None]:
    """The police's simulator answers nothing, so a staged case's crisis stage waits for the caseworker (its rule in
    catalogue/plan.toml would end it as soon as the police accept)."""
    with silent(stack, "police"):
        yield


def test_an_agency_sees_only_its_own_referrals_declines_one_and_the_caseworker_sees_the_rerouting(
    browser: Browser, caseworker: Page, console: str, stack: Stack, silent_legal_aid: None
) -> None:
    # Consent for every agency giving legal aid, so that routing has another one to turn to after the decline.
    case_id = submit_case_by_api(stack, ["safety", "legal"], ["police", *LEGAL_AGENCIES])
    referrals = wait_for(
        "the case's two referrals delivered",
        lambda: (found := referrals_of(stack, case_id)) and all(r["state"] != "requested" for r in found) and found,
    )
    ours = next(r["referral_id"] for r in referrals if r["agency_id"] == "legal-aid")
    police = next(r["referral_id"] for r in referrals if r["agency_id"] == "police")

    context = new_context(browser)
    agency = context.new_page()
    sign_in(agency, console, "agency-legal-aid")
    expect(agency.get_by_role("heading", name="응답을 기다리는 의뢰")).to_be_visible()
    expect(agency.locator(f"[data-referral='{ours}']")).to_be_visible()
    assert agency.locator(f"[data-referral='{police}']").count() == 0  # the police's referral of the same case
    agency.screenshot(path=str(SHOTS / "console-inbox.png"), full_page=True)
    agency.goto(f"{console}/inbox/{police}")  # another agency's referral: as if it did not exist
    assert VICTIM["name"] not in agency.content()
    expect(agency.locator(".problem .status")).to_have_text("404")

    agency.goto(f"{console}/inbox/{ours}")
    expect(agency.get_by_text(VICTIM["name"])).to_be_visible()  # the items legal-aid may see, fetched now
    agency.screenshot(path=str(SHOTS / "console-referral.png"), full_page=True)
    agency.get_by_label("사유").select_option("no_capacity")
    agency.get_by_role("button", name="거절").click()
    expect(agency.locator("dd.state")).to_have_attribute("data-state", "declined")
    context.close()

    caseworker.goto(f"{console}/cases/{case_id}")
    expect(caseworker.locator("tr.referral[data-agency='legal-aid']")).to_have_attribute("data-state", "declined")
    expect(caseworker.locator("li[data-event='referral.rerouting']").first).to_be_visible()
    new = caseworker.locator("tr.referral:not([data-agency='legal-aid']):not([data-agency='police'])")
    expect(new).to_have_count(1)  # another agency for the legal need


@pytest.fixture(scope="module")
def delivered_case(stack: Stack) -> tuple[str, str]:
    """A case delivered to the police (accepted by its simulator): its id and the police's referral id."""
    case_id = submit_case_by_api(stack, ["safety"], ["police"])
    referrals = wait_for(
        "the police's referral delivered",
        lambda: [r for r in referrals_of(stack, case_id) if r["agency_id"] == "police" and r["state"] != "requested"],
    )
    return case_id, str(referrals[0]["referral_id"])


STAFF_PAGES = ("/cases", "/cases/new", "/guidance", "/cases/{case}")
OPERATOR_PAGES = ("/operations", "/operations/cases/{case}", "/reports", "/capacities")
AGENCY_PAGES = ("/inbox", "/capacity", "/inbox/{referral}")
# Who may open which page: everyone else gets 403 (another role's page) or, for another agency's referral, 404.
ALLOWED = {
    "caseworker": STAFF_PAGES,
    "supervisor": STAFF_PAGES + OPERATOR_PAGES,
    "agency-police": AGENCY_PAGES,
    "agency-legal-aid": AGENCY_PAGES[:2],
}


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[-1].split("</main>", 1)[0]


def test_each_role_against_each_page(browser: Browser, console: str, delivered_case: tuple[str, str]) -> None:
    case_id, referral_id = delivered_case
    pages = [p.format(case=case_id, referral=referral_id) for p in STAFF_PAGES + OPERATOR_PAGES + AGENCY_PAGES]
    context = new_context(browser)
    page = context.new_page()
    for path in pages:  # signed out: every page sends to the sign-in page
        answer = page.request.get(console + path, max_redirects=0)
        assert (answer.status, answer.headers["location"]) == (303, "/signin"), path
    context.close()
    for identity, allowed in ALLOWED.items():
        context = new_context(browser)
        page = context.new_page()
        sign_in(page, console, identity)
        shown = {p.format(case=case_id, referral=referral_id) for p in allowed}
        for path in pages:
            answer = page.request.get(console + path, max_redirects=0)
            body = main_of(answer.text())  # the page's own content (its links back carry the path asked for)
            if path in shown:
                assert answer.status == 200, f"{identity} {path}: {answer.status}"
            else:
                another_agencys = path.startswith("/inbox/") and identity.startswith("agency-")
                expected = 404 if another_agencys else 403
                assert answer.status == expected, f"{identity} {path}: {answer.status}"
                for other in {case_id, referral_id} - set(path.split("/")):  # only the id asked for may be named
                    assert other not in body, f"{identity} {path} names another id of the case"
            if (identity, path) != ("agency-police", f"/inbox/{referral_id}"):  # the one page with the items
                assert VICTIM["name"] not in body, f"{identity} {path} shows the victim's name"
        context.close()


def visible_labels(page: Page) -> list[str]:
    selector = "h1, h2, h3, label, legend, th, button, summary, dt, nav a, option, .hint, p.problem"
    return [t.strip() for t in page.locator(selector).all_inner_texts() if t.strip()]


def untranslated(page: Page, lang: str) -> list[str]:
    """The page's labels left in the other language: in Korean none may be in English, in English none in Korean."""
    korean = dict(catalogue("ko"))
    wrong = {m for m, k in korean.items() if m != k} if lang == "ko" else {k for m, k in korean.items() if m != k}
    return [text for text in visible_labels(page) if text in wrong]


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_every_page_renders_in_both_languages_with_no_untranslated_label(
    browser: Browser, console: str, delivered_case: tuple[str, str], lang: str
) -> None:
    case_id, referral_id = delivered_case
    for identity, allowed in (("supervisor", ALLOWED["supervisor"]), ("agency-police", AGENCY_PAGES)):
        context = new_context(browser, lang, phone=identity == "agency-police")
        page = context.new_page()
        sign_in(page, console, identity, lang)
        for path in ("/signin", *allowed):
            page.goto(console + path.format(case=case_id, referral=referral_id))
            assert page.locator("html").get_attribute("lang") == lang
            left = untranslated(page, lang)
            assert not left, f"{path} in {lang}: untranslated {left}"
        if lang == "ko" and identity == "supervisor":
            page.goto(f"{console}/operations")
            page.screenshot(path=str(SHOTS / "console-operations.png"), full_page=True)
        context.close()


def test_a_supervisor_overrides_a_refusal_closes_and_erases_a_case(
    browser: Browser, console: str, stack: Stack
) -> None:
    case_id = submit_case_by_api(stack, ["safety"], ["police"], refused=("legal-aid",))
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "supervisor")
    page.goto(f"{console}/cases/{case_id}")
    refused = page.locator("tr.consent[data-agency='legal-aid']")
    expect(refused).to_have_attribute("data-may-provide", "no")
    refused.get_by_text("동의 없이 제공").click()
    refused.get_by_label("법적 근거").select_option("imminent_danger")
    refused.get_by_label("사유").fill("Synthetic: the offender is nearby")
    refused.get_by_role("button", name="동의 없는 제공 기록").click()
    expect(page.locator("tr.consent[data-agency='legal-aid']")).to_have_attribute("data-may-provide", "yes")

    page.locator("#close-reason").select_option("back_to_daily_life")
    page.locator("form[action$='/close']").get_by_role("button").click()
    expect(page.locator("#progress p.status")).to_have_class(re.compile("status-closed"))

    page.get_by_label("사건 번호").fill("not the id")
    page.get_by_role("button", name="영구 삭제").click()
    expect(page.locator(".problem .status")).to_have_text("422")  # nothing erased without the id typed
    page.goto(f"{console}/cases/{case_id}")
    page.get_by_label("사건 번호").fill(case_id)
    page.get_by_role("button", name="영구 삭제").click()
    expect(page.get_by_role("heading", name="사건 삭제됨")).to_be_visible()
    token = stack.token("supervisor")
    erased = httpx.get(f"{stack.url('intake')}/cases/{case_id}", headers={"authorization": f"Bearer {token}"})
    assert erased.status_code == 410

    page.goto(f"{console}/operations")  # the police had this case delivered: counted from the gateway's metrics
    delivered = page.locator("tr[data-agency='police'] td.delivered .count")
    assert int(delivered.inner_text()) >= 1

    page.goto(f"{console}/reports")  # notify's monitoring report, in the console's language
    page.get_by_role("button", name="보고서 보기").click()
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.get_by_role("heading", name="의뢰 모니터링 보고서")).to_be_visible()
    expect(page.get_by_role("cell", name="police", exact=True).first).to_be_visible()  # this case's referral
    assert VICTIM["name"] not in page.content()
    context.close()


def test_an_agency_reports_its_capacity(browser: Browser, console: str, stack: Stack) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "agency-smile-center")
    try:
        page.goto(f"{console}/capacity")
        page.get_by_label("현재 남은 자리").fill("7")
        page.get_by_role("button", name="보고").click()
        expect(page.locator("dd.remaining")).to_have_text("7")
    finally:
        token = stack.token("supervisor")
        httpx.delete(
            f"{stack.url('routing')}/agencies/smile-center/capacity", headers={"authorization": f"Bearer {token}"}
        )
        context.close()


def test_an_agency_starts_and_completes_its_referral(
    browser: Browser, console: str, delivered_case: tuple[str, str]
) -> None:
    _, referral_id = delivered_case  # accepted by the police's simulator
    context = new_context(browser, phone=True)
    page = context.new_page()
    sign_in(page, console, "agency-police")
    page.goto(f"{console}/inbox/{referral_id}")
    expect(page.locator("dd.state")).to_have_attribute("data-state", "accepted")
    page.get_by_role("button", name="지원 시작").click()
    expect(page.locator("dd.state")).to_have_attribute("data-state", "in_progress")
    page.get_by_label("결과").select_option("successful")
    page.get_by_role("button", name="완료 처리").click()
    expect(page.locator("dd.state")).to_have_attribute("data-state", "completed")
    expect(page.get_by_text("종료된 의뢰입니다.")).to_be_visible()
    context.close()


DEAD_LETTERED = "microfinance"  # no other test of this module sends it anything


def staff_get(stack: Stack, service: str, path: str, role: str = "supervisor") -> httpx.Response:
    return httpx.get(f"{stack.url(service)}{path}", headers={"authorization": f"Bearer {stack.token(role)}"})


@pytest.fixture
def refusing_agency(stack: Stack) -> Iterator[str]:
    """The agency's simulator answers 410 Gone to every referral: the gateway gives up at once and dead-letters it."""
    simulator = stack.url("agency-simulator")
    behaviour = {"action": "fail", "status": 410, "times": None}
    assert httpx.put(f"{simulator}/behaviour/{DEAD_LETTERED}", json=behaviour).status_code == 200
    try:
        yield DEAD_LETTERED
    finally:
        httpx.delete(f"{simulator}/behaviour/{DEAD_LETTERED}")


def test_an_operator_replays_a_dead_letter_once_the_agency_is_fixed(
    browser: Browser, console: str, stack: Stack, refusing_agency: str
) -> None:
    agency = refusing_agency
    case_id = submit_case_by_api(stack, ["financial"], [agency])
    wait_for(
        "the referral in the agency's DLQ, waiting for a replay",
        lambda: (
            case_id
            in {r["case_id"] for r in staff_get(stack, "agency-gateway", f"/agencies/{agency}/dead-letters").json()}
        ),
    )

    # Neither a caseworker's console nor the gateway's API lets anyone but an operator see or replay dead letters.
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "caseworker")
    replay_path = f"/operations/agencies/{agency}/dead-letters/replay"
    assert page.request.get(f"{console}/operations", max_redirects=0).status == 403
    csrf = next(c["value"] for c in context.cookies() if c["name"] == "console_csrf")
    assert page.request.post(console + replay_path, form={"csrf_token": csrf}, max_redirects=0).status == 403
    assert staff_get(stack, "agency-gateway", "/dead-letters", role="caseworker").status_code == 403
    caseworker = {"authorization": f"Bearer {stack.token('caseworker')}"}
    gateway_replay = f"{stack.url('agency-gateway')}/agencies/{agency}/dead-letters/replay"
    assert httpx.post(gateway_replay, headers=caseworker).status_code == 403
    context.close()

    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "supervisor")
    page.goto(f"{console}/operations")
    row = page.locator(f"tr.dead-letters[data-agency='{agency}'][data-reason='permanent_failure']")
    expect(row).to_be_visible()
    assert int(row.locator("td.waiting").inner_text()) >= 1
    row.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "console-dead-letters.png"), full_page=True)

    # The agency fixes its endpoint; the operator replays its dead letters from the console.
    assert httpx.delete(f"{stack.url('agency-simulator')}/behaviour/{agency}").status_code in (200, 204)
    row.get_by_role("button", name=re.compile("다시 보내기")).click()
    expect(page.locator("p.done .replayed-count")).to_be_visible()
    assert int(page.locator("p.done .replayed-count").inner_text()) >= 1
    context.close()

    # Delivered after all, once: the agency's simulator took it without a duplicate and accepted it.
    wait_for(
        "the replayed referral accepted",
        lambda: [r for r in referrals_of(stack, case_id) if r["agency_id"] == agency and r["state"] == "accepted"],
    )
    timeline = staff_get(stack, "notify", f"/cases/{case_id}/timeline").json()["events"]
    assert [e["agency_id"] for e in timeline if e["type"] == "referral.delivered"] == [agency]
    received = httpx.get(f"{stack.url('agency-simulator')}/agencies/{agency}/referrals").json()["referrals"]
    [taken] = [r for r in received if r["case_id"] == case_id and r["decision"] == "accept"]
    assert taken["duplicates"] == 0
    waiting = staff_get(stack, "agency-gateway", f"/agencies/{agency}/dead-letters").json()
    assert case_id not in {r["case_id"] for r in waiting}


STAGED_NEEDS = ["legal", "safety", "counselling", "employment"]


def test_a_caseworker_submits_a_staged_case_follows_its_plan_and_starts_its_next_stage(
    browser: Browser, caseworker: Page, console: str, stack: Stack, silent_police: None
) -> None:
    page = caseworker
    fill_case(page, console, STAGED_NEEDS, staged=True)  # the preview shows every need's agency, to consent to all
    for box in page.locator("input[type=checkbox][name^='consent.']").all():
        box.check()
    page.get_by_role("button", name="사건 접수").click()
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}$"))
    case_id = page.url.rsplit("/", 1)[-1]
    # The plan shows once notify has it; the page refreshes itself till then.
    crisis = page.locator("li.stage[data-stage='crisis']")
    legal = page.locator("li.stage[data-stage='investigation_legal']")
    expect(crisis).to_have_attribute("data-state", "active")
    expect(crisis.get_by_role("heading", name="위기 개입 및 안전")).to_be_visible()
    expect(crisis.locator(".stage-referrals li[data-agency='police']")).to_be_visible()
    expect(crisis.locator(".spent")).to_be_visible()
    expect(legal).to_have_attribute("data-state", "waiting")
    assert legal.locator(".stage-referrals li").count() == 0  # a later stage's needs wait for the caseworker
    assert [s.get_attribute("data-stage") for s in page.locator("li.stage").all()][:2] == [
        "crisis",
        "investigation_legal",
    ]
    page.screenshot(path=str(SHOTS / "console-plan.png"), full_page=True)

    page.get_by_role("button", name="다음 단계 시작").click()
    expect(crisis).to_have_attribute("data-state", "done")
    expect(legal).to_have_attribute("data-state", "active")
    expect(legal.locator(".stage-referrals li").first).to_be_visible()  # the legal need, routed on advancing
    expect(page.locator("li.stage[data-stage='recovery']")).to_have_attribute("data-state", "waiting")

    page.goto(f"{console}/language/en?back=/cases/{case_id}")
    expect(crisis.get_by_role("heading", name="Crisis and safety")).to_be_visible()
    expect(page.get_by_role("button", name="Start the next stage")).to_be_visible()
    assert not untranslated(page, "en")
    page.goto(f"{console}/language/ko?back=/cases/{case_id}")
    expect(page.get_by_role("button", name="다음 단계 시작")).to_be_visible()
    assert not untranslated(page, "ko")


def test_a_supervisor_sets_and_forgets_an_agencys_capacity(browser: Browser, console: str, stack: Stack) -> None:
    agency = "seoul-welfare"
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, console, "supervisor")
    try:
        page.goto(f"{console}/capacities")
        row = page.locator(f"tr.capacity[data-agency='{agency}']")
        expect(row.locator("td.reported")).to_have_text("보고 없음")
        row.get_by_label(re.compile("현재 남은 자리")).fill("4")
        row.get_by_role("button", name=re.compile("^설정")).click()
        expect(row.locator("td.remaining")).to_have_text("4")
        report = staff_get(stack, "routing", f"/agencies/{agency}/capacity").json()["report"]
        assert report["remaining"] == 4
        page.screenshot(path=str(SHOTS / "console-capacities.png"), full_page=True)
        row.get_by_role("button", name=re.compile("^보고 지우기")).click()
        expect(row.locator("td.reported")).to_have_text("보고 없음")
        assert staff_get(stack, "routing", f"/agencies/{agency}/capacity").json()["report"] is None
    finally:
        token = stack.token("supervisor")
        httpx.delete(f"{stack.url('routing')}/agencies/{agency}/capacity", headers={"authorization": f"Bearer {token}"})
        context.close()


def test_a_caseworker_closes_a_need_no_agency_could_take_with_a_reason(
    caseworker: Page, console: str, stack: Stack
) -> None:
    # Housing: consented for no agency that offers it, so routing holds it pending (and keeps trying).
    case_id = submit_case_by_api(stack, ["safety", "housing"], ["police"])
    wait_for(
        "housing pending on the case's status",
        lambda: (
            [p["need"] for p in staff_get(stack, "notify", f"/cases/{case_id}/status").json().get("pending_needs", [])]
            == ["housing"]
        ),
    )
    page = caseworker
    page.goto(f"{console}/cases/{case_id}")
    row = page.locator("tr.pending-need[data-need='housing']")
    expect(row).to_be_visible()
    expect(row.locator("td.why")).not_to_be_empty()  # routing's reason: each candidate's, e.g. no consent
    row.get_by_label("사유").select_option("arranged_outside_network")
    row.get_by_role("button", name=re.compile("이 지원 종료")).click()
    page.wait_for_url(re.compile(f"/cases/{case_id}"))
    expect(page.locator("tr.pending-need")).to_have_count(0)
    pending = staff_get(stack, "routing", f"/cases/{case_id}/pending-needs").json()["pending_needs"]
    assert pending == []


EMPLOYMENT = ("employment-center", "seoul-job-center")  # both take employment in Seoul


def complete_by_api(stack: Stack, referral: dict[str, Any], outcome: str, reason: str | None = None) -> None:
    """The agency ends its work on the referral, with its own token (as its own system would)."""
    agency = referral["agency_id"]
    body = {"outcome": outcome, "reason": reason} if reason else {"outcome": outcome}
    answer = httpx.post(
        f"{stack.url('notify')}/referrals/{referral['referral_id']}/complete",
        json=body,
        headers={"authorization": f"Bearer {stack.token('agency', agency)}"},
    )
    assert answer.status_code == 200, answer.text


def test_a_caseworker_works_off_follow_ups_and_accepts_a_re_routing_in_the_console(
    caseworker: Page, console: str, stack: Stack
) -> None:
    mine = {"id": "dev-caseworker", "email": "dev-caseworker@centre.example"}  # the console's dev caseworker
    case_id = submit_case_by_api(stack, ["employment"], list(EMPLOYMENT), caseworker=mine)
    [first] = wait_for(
        "the employment referral accepted",
        lambda: [r for r in referrals_of(stack, case_id) if r["state"] == "accepted"],
    )
    [other] = set(EMPLOYMENT) - {first["agency_id"]}
    complete_by_api(stack, first, "not_successful", "lack_of_capacity")

    # Another caseworker's own list leaves it out; everyone's has it, once notify has opened the task.
    stranger = {"authorization": f"Bearer {issue_token(stack.env['AUTH_SECRET'], Role.caseworker, 'cw-other')}"}

    def listed(query: str) -> set[str]:
        answer = httpx.get(f"{stack.url('notify')}/follow-ups?{query}", headers=stranger)
        return {task["case_id"] for task in answer.json()}

    wait_for("the follow-up opened", lambda: case_id in listed("state=open"))
    assert case_id not in listed("state=open&mine=true")

    # The caseworker's home lists the follow-up as theirs; its case page proposes re-routing, with a label.
    caseworker.goto(f"{console}/cases")
    expect(caseworker.locator("p.whose a[aria-current=page]")).to_have_text("내 사건")
    due = caseworker.locator(f"tr.follow-up-due[data-case='{case_id}']")
    expect(due).to_contain_text("재연계 제안")
    expect(caseworker.locator("body")).not_to_contain_text("reroute_proposed")
    due.get_by_role("link").click()
    task = caseworker.locator(f"tr.follow-up[data-agency='{first['agency_id']}']")
    expect(task).to_have_attribute("data-state", "open")
    expect(task.locator(".proposal")).to_have_attribute("data-proposal", "proposed")
    caseworker.screenshot(path=str(SHOTS / "console-follow-ups.png"), full_page=True)
    task.get_by_role("button", name=re.compile("다른 기관 찾기")).click()
    expect(task).to_have_attribute("data-state", "done")
    expect(task).to_contain_text("다른 기관으로 재연계함")

    # Routing gives the need to the other agency, whose simulator accepts; it completes successfully, and the
    # caseworker closes that follow-up with what the victim said.
    second = wait_for(
        "the need re-routed and accepted",
        lambda: [r for r in referrals_of(stack, case_id) if r["agency_id"] == other and r["state"] == "accepted"],
    )[0]
    complete_by_api(stack, second, "successful")
    caseworker.goto(f"{console}/cases/{case_id}")
    task = caseworker.locator(f"tr.follow-up[data-agency='{other}']")
    expect(task).to_have_attribute("data-state", "open")
    task.get_by_label("확인 결과").select_option("needs_met")
    task.get_by_role("button", name=re.compile("사후 확인 완료")).click()
    task = caseworker.locator(f"tr.follow-up[data-agency='{other}']")
    expect(task).to_have_attribute("data-state", "done")
    expect(task).to_contain_text("피해자가 필요한 도움을 받음")
    tasks = staff_get(stack, "notify", f"/cases/{case_id}/status", "caseworker").json()["follow_ups"]
    assert {(t["agency_id"], t["outcome"]) for t in tasks} == {(first["agency_id"], "rerouted"), (other, "needs_met")}
    caseworker.goto(f"{console}/cases")
    expect(caseworker.locator(f"tr.follow-up-due[data-case='{case_id}']")).to_have_count(0)

"""The console's OpenID Connect sign-in in a real browser on the real stack: a provider of the test's own
(tests/oidc_provider.py) served on a loopback port, the console restarted to use it (as test_prometheus_alerts.py
restarts it with Prometheus), and users clicking "Sign in with the centre's account". A caseworker's session then
works against the real services: the home page with their own follow-ups from notify, the case form with their
address from the provider, and a case submitted whose caseworker intake records as the provider's subject."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from console.i18n import Translator
from console.session import SESSION_COOKIE
from devstack.ports import free_ports
from devstack.stack import Stack
from kit.auth import Role, verify_token
from playwright.sync_api import Browser, Page, expect

from tests.e2e import test_console
from tests.e2e.helpers import restart
from tests.e2e.test_console import fill_case, new_context, staff_get
from tests.oidc_provider import AGENCY_CLAIM, ROLE_CLAIM, OidcProvider

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
browser = test_console.browser  # the browser tests' Chromium fixture, started for this module as for that one

KO = Translator("ko")
CLIENT_ID = "onestop-console"
CLIENT_SECRET = "e2e client secret of the test provider"
CASEWORKER = {"sub": "oidc-cw-1", "email": "oidc-cw-1@centre.example", "email_verified": True, ROLE_CLAIM: "caseworker"}


@pytest.fixture(scope="module")
def provider(stack: Stack) -> Iterator[OidcProvider]:
    """The test's provider on a free loopback port, and the console restarted to sign users in with it; the console's
    own settings back afterwards."""
    console = dict(stack.processes["console"].env)
    console.pop("HTTP_PORT", None)
    [port] = free_ports(1)
    issuer = f"http://127.0.0.1:{port}"
    callback = f"{stack.url('console')}/signin/oidc/callback"
    provider = OidcProvider(issuer, CLIENT_ID, CLIENT_SECRET, callback, dict(CASEWORKER)).serve(port)
    oidc = {
        "CONSOLE_OIDC_ISSUER": issuer,
        "CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
        "CONSOLE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "CONSOLE_OIDC_REDIRECT_URL": callback,
    }
    restart(stack, ("console",), {**console, **oidc})
    try:
        yield provider
    finally:
        provider.stop()
        restart(stack, ("console",), console)


@contextmanager
def signed_in(browser: Browser, stack: Stack, provider: OidcProvider, user: dict[str, Any]) -> Iterator[Page]:
    """A browser of its own whose user clicks "Sign in with the centre's account", the provider signing in `user`."""
    provider.user = dict(user)
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{stack.url('console')}/signin")
        page.get_by_role("link", name=KO.gettext("Sign in with the centre's account")).click()
        page.wait_for_load_state()
        yield page
    finally:
        context.close()


def session_of(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE), None)


def test_a_caseworker_signs_in_with_the_centres_account_and_works_on_the_services(
    browser: Browser, provider: OidcProvider, stack: Stack
) -> None:
    console = stack.url("console")
    with signed_in(browser, stack, provider, CASEWORKER) as page:
        page.wait_for_url(f"{console}/cases")
        [asked] = provider.authorized[-1:]
        assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
        assert provider.exchanges and provider.refusals == []
        token = session_of(page)
        assert token is not None and "console_oidc" not in {c["name"] for c in page.context.cookies()}
        principal = verify_token(stack.env["AUTH_SECRET"], token)
        assert (principal.role, principal.subject) == (Role.caseworker, CASEWORKER["sub"])
        assert principal.email == CASEWORKER["email"]

        # The home page: the caseworker's own follow-ups, asked of notify with the session's token.
        home = page.goto(f"{console}/cases")
        assert home is not None and home.status == 200
        expect(page.get_by_role("heading", name=KO.gettext("Follow-ups due"))).to_be_visible()
        mine = page.locator('a[href="/cases?follow_ups=mine#follow-ups"]')
        expect(mine).to_have_attribute("aria-current", "page")

        # The case form has the provider's address for the case's alerts; submitted, intake records the caseworker.
        form = page.goto(f"{console}/cases/new")
        assert form is not None and form.status == 200
        expect(page.locator("[name='caseworker.email']")).to_have_value(CASEWORKER["email"])
        fill_case(page, console, ["safety"])
        for box in page.locator("input[type=checkbox][name^='consent.']").all():
            box.check()
        page.get_by_role("button", name=KO.gettext("Submit the case")).click()
        page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}$"))
        case_id = page.url.rsplit("/", 1)[-1]
        recorded = staff_get(stack, "intake", f"/cases/{case_id}", "caseworker").json()["caseworker"]
        assert recorded == {"id": CASEWORKER["sub"], "email": CASEWORKER["email"]}


def test_an_agency_user_signs_in_to_its_inbox(browser: Browser, provider: OidcProvider, stack: Stack) -> None:
    police = {"sub": "oidc-police-desk", ROLE_CLAIM: "agency", AGENCY_CLAIM: "police"}
    with signed_in(browser, stack, provider, police) as page:
        page.wait_for_url(f"{stack.url('console')}/inbox")
        expect(page.get_by_role("heading", name=KO.gettext("Referrals awaiting your answer"))).to_be_visible()
        token = session_of(page)
        assert token is not None and verify_token(stack.env["AUTH_SECRET"], token).agency == "police"


@pytest.mark.parametrize(
    "user",
    [
        {"sub": "oidc-auditor", ROLE_CLAIM: "auditor"},
        {"sub": "oidc-desk", ROLE_CLAIM: "agency", AGENCY_CLAIM: "nowhere"},
    ],
    ids=["auditor", "unknown agency"],
)
def test_a_user_the_console_may_not_sign_in_reads_why_and_gets_no_session(
    browser: Browser, provider: OidcProvider, stack: Stack, user: dict[str, Any]
) -> None:
    with signed_in(browser, stack, provider, user) as page:
        expect(page.locator("p.problem[role=alert]")).to_be_visible()
        assert page.url.startswith(f"{stack.url('console')}/signin/oidc/callback") and session_of(page) is None
        assert "Traceback" not in page.content()

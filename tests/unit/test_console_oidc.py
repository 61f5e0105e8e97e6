"""The console's OpenID Connect sign-in against a provider of the test's own (tests/oidc_provider.py: discovery, keys,
/authorize, and a token endpoint checking the client's credentials and the PKCE verifier) behind the console's HTTP
client: the happy paths per role, and every forged, stale or foreign answer refused without a session."""

import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest
from console import oidc
from console.session import SESSION_COOKIE
from console.settings import ConsoleSettings
from fastapi.testclient import TestClient
from kit.auth import Role, verify_token
from markupsafe import escape
from pydantic import ValidationError

from tests.oidc_provider import AGENCY_CLAIM, ROLE_CLAIM, OidcProvider, new_key
from tests.unit.test_console import SECRET, FakeApis, console

ISSUER = "https://id.centre.test/realms/onestop"
CLIENT_ID = "onestop-console"
CLIENT_SECRET = "a client secret: with/odd+characters&more"  # form-encoded before HTTP Basic (RFC 6749 2.3.1)
REDIRECT = "https://console.test/signin/oidc/callback"
CASEWORKER = {"sub": "3f1c9a70-cw", "email": "kim@centre.example", "email_verified": True, ROLE_CLAIM: "caseworker"}
OIDC = {
    "console_oidc_issuer": ISSUER,
    "console_oidc_client_id": CLIENT_ID,
    "console_oidc_client_secret": CLIENT_SECRET,
    "console_oidc_redirect_url": REDIRECT,
}


@pytest.fixture
def provider() -> OidcProvider:
    return OidcProvider(ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT, dict(CASEWORKER))


def oidc_console(
    provider: OidcProvider, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[TestClient, FakeApis]:
    """The console configured for the provider, its HTTP client answered by it; the services faked."""
    client, fake = console(**OIDC)
    fake.client = httpx.AsyncClient(transport=transport or provider.transport())
    client.cookies.set("console_lang", "en")
    return client, fake


def to_provider(client: TestClient) -> httpx.Response:
    answer = client.get("/signin/oidc")
    assert answer.status_code == 303, answer.text
    return answer


def provider_signs_in(provider: OidcProvider, authorize_url: str) -> str:
    """The provider's /authorize, as the browser follows the console's redirect: where it sends the browser back."""
    assert authorize_url.startswith(f"{ISSUER}/authorize?")
    answer = provider.answer("GET", authorize_url.removeprefix("https://id.centre.test"), {}, b"")
    assert answer.status == 303
    return answer.headers["location"]


def sign_in(client: TestClient, provider: OidcProvider) -> httpx.Response:
    """The whole round: the console's redirect, the provider's sign-in, the console's callback."""
    back = provider_signs_in(provider, to_provider(client).headers["location"])
    assert back.startswith(REDIRECT + "?")
    return client.get(back)


def set_cookie(answer: httpx.Response, name: str) -> set[str]:
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(name + "="))
    return {part.strip() for part in header.split(";")}


def refused(answer: httpx.Response, status: int, message: str) -> None:
    """A readable sign-in page, no session, no stack trace and no token."""
    assert answer.status_code == status, answer.text
    assert escape(message) in answer.text and 'role="alert"' in answer.text
    assert SESSION_COOKIE not in answer.cookies
    assert "Traceback" not in answer.text and "eyJ" not in answer.text


@pytest.fixture
def reasons(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The reason codes the console logged for its refusals (the only thing it logs of them, with the role)."""
    caplog.set_level(logging.WARNING, logger="console.oidc")
    return lambda: [str(r.args[1]) for r in caplog.records if r.name == "console.oidc" and isinstance(r.args, tuple)]


NOT_VERIFIED = "The centre's account could not be verified; start the sign-in again."
RESTART = "The sign-in took too long or was started in another window; start it again."
UNREACHABLE = "The centre's sign-in service cannot be reached now; try again in a moment."


def test_a_caseworker_signs_in_with_the_centres_account_and_lands_on_the_cases(provider: OidcProvider) -> None:
    client, fake = oidc_console(provider)
    answer = to_provider(client)

    # To the provider: the code flow with PKCE (S256), a state and a nonce, for the registered client.
    asked = dict(httpx.URL(answer.headers["location"]).params)
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID and asked["redirect_uri"] == REDIRECT
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["nonce"] and asked["state"] and asked["nonce"] != asked["state"]
    assert asked["scope"] == "openid email profile"
    # What the callback checks is kept in a ten-minute cookie for the callback only, which the provider's
    # top-level redirect brings back (Lax), which no script reads, and which holds nothing personal.
    flags = set_cookie(answer, oidc.STATE_COOKIE)
    assert {"HttpOnly", "Secure", "SameSite=lax", "Path=/signin/oidc", "Max-Age=600"} <= flags
    kept = jwt.decode(client.cookies[oidc.STATE_COOKIE], options={"verify_signature": False})
    assert set(kept) == {"aud", "iat", "exp", "state", "nonce", "verifier"} and kept["state"] == asked["state"]

    back = provider_signs_in(provider, answer.headers["location"])
    signed_in = client.get(back)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    # The code was redeemed once, with the PKCE verifier (the provider checked it against the challenge).
    [exchange] = provider.exchanges
    assert exchange["code_verifier"] == kept["verifier"] and exchange["redirect_uri"] == REDIRECT
    assert oidc.STATE_COOKIE not in client.cookies  # used once, then gone

    # The session is a token the services accept: AUTH_SECRET's, with the provider's subject and e-mail address.
    token = signed_in.cookies[SESSION_COOKIE]
    assert {"HttpOnly", "Secure", "SameSite=strict"} <= set_cookie(signed_in, SESSION_COOKIE)
    principal = verify_token(SECRET, token)
    assert (principal.role, principal.subject, principal.email) == (
        Role.caseworker,
        "3f1c9a70-cw",
        "kim@centre.example",
    )
    assert jwt.decode(token, options={"verify_signature": False})["exp"] - time.time() <= 8 * 3600
    home = client.get("/", follow_redirects=True)
    assert home.status_code == 200 and home.url.path == "/cases"
    assert ("notify", "GET", "/follow-ups?state=open&limit=100&mine=true", token) in fake.calls
    assert client.get("/cases/new").text.count('value="kim@centre.example"') == 1  # the case form's address


def test_an_agency_user_of_a_known_agency_lands_on_its_inbox(provider: OidcProvider) -> None:
    provider.user = {"sub": "police-desk-4", ROLE_CLAIM: "agency", AGENCY_CLAIM: "police"}
    client, fake = oidc_console(provider)
    fake.answers["/referrals"] = []
    signed_in = sign_in(client, provider)
    assert signed_in.status_code == 303
    principal = verify_token(SECRET, signed_in.cookies[SESSION_COOKIE])
    assert (principal.role, principal.agency, principal.email) == (Role.agency, "police", None)
    # Routing's catalogue was asked with the user's own new token whether the agency is one of the centre's.
    assert ("routing", "GET", "/agencies", signed_in.cookies[SESSION_COOKIE]) in fake.calls
    home = client.get("/", follow_redirects=True)
    assert home.status_code == 200 and home.url.path == "/inbox"


@pytest.mark.parametrize("agency", [None, "nowhere", ["police"]], ids=["no agency", "unknown agency", "a list"])
def test_an_agency_user_without_one_of_the_centres_agencies_is_refused(provider: OidcProvider, agency: Any) -> None:
    provider.user = {"sub": "desk-9", ROLE_CLAIM: "agency", AGENCY_CLAIM: agency}
    client, _ = oidc_console(provider)
    refused(sign_in(client, provider), 403, "not linked to one of the centre's agencies")


@pytest.mark.parametrize("role", ["service", "auditor", "administrator", None, ["caseworker"]], ids=str)
def test_a_role_the_console_does_not_sign_in_is_refused(
    provider: OidcProvider, role: Any, reasons: Callable[[], list[str]]
) -> None:
    provider.user = {"sub": "someone", ROLE_CLAIM: role}
    client, _ = oidc_console(provider)
    refused(sign_in(client, provider), 403, "Your account has no role in the console")
    assert reasons() == ["role_refused"]


def test_the_role_and_agency_claims_are_the_configured_ones(provider: OidcProvider) -> None:
    provider.user = {"sub": "sv-2", "groups_role": "supervisor", ROLE_CLAIM: "caseworker"}
    client, fake = console(**OIDC, console_oidc_role_claim="groups_role")
    fake.client = httpx.AsyncClient(transport=provider.transport())
    assert verify_token(SECRET, sign_in(client, provider).cookies[SESSION_COOKIE]).role is Role.supervisor


def test_a_callback_whose_state_is_not_the_cookies_is_refused_before_the_code_is_redeemed(
    provider: OidcProvider, reasons: Callable[[], list[str]]
) -> None:
    client, _ = oidc_console(provider)
    back = httpx.URL(provider_signs_in(provider, to_provider(client).headers["location"]))
    forged = back.copy_set_param("state", "an-attackers-state")
    refused(client.get(str(forged)), 401, RESTART)
    assert provider.exchanges == [] and reasons() == ["state_mismatch"]


def test_a_callback_without_its_cookie_is_refused(provider: OidcProvider, reasons: Callable[[], list[str]]) -> None:
    client, _ = oidc_console(provider)
    back = provider_signs_in(provider, to_provider(client).headers["location"])
    client.cookies.delete(oidc.STATE_COOKIE, domain="console.test", path="/signin/oidc")
    refused(client.get(back), 401, RESTART)
    assert provider.exchanges == [] and reasons() == ["no_state"]


def test_a_state_cookie_older_than_ten_minutes_is_refused(
    provider: OidcProvider, monkeypatch: pytest.MonkeyPatch, reasons: Callable[[], list[str]]
) -> None:
    client, _ = oidc_console(provider)
    eleven_minutes_ago = SimpleNamespace(time=lambda: time.time() - 660, monotonic=time.monotonic)
    with monkeypatch.context() as then:
        then.setattr(oidc, "time", eleven_minutes_ago)
        location = to_provider(client).headers["location"]
    refused(client.get(provider_signs_in(provider, location)), 401, RESTART)
    assert provider.exchanges == [] and reasons() == ["state_expired"]


def test_a_state_cookie_signed_with_another_key_is_refused(
    provider: OidcProvider, reasons: Callable[[], list[str]]
) -> None:
    client, _ = oidc_console(provider)
    location = to_provider(client).headers["location"]
    kept = jwt.decode(client.cookies[oidc.STATE_COOKIE], options={"verify_signature": False})
    forged = jwt.encode(kept, SECRET.encode(), algorithm="HS256")  # AUTH_SECRET itself is not the cookie's key
    client.cookies.set(oidc.STATE_COOKIE, forged, domain="console.test", path="/signin/oidc")
    refused(client.get(provider_signs_in(provider, location)), 401, RESTART)
    assert reasons() == ["state_invalid"]


def forge_with(
    how: Callable[[OidcProvider, dict[str, Any]], str], offering: str = ""
) -> Callable[[OidcProvider], None]:
    """ID tokens signed `how`; with `offering`, the provider's discovery document says it signs them so too."""

    def forge(provider: OidcProvider) -> None:
        provider.signer = lambda claims: how(provider, claims)
        provider.algorithms += [offering] if offering else []

    return forge


def tamper(**claims: Any) -> Callable[[OidcProvider], None]:
    def change(provider: OidcProvider) -> None:
        provider.overrides = claims

    return change


@pytest.mark.parametrize(
    "spoil, reason",
    [
        pytest.param(tamper(nonce="another-sign-in"), "nonce_mismatch", id="wrong nonce"),
        pytest.param(tamper(nonce=None), "id_token_MissingRequiredClaimError", id="no nonce"),
        pytest.param(tamper(aud="another-client"), "id_token_InvalidAudienceError", id="wrong audience"),
        pytest.param(tamper(aud=[CLIENT_ID, "another-client"]), "id_token_azp", id="two audiences, no azp"),
        pytest.param(tamper(iss="https://id.elsewhere.test"), "id_token_InvalidIssuerError", id="wrong issuer"),
        pytest.param(
            tamper(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "id_token_expired", id="expired"
        ),
        pytest.param(tamper(sub=None), "id_token_MissingRequiredClaimError", id="no subject"),
        pytest.param(
            forge_with(lambda p, c: p.sign(c, key=new_key())),
            "id_token_InvalidSignatureError",
            id="another key, same kid",
        ),
        pytest.param(
            forge_with(lambda p, c: p.sign(c, key=new_key(), kid="rogue")), "unknown_key", id="another key, unknown kid"
        ),
        pytest.param(
            forge_with(lambda p, c: jwt.encode(c, None, algorithm="none"), offering="none"),
            "algorithm_refused",
            id="alg none",
        ),
        pytest.param(
            forge_with(lambda p, c: jwt.encode(c, CLIENT_SECRET, algorithm="HS256"), offering="HS256"),
            "algorithm_refused",
            id="HS256",
        ),
        pytest.param(
            forge_with(lambda p, c: p.sign(c, algorithm="RS384")), "algorithm_refused", id="an algorithm not offered"
        ),
    ],
)
def test_an_id_token_not_for_this_sign_in_or_not_the_providers_is_refused(
    provider: OidcProvider, spoil: Callable[[OidcProvider], None], reason: str, reasons: Callable[[], list[str]]
) -> None:
    client, _ = oidc_console(provider)
    spoil(provider)
    refused(sign_in(client, provider), 401, NOT_VERIFIED)
    assert reasons() == [reason]
    assert len(provider.exchanges) == 1  # the code was redeemed; what came back was not taken


def test_keys_the_provider_rotated_are_fetched_again(provider: OidcProvider) -> None:
    client, _ = oidc_console(provider)
    assert sign_in(client, provider).status_code == 303  # the provider's keys now cached by the console
    provider.key, provider.kid = new_key(), "test-key-2"
    client.cookies.clear()
    client.cookies.set("console_lang", "en")
    answer = sign_in(client, provider)
    assert answer.status_code == 303 and SESSION_COOKIE in answer.cookies


def test_a_code_the_provider_does_not_redeem_is_refused(provider: OidcProvider) -> None:
    client, _ = oidc_console(provider)
    back = httpx.URL(provider_signs_in(provider, to_provider(client).headers["location"]))
    refused(client.get(str(back.copy_set_param("code", "a-code-never-given"))), 401, NOT_VERIFIED)
    assert provider.refusals == ["invalid_grant"]


def test_the_client_authenticates_with_its_secret_at_the_token_endpoint(provider: OidcProvider) -> None:
    client, _ = oidc_console(provider)
    provider.client_secret = "the secret the provider knows"
    refused(sign_in(client, provider), 401, NOT_VERIFIED)
    assert provider.refusals == ["invalid_client"]


def test_the_providers_refusal_is_shown_readably(provider: OidcProvider) -> None:
    client, _ = oidc_console(provider)
    to_provider(client)
    answer = client.get("/signin/oidc/callback?error=access_denied&error_description=%3Cb%3Eno%3C/b%3E&state=x")
    refused(answer, 401, "The centre's account sign-in was cancelled or refused.")
    assert "<b>no</b>" not in answer.text and oidc.STATE_COOKIE not in client.cookies
    client.cookies.set("console_lang", "ko")
    to_provider(client)
    korean = client.get("/signin/oidc/callback?error=access_denied")
    assert korean.status_code == 401 and "센터 계정 로그인이 취소되었거나 거부되었습니다." in korean.text


def test_a_provider_that_cannot_be_reached_is_a_readable_503(provider: OidcProvider) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = oidc_console(provider, httpx.MockTransport(down))
    answer = client.get("/signin/oidc")
    refused(answer, 503, UNREACHABLE)
    assert "id.centre.test" not in answer.text


def test_a_token_endpoint_failing_is_a_readable_503(provider: OidcProvider) -> None:
    answering = provider.transport()

    def token_endpoint_down(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return answering.handle_request(request)

    client, _ = oidc_console(provider, httpx.MockTransport(token_endpoint_down))
    refused(sign_in(client, provider), 503, UNREACHABLE)


def test_a_discovery_document_of_another_issuer_is_not_used(
    provider: OidcProvider, monkeypatch: pytest.MonkeyPatch, reasons: Callable[[], list[str]]
) -> None:
    elsewhere = {**provider.discovery(), "issuer": "https://id.elsewhere.test"}
    monkeypatch.setattr(provider, "discovery", lambda: elsewhere)
    client, _ = oidc_console(provider)
    refused(client.get("/signin/oidc"), 503, UNREACHABLE)
    assert reasons() == ["discovery_issuer"] and provider.authorized == []


def test_the_sign_in_page_offers_the_centres_account_only_when_configured(provider: OidcProvider) -> None:
    client, _ = oidc_console(provider)
    page = client.get("/signin").text
    assert 'href="/signin/oidc"' in page and "Sign in with the centre&#39;s account" in page
    plain, _ = console()
    assert 'href="/signin/oidc"' not in plain.get("/signin").text
    assert plain.get("/signin/oidc").status_code == 404
    assert plain.get("/signin/oidc/callback?code=x&state=y").status_code == 404


@pytest.mark.parametrize(
    "settings, complaint",
    [
        ({"console_oidc_issuer": ISSUER}, "CONSOLE_OIDC_CLIENT_ID"),
        ({**OIDC, "console_oidc_client_secret": None}, "CONSOLE_OIDC_CLIENT_ID"),
        ({"console_oidc_client_id": CLIENT_ID}, "need CONSOLE_OIDC_ISSUER"),
        ({**OIDC, "console_oidc_issuer": "http://id.centre.test"}, "CONSOLE_OIDC_ISSUER must be an https URL"),
        ({**OIDC, "console_oidc_issuer": "id.centre.test"}, "CONSOLE_OIDC_ISSUER must be an https URL"),
        ({**OIDC, "console_oidc_redirect_url": "http://console.test/cb"}, "CONSOLE_OIDC_REDIRECT_URL must be"),
        ({**OIDC, "console_oidc_scopes": "email profile"}, "must include openid"),
        ({**OIDC, "auth_secret": None}, "needs AUTH_SECRET"),
    ],
)
def test_the_settings_refuse_an_incomplete_or_insecure_provider(settings: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint) as refusal:
        ConsoleSettings(**{"auth_secret": SECRET, **settings})
    assert CLIENT_SECRET not in str(refusal.value)


def test_the_settings_take_a_complete_provider_and_loopback_http_for_development() -> None:
    assert not ConsoleSettings().oidc_enabled
    loopback = {
        **OIDC,
        "console_oidc_issuer": "http://127.0.0.1:8099",
        "console_oidc_redirect_url": "http://localhost:8005/signin/oidc/callback",
    }
    settings = ConsoleSettings(auth_secret=SECRET, **loopback)
    assert settings.oidc_enabled and settings.console_oidc_role_claim == "onestop_role"
    assert settings.console_oidc_agency_claim == "onestop_agency"

"""Signing in with the centre's OpenID Connect provider: the authorization code flow with PKCE, the console being the
confidential client (a backend for the browser).

`/signin/oidc` sends the browser to the provider with a fresh state, nonce and PKCE challenge, kept in a signed
ten-minute cookie. `/signin/oidc/callback` checks the state, exchanges the code at the provider's token endpoint
(client_secret_basic), verifies the ID token against the provider's published keys, maps its role and agency claims
and keeps, with `keep_session`, a token the services accept (kit.auth, signed with AUTH_SECRET): the provider's own
tokens go no further than here. A refusal is logged by a short reason code only (with the role, at most)."""

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import quote_plus, urlencode

import httpx
import jwt
from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response
from kit.auth import CLOCK_SKEW_SECONDS, Role, issue_token

from .apis import ApiError
from .labels import N_
from .pages import AnyPage, Page
from .session import keep_session
from .settings import ConsoleSettings, secure_url
from .signin import sign_in_page

log = logging.getLogger(__name__)
router = APIRouter()

STATE_COOKIE = "console_oidc"
STATE_PATH = "/signin/oidc"  # the cookie goes to the callback only
STATE_SECONDS = 600
STATE_AUDIENCE = "onestop-console-oidc-state"  # never a service's token, whatever else it says
# Asymmetric only: never `none`, never HS* (a provider's public key must not become an HMAC secret).
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
SIGN_IN_ROLES = (Role.caseworker, Role.supervisor, Role.agency)
CACHE_SECONDS = 3600.0  # the discovery document and keys; an unknown key id fetches the keys again at once
MAX_SUBJECT = 64  # the services' contracts name a caseworker by at most this many characters
PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")

UNREACHABLE = N_("The centre's sign-in service cannot be reached now; try again in a moment.")
RESTART = N_("The sign-in took too long or was started in another window; start it again.")
NOT_VERIFIED = N_("The centre's account could not be verified; start the sign-in again.")
NO_AGENCY = N_("Your account is not linked to one of the centre's agencies; ask your administrator.")


class Refused(Exception):
    """A sign-in refused: `reason` is a short code to log, `message` the English id of what the user reads."""

    def __init__(self, reason: str, status: int, message: str, role: str = "none") -> None:
        super().__init__(reason)
        self.reason, self.status, self.message, self.role = reason, status, message, role


@dataclass(frozen=True)
class Discovery:
    """What the console uses of the provider's discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: list[str]


class Provider:
    """The provider's discovery document and signing keys, fetched when first needed and kept for an hour."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._discovery: tuple[float, Discovery] | None = None
        self._keys: tuple[float, jwt.PyJWKSet] | None = None

    async def discovery(self, client: httpx.AsyncClient) -> Discovery:
        if self._discovery is not None and time.monotonic() - self._discovery[0] < CACHE_SECONDS:
            return self._discovery[1]
        document = await _fetch(client, self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if document.get("issuer") != self.issuer:  # OpenID Connect Discovery 1.0, 4.3: exactly the one configured
            raise Refused("discovery_issuer", 503, UNREACHABLE)
        authorize, token, keys = (document.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri"))
        offered = document.get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = [a for a in SIGNING_ALGORITHMS if isinstance(offered, list) and a in offered]
        if not (_endpoint(authorize) and _endpoint(token) and _endpoint(keys) and algorithms):
            raise Refused("discovery_unusable", 503, UNREACHABLE)
        found = Discovery(authorize, token, keys, algorithms)
        self._discovery = (time.monotonic(), found)
        return found

    async def signing_key(self, client: httpx.AsyncClient, key_id: str | None) -> Any:
        """The public key the ID token names (`kid`), or the provider's only one; keys not known here are fetched
        again once (the provider may have rotated them)."""
        cached = self._keys
        fresh = cached is None or time.monotonic() - cached[0] >= CACHE_SECONDS
        keys = await self._fetch_keys(client) if fresh or cached is None else cached[1]
        key = _signing_key(keys, key_id)
        if key is None and not fresh:
            key = _signing_key(await self._fetch_keys(client), key_id)
        if key is None:
            raise Refused("unknown_key", 401, NOT_VERIFIED)
        return key

    async def _fetch_keys(self, client: httpx.AsyncClient) -> jwt.PyJWKSet:
        document = await _fetch(client, (await self.discovery(client)).jwks_uri)
        try:
            keys = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError:
            raise Refused("keys_unusable", 503, UNREACHABLE) from None
        self._keys = (time.monotonic(), keys)
        return keys


def _signing_key(keys: jwt.PyJWKSet, key_id: str | None) -> Any:
    # Signing keys with a public part only: an `oct` key is a shared secret, never the provider's to sign with.
    usable = [k for k in keys.keys if k.public_key_use in (None, "sig") and not isinstance(k.key, bytes)]
    chosen = [k for k in usable if key_id is None or k.key_id == key_id]
    return chosen[0].key if len(chosen) == 1 else None  # without a `kid`, only a provider with one key says which


def _endpoint(url: Any) -> TypeGuard[str]:
    return isinstance(url, str) and secure_url(url)


async def _fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        answer = await client.get(url, headers={"accept": "application/json"})
        document = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        document = None
    if not isinstance(document, dict):
        raise Refused("provider_unreachable", 503, UNREACHABLE)
    return document


def provider_of(p: Page) -> Provider:
    """The app's one Provider (its cache), made on the first sign-in; 404 where OpenID Connect is not configured."""
    if p.settings.console_oidc_issuer is None:
        raise HTTPException(404)
    state = p.request.app.state
    if getattr(state, "oidc_provider", None) is None:
        state.oidc_provider = Provider(p.settings.console_oidc_issuer)
    provider: Provider = state.oidc_provider
    return provider


def _random() -> str:
    return secrets.token_urlsafe(32)


def _state_key(settings: ConsoleSettings) -> bytes:
    """A key of its own for the state cookie, derived from AUTH_SECRET: nothing it signs is a service's token."""
    assert settings.auth_secret is not None  # the settings refuse OpenID Connect without it
    secret = settings.auth_secret.get_secret_value().encode()
    return hmac.new(secret, b"onestop console: OpenID Connect sign-in state", hashlib.sha256).digest()


def _pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@router.get("/signin/oidc")
async def signin_oidc(p: AnyPage) -> Response:
    """To the provider's sign-in, with what the callback will check kept in a signed, short-lived cookie."""
    provider = provider_of(p)
    try:
        discovery = await provider.discovery(p.apis.client)
    except Refused as refusal:
        return await _refused(p, refusal)
    state, nonce, verifier = _random(), _random(), _random()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": p.settings.console_oidc_client_id,
            "redirect_uri": p.settings.console_oidc_redirect_url,
            "scope": p.settings.console_oidc_scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": _pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    endpoint = discovery.authorization_endpoint
    response = RedirectResponse(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", status_code=303)
    now = int(time.time())
    claims = {"aud": STATE_AUDIENCE, "iat": now, "exp": now + STATE_SECONDS, "state": state, "nonce": nonce}
    cookie = jwt.encode({**claims, "verifier": verifier}, _state_key(p.settings), algorithm="HS256")
    # SameSite=Lax, not Strict: the cookie must come back on the provider's top-level redirect to the callback.
    response.set_cookie(
        STATE_COOKIE,
        cookie,
        max_age=STATE_SECONDS,
        path=STATE_PATH,
        httponly=True,
        secure=p.settings.console_secure_cookies,
        samesite="lax",
    )
    return response


@router.get("/signin/oidc/callback")
async def signin_oidc_callback(p: AnyPage) -> Response:
    """The provider's answer: a code to exchange for the user's ID token, or its refusal."""
    provider = provider_of(p)
    try:
        token = await _signed_in_token(p, provider)
    except Refused as refusal:
        return await _refused(p, refusal)
    response = RedirectResponse("/", status_code=303)
    keep_session(response, token, p.settings)
    _forget_state(response, p.settings)
    return response


async def _signed_in_token(p: Page, provider: Provider) -> str:
    """The services' token for the user the provider signed in; Refused at the first check that fails."""
    query = p.request.query_params
    error = query.get("error")
    if error is not None:
        shown = error if PROVIDER_ERROR.match(error) else "other"
        raise Refused(f"provider_error:{shown}", 401, N_("The centre's account sign-in was cancelled or refused."))
    kept = _kept_state(p)
    sent_state, code = query.get("state", ""), query.get("code")
    if not hmac.compare_digest(sent_state.encode(), str(kept["state"]).encode()):
        raise Refused("state_mismatch", 401, RESTART)
    if not code:
        raise Refused("no_code", 401, NOT_VERIFIED)
    discovery = await provider.discovery(p.apis.client)
    id_token = await _exchange(p, discovery, code, str(kept["verifier"]))
    claims = await _verified(p, provider, discovery, id_token, str(kept["nonce"]))
    return await _services_token(p, claims)


def _kept_state(p: Page) -> dict[str, Any]:
    cookie = p.request.cookies.get(STATE_COOKIE)
    if not cookie:
        raise Refused("no_state", 401, RESTART)
    try:
        kept: dict[str, Any] = jwt.decode(
            cookie,
            _state_key(p.settings),
            algorithms=["HS256"],
            audience=STATE_AUDIENCE,
            options={"require": ["exp", "iat", "aud", "state", "nonce", "verifier"]},
        )
    except jwt.ExpiredSignatureError:
        raise Refused("state_expired", 401, RESTART) from None
    except jwt.PyJWTError:
        raise Refused("state_invalid", 401, RESTART) from None
    return kept


async def _exchange(p: Page, discovery: Discovery, code: str, verifier: str) -> str:
    """The ID token the provider gives for the code (RFC 6749 4.1.3, client_secret_basic, with the PKCE verifier)."""
    settings = p.settings
    assert settings.console_oidc_client_id is not None and settings.console_oidc_client_secret is not None
    # RFC 6749 2.3.1: the id and secret are form-encoded before they go into HTTP Basic.
    client_auth = httpx.BasicAuth(
        quote_plus(settings.console_oidc_client_id),
        quote_plus(settings.console_oidc_client_secret.get_secret_value()),
    )
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": settings.console_oidc_redirect_url,
        "code_verifier": verifier,
    }
    try:
        answer = await p.apis.client.post(
            discovery.token_endpoint, data=form, auth=client_auth, headers={"accept": "application/json"}
        )
    except httpx.HTTPError:
        answer = None
    if answer is None or answer.status_code >= 500:
        raise Refused("token_endpoint_unreachable", 503, UNREACHABLE)
    try:
        tokens = answer.json()
    except ValueError:
        tokens = None
    id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
    if answer.status_code != 200 or not isinstance(id_token, str):
        raise Refused("code_refused", 401, NOT_VERIFIED)
    return id_token


async def _verified(p: Page, provider: Provider, discovery: Discovery, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims, if signed by the provider's key for this client, current, and for this sign-in."""
    try:
        header = jwt.get_unverified_header(id_token)
        if header.get("alg") not in discovery.algorithms:
            raise Refused("algorithm_refused", 401, NOT_VERIFIED)
        kid = header.get("kid")
        key = await provider.signing_key(p.apis.client, kid if isinstance(kid, str) else None)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=discovery.algorithms,
            audience=p.settings.console_oidc_client_id,
            issuer=provider.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise Refused("id_token_expired", 401, NOT_VERIFIED) from None
    except jwt.PyJWTError as error:
        raise Refused(f"id_token_{type(error).__name__}", 401, NOT_VERIFIED) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != p.settings.console_oidc_client_id:  # OIDC Core 3.1.3.7
        raise Refused("id_token_azp", 401, NOT_VERIFIED)
    if not hmac.compare_digest(str(claims["nonce"]).encode(), nonce.encode()):
        raise Refused("nonce_mismatch", 401, NOT_VERIFIED)
    return claims


async def _services_token(p: Page, claims: dict[str, Any]) -> str:
    """The token the services accept for this user: role and agency from the provider's claims, its subject and
    e-mail address, as long as a console session lasts."""
    settings = p.settings
    assert settings.auth_secret is not None
    role = _role(claims.get(settings.console_oidc_role_claim))
    logged_role = role.value if role is not None else "none"
    if role not in SIGN_IN_ROLES:
        no_role = N_("Your account has no role in the console; ask your administrator for one.")
        raise Refused("role_refused", 403, no_role, logged_role)
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise Refused("subject_unusable", 403, NOT_VERIFIED, logged_role)
    email = claims.get("email")
    verified_email = email if isinstance(email, str) and claims.get("email_verified") is not False else None
    agency = claims.get(settings.console_oidc_agency_claim) if role is Role.agency else None
    if role is Role.agency and not isinstance(agency, str):
        raise Refused("no_agency", 403, NO_AGENCY, logged_role)
    token = issue_token(
        settings.auth_secret.get_secret_value(),
        role,
        subject,
        agency=agency if isinstance(agency, str) else None,
        email=verified_email,
        ttl_seconds=settings.console_session_hours * 3600,
    )
    if isinstance(agency, str):
        try:  # the user's own new token asks routing's catalogue, as any page of theirs would
            catalogue = await p.apis.call("routing", "GET", "/agencies", token)
        except ApiError:
            raise Refused("agencies_unreachable", 503, UNREACHABLE, logged_role) from None
        if agency not in {a.get("id") for a in catalogue}:
            raise Refused("unknown_agency", 403, NO_AGENCY, logged_role)
    return token


def _role(named: Any) -> Role | None:
    try:
        return Role(named) if isinstance(named, str) else None
    except ValueError:
        return None


async def _refused(p: Page, refusal: Refused) -> Response:
    log.warning("OpenID Connect sign-in refused: %d %s (role %s)", refusal.status, refusal.reason, refusal.role)
    response = await sign_in_page(p, refusal.status, refusal.message)
    _forget_state(response, p.settings)
    return response


def _forget_state(response: Response, settings: ConsoleSettings) -> None:
    response.delete_cookie(
        STATE_COOKIE, path=STATE_PATH, httponly=True, secure=settings.console_secure_cookies, samesite="lax"
    )

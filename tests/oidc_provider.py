"""An OpenID Connect provider for the console's tests, inside the test process: its discovery document, its signing
key (JWKS), an /authorize that signs in the one user it is given without asking, and a token endpoint that checks the
code, the redirect URI, the client's credentials (client_secret_basic) and the PKCE verifier against the challenge
/authorize was given, then issues an RS256 ID token.

Unit tests put it behind the console's HTTP client (`transport()`); the browser test serves it on a loopback port
(`serve()`), as tests/e2e/otlp.py serves its receiver."""

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROLE_CLAIM = "onestop_role"  # the console's defaults (CONSOLE_OIDC_ROLE_CLAIM, CONSOLE_OIDC_AGENCY_CLAIM)
AGENCY_CLAIM = "onestop_agency"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, document: dict[str, Any], status: int = 200) -> "Answer":
        return cls(status, json.dumps(document).encode(), {"content-type": "application/json"})


@dataclass
class Grant:
    """What /authorize was asked, kept under the code it gave until the token endpoint redeems it."""

    challenge: str
    nonce: str
    redirect_uri: str
    claims: dict[str, Any]


class OidcProvider:
    """One issuer, one registered client, one user (`user`: the claims of whoever /authorize signs in)."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, redirect_uri: str, user: dict[str, Any]):
        self.issuer, self.client_id, self.client_secret, self.redirect_uri = (
            issuer,
            client_id,
            client_secret,
            redirect_uri,
        )
        self.user = user
        self.key, self.kid = new_key(), "test-key-1"
        self.ttl_seconds = 300
        self.algorithms = ["RS256"]  # what its discovery document says it signs ID tokens with
        self.overrides: dict[str, Any] = {}  # claims of the next ID tokens replaced (a test's tampering)
        self.signer: Callable[[dict[str, Any]], str] = self.sign  # how ID tokens are signed (a test may forge)
        self.authorized: list[dict[str, str]] = []  # each /authorize's query, as asked
        self.exchanges: list[dict[str, str]] = []  # each token request the endpoint accepted
        self.refusals: list[str] = []  # why the token endpoint refused, each time it did
        self._codes: dict[str, Grant] = {}
        self._server: ThreadingHTTPServer | None = None

    # The documents

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self.algorithms,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def sign(self, claims: dict[str, Any], key: Any = None, algorithm: str = "RS256", kid: str | None = None) -> str:
        """An ID token with these claims, signed with the provider's key (or `key`)."""
        headers = {"kid": kid or self.kid}
        return jwt.encode(claims, key if key is not None else self.key, algorithm=algorithm, headers=headers)

    # The endpoints

    def authorize(self, query: dict[str, str]) -> Answer:
        """Signs in `user` at once: back to the client's redirect URI with a code (or an error, or a 400 when the
        client or its redirect URI is not the registered one, as the spec asks)."""
        self.authorized.append(query)
        if query.get("client_id") != self.client_id or query.get("redirect_uri") != self.redirect_uri:
            return Answer(400, b"unknown client or redirect_uri")
        back = {"state": query.get("state", "")}
        checks = (
            query.get("response_type") == "code",
            "openid" in query.get("scope", "").split(),
            query.get("code_challenge_method") == "S256" and bool(query.get("code_challenge")),
            bool(query.get("nonce")),
        )
        if not all(checks):
            back["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(16)
            self._codes[code] = Grant(query["code_challenge"], query["nonce"], query["redirect_uri"], dict(self.user))
            back["code"] = code
        return Answer(303, headers={"location": f"{self.redirect_uri}?{urlencode(back)}"})

    def token(self, form: dict[str, str], authorization: str | None) -> Answer:
        refusal = self._token_refusal(form, authorization)
        if refusal is not None:
            self.refusals.append(refusal)
            return Answer.json({"error": refusal}, 401 if refusal == "invalid_client" else 400)
        grant = self._codes.pop(form["code"])
        self.exchanges.append(form)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + self.ttl_seconds,
            "nonce": grant.nonce,
            **grant.claims,
            **self.overrides,
        }
        claims = {name: value for name, value in claims.items() if value is not None}  # an override of None: left out
        return Answer.json(
            {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": self.signer(claims)}
        )

    def _token_refusal(self, form: dict[str, str], authorization: str | None) -> str | None:
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return "invalid_client"
        if scheme.lower() != "basic" or (unquote_plus(client_id), unquote_plus(secret)) != (
            self.client_id,
            self.client_secret,
        ):
            return "invalid_client"
        grant = self._codes.get(form.get("code", ""))
        if form.get("grant_type") != "authorization_code" or grant is None:
            return "invalid_grant"
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if form.get("redirect_uri") != grant.redirect_uri or not secrets.compare_digest(challenge, grant.challenge):
            return "invalid_grant"
        return None

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """Any request to the provider, by method and path."""
        url = urlsplit(target)
        path = url.path.removeprefix(urlsplit(self.issuer).path)
        if method == "GET" and path == "/.well-known/openid-configuration":
            return Answer.json(self.discovery())
        if method == "GET" and path == "/jwks":
            return Answer.json(self.jwks())
        if method == "GET" and path == "/authorize":
            return self.authorize(dict(parse_qsl(url.query)))
        if method == "POST" and path == "/token":
            return self.token(dict(parse_qsl(body.decode())), headers.get("authorization"))
        return Answer(404, b"not here")

    # Where it answers

    def transport(self) -> httpx.MockTransport:
        """For an httpx client: every request answered here, without a socket."""

        def handle(request: httpx.Request) -> httpx.Response:
            target = request.url.raw_path.decode()
            answer = self.answer(request.method, target, dict(request.headers), request.read())
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(handle)

    def serve(self, port: int) -> "OidcProvider":
        """Listen on 127.0.0.1:`port` (the issuer should be http://127.0.0.1:`port`) until `stop()`."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("content-length", "0"))))

            def _answer(self, body: bytes) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = provider.answer(self.command, self.path, headers, body)
                self.send_response(answer.status)
                for name, value in {**answer.headers, "content-length": str(len(answer.body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

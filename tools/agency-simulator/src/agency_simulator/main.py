"""The agency simulator's HTTP app: referral webhooks in, behaviour control, the agencies' records out."""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from uuid import UUID

import uvicorn
from fastapi import FastAPI, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from schemas.events import EventRejected, ReferralCancelled, ReferralReminded, ReferralRequested, decode_event

from .acks import AckSender
from .behaviour import BEHAVIOUR, DEFAULT_KEY, Behaviour, BehaviourBook
from .problems import field_errors, install_problem_handlers, problem
from .records import Records
from .settings import Settings
from .signatures import secrets_from_catalogue, signed_by

log = logging.getLogger(__name__)

# What an agency's webhook takes: referrals, and the centre's notices about them.
WEBHOOK_EVENTS = (ReferralRequested, ReferralReminded, ReferralCancelled)

AgencyIdPath = Annotated[str, Path(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]


def create_app(settings: Settings | None = None, *, ack_backoff: tuple[float, float] = (0.5, 30.0)) -> FastAPI:
    """Build the app; tests pass a short `ack_backoff` (first, cap)."""
    settings = settings or Settings()
    records = Records()
    behaviours = BehaviourBook(settings.simulator_behaviour)
    secrets = {
        **(secrets_from_catalogue(settings.catalogue_dir) if settings.catalogue_dir else {}),
        **settings.simulator_webhook_secrets,
    }
    acks = AckSender(
        records,
        notify_url=str(settings.notify_url),
        retry_seconds=settings.simulator_ack_retry_seconds,
        tokens=settings.simulator_agency_tokens,
        signing_secret=None if settings.auth_secret is None else settings.auth_secret.get_secret_value(),
        first_backoff=ack_backoff[0],
        max_backoff=ack_backoff[1],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await acks.close()

    app = FastAPI(title="Agency simulator", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    @app.post("/agencies/{agency_id}/referrals", status_code=202)
    async def receive_referral(
        agency_id: AgencyIdPath,
        request: Request,
        idempotency_key: Annotated[str | None, Header()] = None,
        x_onestop_timestamp: Annotated[str | None, Header()] = None,
        x_onestop_signature: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """The agency's webhook: takes a referral.requested event in its wire form, signed if the agency has a
        secret (`X-Onestop-Timestamp`, `X-Onestop-Signature`); and, the same way, notices about a referral
        (referral.reminded, referral.cancelled, with the notice's event id as Idempotency-Key), which are recorded
        and never taken as a new referral."""
        raw = await request.body()
        secret = secrets.get(agency_id)
        if secret is not None and not signed_by(raw, x_onestop_timestamp, x_onestop_signature, secret):
            errors = [{"loc": "header.X-Onestop-Signature", "msg": "missing, wrong or too old"}]
            return problem(401, "the request is not signed with this agency's secret", errors=errors)
        try:
            event = decode_event(raw, WEBHOOK_EVENTS)
        except EventRejected as error:
            return problem(422, "the body is not a valid referral.requested v1 event", errors=_rejection(error, raw))
        checked: Literal["valid", "unchecked"] = "valid" if secret is not None else "unchecked"
        if isinstance(event, ReferralReminded | ReferralCancelled):
            return await receive_notice(agency_id, event, idempotency_key, checked)
        assert isinstance(event, ReferralRequested)
        if idempotency_key is None:
            errors = [{"loc": "header.Idempotency-Key", "msg": "required"}]
            return problem(400, "the Idempotency-Key header is required", errors=errors)
        if not _same_id(idempotency_key, event.referral_id):
            errors = [{"loc": "header.Idempotency-Key", "msg": "must equal body.referral_id"}]
            return problem(422, "the Idempotency-Key header must be the referral id", errors=errors)
        if event.agency_id != agency_id:
            return problem(409, "the referral is addressed to another agency than this webhook's")

        referral_id = str(event.referral_id)
        result = await records.receive(event, referral_id, behaviours.for_agency(agency_id), checked)
        log.info(
            "referral %s to %s: %s%s", referral_id, agency_id, result.status, " (duplicate)" if result.duplicate else ""
        )
        if result.status >= 400:
            return problem(result.status, "simulated failure of the agency's endpoint")
        if result.ack is not None:
            acks.schedule(agency_id, referral_id, result.ack)
        return JSONResponse({"referral_id": referral_id, "duplicate": result.duplicate}, status_code=202)

    async def receive_notice(
        agency_id: str,
        event: ReferralReminded | ReferralCancelled,
        idempotency_key: str | None,
        checked: Literal["valid", "unchecked"],
    ) -> JSONResponse:
        if idempotency_key is None or not _same_id(idempotency_key, event.event_id):
            errors = [{"loc": "header.Idempotency-Key", "msg": "must equal body.event_id for a notice"}]
            return problem(422, "the Idempotency-Key header must be the notice's event id", errors=errors)
        if event.agency_id != agency_id:
            return problem(409, "the notice is addressed to another agency than this webhook's")
        duplicate = await records.notice(event, checked)
        log.info("%s for referral %s to %s%s", event.type, event.referral_id, agency_id, " (duplicate)" * duplicate)
        return JSONResponse({"event_id": str(event.event_id), "duplicate": duplicate}, status_code=202)

    @app.get("/agencies/{agency_id}/notices")
    async def agency_notices(agency_id: AgencyIdPath) -> list[dict[str, Any]]:
        """The reminders and cancellations the agency received, each once with how often it came."""
        notices: list[dict[str, Any]] = (await records.snapshot(agency_id))["notices"]
        return notices

    @app.get("/agencies/{agency_id}/referrals")
    async def agency_received(agency_id: AgencyIdPath) -> dict[str, Any]:
        return await records.snapshot(agency_id)

    @app.get("/received")
    async def all_received() -> dict[str, Any]:
        return await records.snapshot()

    @app.delete("/received", status_code=204)
    async def reset_received() -> Response:
        """Forget everything received, stopping acknowledgements still waiting or retrying."""
        await acks.cancel_all()
        await records.reset()
        return Response(status_code=204)

    @app.get("/behaviour")
    async def get_behaviour() -> dict[str, Any]:
        return {key: BEHAVIOUR.dump_python(value, mode="json") for key, value in behaviours.as_dict().items()}

    @app.put("/behaviour/{agency_id}")
    async def put_behaviour(agency_id: AgencyIdPath, behaviour: Behaviour) -> dict[str, Any]:
        """Set how one agency (or `default`, every agency without its own) answers from now on."""
        behaviours.set(agency_id, behaviour)
        stored: dict[str, Any] = BEHAVIOUR.dump_python(behaviour, mode="json")
        return stored

    @app.delete("/behaviour/{agency_id}", status_code=204, response_model=None)
    async def delete_behaviour(agency_id: AgencyIdPath) -> Response:
        """Return one agency to the default behaviour."""
        if agency_id == DEFAULT_KEY:
            return problem(409, "the default behaviour cannot be removed; replace it with PUT")
        behaviours.unset(agency_id)
        return Response(status_code=204)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _same_id(key: str, referral_id: UUID) -> bool:
    try:
        return UUID(key) == referral_id
    except ValueError:
        return False


def _rejection(error: EventRejected, raw: bytes) -> list[dict[str, str]]:
    """Field paths and messages for a rejected body; the rejection's own detail may quote the input."""
    if error.reason in ("empty_record", "invalid_json"):
        return [{"loc": "body", "msg": "must be a JSON object"}]
    if error.reason in ("unknown_event", "unexpected_event"):
        return [{"loc": "body.type", "msg": "must be referral.requested (or referral.reminded, referral.cancelled) v1"}]
    body = json.loads(raw)
    event_type = body.pop("type", None)
    body.pop("version", None)
    model = next((m for m in WEBHOOK_EVENTS if m.type == event_type), ReferralRequested)
    try:
        model.model_validate(body)
    except ValidationError as invalid:
        return field_errors(invalid.errors(), prefix=("body",))
    return [{"loc": "body", "msg": "invalid"}]


def run() -> None:
    """`python -m agency_simulator`: serve on HTTP_HOST:HTTP_PORT."""
    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)

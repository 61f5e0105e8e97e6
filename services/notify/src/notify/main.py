"""The notify service: consumes referral.events and case.submitted; serves acknowledgements and timelines."""

from fastapi import FastAPI
from kit.http import install_health_route, install_problem_handlers
from kit.runtime import ServiceRuntime
from schemas.events import (
    CaseRouted,
    CaseSubmitted,
    Envelope,
    ReferralAccepted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralFailed,
)
from schemas.topics import CASE_SUBMITTED, REFERRAL_EVENTS, REFERRAL_REROUTING

from .api import routes
from .handlers import CASES_CONSUMER, EVENTS_CONSUMER, on_case_submitted, on_referral_event
from .settings import NotifySettings


def create_app(settings: NotifySettings) -> FastAPI:
    runtime = ServiceRuntime(settings)

    async def handle_case(event: CaseSubmitted) -> None:
        await on_case_submitted(runtime.pool, event)

    async def handle_referral_event(event: Envelope) -> None:
        await on_referral_event(runtime.pool, event)

    runtime.consume(CASE_SUBMITTED, CASES_CONSUMER, (CaseSubmitted,), handle_case)
    runtime.consume(
        REFERRAL_EVENTS,
        EVENTS_CONSUMER,
        (CaseRouted, ReferralDelivered, ReferralFailed, ReferralAccepted, ReferralDeclined),
        handle_referral_event,
    )
    runtime.produces(REFERRAL_REROUTING)
    app = FastAPI(title="Notify", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    install_health_route(app, runtime)
    app.include_router(routes())
    return app

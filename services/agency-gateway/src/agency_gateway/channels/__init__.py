"""The gateway's plugin interface: a channel delivers a referral to one agency and says how it went.

A channel plugin is a subclass of `DeliveryChannel` that a package names under the `onestop.channels` entry point
group; the catalogue's `[channel] type` picks it by that name. The gateway makes one instance per agency using the
channel, at start, with the agency's `[channel]` table validated by the plugin's `settings_model`.

    [project.entry-points."onestop.channels"]
    fax = "onestop_channel_fax:FaxDelivery"

`deliver` returns `Delivered` or `Failed(transient=...)`; the gateway does the rest: the referral id as idempotency
key, retries with backoff on the agency's retry topic, the circuit breaker, the DLQ and the events. A transient
failure is retried; a permanent one goes to the DLQ at once. An exception out of `deliver` counts as transient.

`deliver_notice` carries notify's notices about a referral the agency has (a reminder of its acknowledgement
deadline, a cancellation), with the same retries and DLQ; a notice that fails never fails its referral. A plugin
that does not override it dead-letters notices (`permanent_failure`), so an operator sees what did not reach the
agency.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from schemas.events import ReferralCancelled, ReferralReminded, ReferralRequested

from ..domain import Delivered, Failed, Outcome

__all__ = ["ChannelSettings", "ChannelSetupError", "Delivered", "DeliveryChannel", "Failed", "Notice", "Outcome"]

# notify's notices about a referral, on the agency's topic behind it: the deadline is near, or it was cancelled.
Notice = ReferralReminded | ReferralCancelled


class ChannelSettings(BaseModel):
    """Base for a plugin's settings: the agency's `[channel]` table, `type` included. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


class ChannelSetupError(Exception):
    """A channel that cannot work as configured (a missing secret, say); the gateway refuses to start."""


S = TypeVar("S", bound=BaseModel)


class DeliveryChannel(ABC, Generic[S]):
    """One agency's channel. Subclasses set `settings_model` and implement `deliver`."""

    settings_model: ClassVar[type[BaseModel]]
    # Whether `deliver` sends the referral away, so the gateway fills in its personal items first (fetched from
    # intake). A channel whose agency reads the referral where it is (Kafka) leaves them for the agency to fetch.
    sends_personal_items: ClassVar[bool] = True

    def __init__(self, agency_id: str, settings: S) -> None:
        self.agency_id = agency_id
        self.settings = settings

    def topics(self) -> Sequence[str]:
        """Kafka topics this channel needs to exist (created when the gateway starts)."""
        return ()

    @abstractmethod
    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        """Deliver `referral`; `body` is its JSON wire form. The same referral may come again (a retry, a
        replay): use `referral.referral_id` as the idempotency key so the agency acts on it once."""

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        """Deliver a notice about a referral; `body` is its JSON wire form, `notice.type` says what it is. Use
        `notice.event_id` as the idempotency key: one referral may have a reminder and a cancellation."""
        return Failed(f"the {type(self).__name__} channel does not carry {notice.type} notices", False)

    async def close(self) -> None:
        """Release what the channel holds (connections), when the gateway stops."""

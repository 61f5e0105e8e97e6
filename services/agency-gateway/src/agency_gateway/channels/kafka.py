"""The Kafka-native channel: the agency reads `referrals.<agency-id>` with its own consumer group.

Nothing to send: the referral, and notify's reminders and cancellations after it, are already on the agency's
topic. The gateway records that it is available there and makes sure the agency's acknowledgement topic exists.
The topic carries no personal values: the agency fetches the referral's `personal_items` from the gateway
(`GET /referrals/{id}/personal`) with its own credential.
"""

from collections.abc import Sequence

from schemas.catalogue import KafkaChannel
from schemas.events import ReferralRequested
from schemas.topics import ack_topic, agency_topic

from . import Delivered, DeliveryChannel, Notice, Outcome


class KafkaDelivery(DeliveryChannel[KafkaChannel]):
    settings_model = KafkaChannel
    sends_personal_items = False  # the agency fetches them with its own credential: GET /referrals/{id}/personal

    def topics(self) -> Sequence[str]:
        return [ack_topic(self.agency_id)]

    async def deliver(self, referral: ReferralRequested, body: bytes) -> Outcome:
        return Delivered(f"available on {agency_topic(self.agency_id)} for the agency's own consumer group")

    async def deliver_notice(self, notice: Notice, body: bytes) -> Outcome:
        # notify put it on the agency's topic, behind the referral: the record there is the delivery.
        return Delivered(f"{notice.type} available on {agency_topic(self.agency_id)}")

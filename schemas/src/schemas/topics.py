"""Kafka topic names. Every event of one case is keyed by case_id, so it stays in order on one partition."""

import re

CASE_SUBMITTED = "case.submitted"
REFERRAL_EVENTS = "referral.events"
REFERRAL_REROUTING = "referral.rerouting"
CASE_ERASED = "case.erased"
CONSENT_WITHDRAWN = "consent.withdrawn"  # intake: the victim withdrew a consent
CONSENT_RECORDED = "consent.recorded"  # intake: a consent given, or an override recorded, after submission
CASE_CLOSED = "case.closed"  # intake: a caseworker closed the case

_AGENCY_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def agency_topic(agency_id: str) -> str:
    """The topic an agency (or its gateway) consumes its referrals from, and notify's notices about them
    (`referral.reminded`, `referral.cancelled`)."""
    if not _AGENCY_ID.match(agency_id):
        raise ValueError("an agency id must be lower-case words joined by '-'")
    return f"referrals.{agency_id}"


def ack_topic(agency_id: str) -> str:
    """The topic a Kafka-native agency publishes its acknowledgements on."""
    return "acks." + agency_topic(agency_id).removeprefix("referrals.")


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def retry_topic(topic: str) -> str:
    return f"{topic}.retry"

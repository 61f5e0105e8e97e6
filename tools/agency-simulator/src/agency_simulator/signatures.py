"""Checking the gateway's webhook signature as an agency would, and knowing each agency's secret."""

import hashlib
import hmac
import logging
import os
import time
from pathlib import Path

from schemas.catalogue import CatalogueError, WebhookChannel, load_catalogue

log = logging.getLogger(__name__)


# The "Verify a webhook" lines of docs/agencies.md, as an agency would write them.
def verify(body: bytes, timestamp: str, signature: str, secret: str, tolerance: int = 300) -> bool:
    """True when `signature` is the gateway's for this body and timestamp, and the timestamp is recent."""
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature) and abs(time.time() - int(timestamp)) <= tolerance


def signed_by(body: bytes, timestamp: str | None, signature: str | None, secret: str) -> bool:
    """`verify`, with missing or malformed headers (not digits, not ASCII) answered False."""
    if not (timestamp and signature):
        return False
    try:
        return verify(body, timestamp, signature, secret)
    except (TypeError, ValueError):
        return False


def secrets_from_catalogue(directory: Path) -> dict[str, str]:
    """Each webhook agency's secret, read from the variable its catalogue entry names (when it is set)."""
    try:
        catalogue = load_catalogue(directory)
    except CatalogueError as error:
        log.error("cannot read the catalogue for webhook secrets, signatures are not checked: %s", error)
        return {}
    return {
        agency.id: os.environ[agency.channel.secret_env]
        for agency in catalogue
        if isinstance(agency.channel, WebhookChannel) and os.environ.get(agency.channel.secret_env)
    }

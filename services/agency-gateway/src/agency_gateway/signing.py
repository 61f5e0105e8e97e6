"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>` with the agency's secret.

Headers: `X-Onestop-Timestamp` (Unix seconds) and `X-Onestop-Signature` (`sha256=<hex digest>`). The timestamp
is inside the signed text, so an agency refusing old timestamps refuses a replayed request.
"""

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Onestop-Timestamp"
SIGNATURE_HEADER = "X-Onestop-Signature"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, str(timestamp), body)}

"""Errors the kit's edges translate, in a module that imports nothing.

- `DependencyUnavailable`: an HTTP route answers 503 (kit/http.py), a consumer waits (kit/outages.py).
- The domain's refusals (`NotFound`, `Gone`, `Refused`, `Conflict`, `Invalid`), raised by a service's service layer,
  which knows nothing of HTTP: the HTTP edge answers each with its problem (kit/http.py, one handler), a consumer
  dead-letters the record with the refusal's `reason` (kit/messaging.py, batches.py, lanes.py). Nothing was
  changed: the transaction around a refusal is rolled back.
"""


class DependencyUnavailable(Exception):
    """A dependency of the system's own (intake, say) cannot serve the record now. The consumer waits and tries the
    same record again, for as long as it takes: this is never the record's fault nor an agency's."""


class DomainError(Exception):
    """A request or a record the domain refuses. `detail` may be shown to the caller (no personal data, never the
    input); `reason` is a short code for the service's log and the DLQ header, never shown; `title` overrides the
    problem's title."""

    reason = "refused"

    def __init__(self, detail: str, *, reason: str | None = None, title: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason or type(self).reason
        self.title = title


class NotFound(DomainError):
    """No such thing — or one the caller may not know of, worded the same way (404)."""

    reason = "not_found"


class Gone(DomainError):
    """It was there and is no more: an erased case, an ended referral (410)."""

    reason = "gone"


class Refused(DomainError):
    """The caller may not do this (403)."""

    reason = "forbidden"


class Conflict(DomainError):
    """Not in the state it is in: a transition the state machine refuses, a consent withdrawn (409)."""

    reason = "conflict"


class Invalid(DomainError):
    """Well-formed but not acceptable: an idempotency key reused for another request, another case's answer (422)."""

    reason = "invalid"

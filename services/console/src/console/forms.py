"""The new-case form as the contract reads it, and contract errors as messages next to their fields. Pure."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from schemas.events import CaseDetails
from schemas.locations import error_location

# The form's fields are named by the contract's own paths, so an error's location names its field.
CASE_FIELDS = (
    "crime_type",
    "urgency",
    "region",
    "language",
    "intake_channel",
    "victim.name",
    "victim.phone",
    "victim.email",
    "victim.contact_rules.safe_channel",
    "victim.contact_rules.safe_hours.start",
    "victim.contact_rules.safe_hours.end",
    "summary",
    "caseworker.email",
)
CASE_FLAGS = ("victim.contact_rules.do_not_contact", "staged")
CASE_LISTS = ("needs",)


class Form:
    """A submitted form's fields: the last value of each, or every value of a list field."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in items:
            self._values.setdefault(key, []).append(value)

    def get(self, key: str) -> str:
        values = self._values.get(key)
        return values[-1].strip() if values else ""

    def all(self, key: str) -> list[str]:
        return [v for v in self._values.get(key, []) if v]

    def checked(self, key: str) -> bool:
        return self.get(key) == "on"

    def case_fields(self) -> list[tuple[str, str]]:
        """The case's own fields, to carry from the form to the preview and on to the submission."""
        kept = [(key, self.get(key)) for key in (*CASE_FIELDS, *CASE_FLAGS) if self.get(key)]
        return kept + [(key, value) for key in CASE_LISTS for value in self.all(key)]


def _nested(path: str, value: Any, into: dict[str, Any]) -> None:
    *parents, last = path.split(".")
    for part in parents:
        into = into.setdefault(part, {})
    into[last] = value


def case_payload(
    form: Form, consents: Sequence[Mapping[str, Any]] = (), caseworker: str | None = None
) -> dict[str, Any]:
    """The JSON body of intake's preview and submission: only what was filled in, with the consents given. The
    case's caseworker is the signed-in user (`caseworker`, their token's subject, never a field of the form) when they
    gave the address their alerts go to; their follow-ups are then listed as theirs."""
    body: dict[str, Any] = {"needs": form.all("needs"), "consents": list(consents)}
    for key in CASE_FIELDS:
        if form.get(key):
            _nested(key, form.get(key), body)
    for flag in CASE_FLAGS:
        if form.checked(flag):
            _nested(flag, True, body)
    if "caseworker" in body:
        if caseworker is None:
            del body["caseworker"]
        else:
            body["caseworker"]["id"] = caseworker
    return body


def consents_given(form: Form, agencies: Iterable[str], sensitive_asked: Iterable[str]) -> list[dict[str, Any]]:
    """One consent per agency shown: granted when its box is ticked; sensitive items when that box is too."""
    asked = set(sensitive_asked)
    return [
        {
            "agency_id": agency,
            "granted": form.checked(f"consent.{agency}"),
            "sensitive_granted": agency in asked
            and form.checked(f"consent.{agency}")
            and form.checked(f"sensitive.{agency}"),
        }
        for agency in agencies
    ]


FieldErrors = dict[str, list[str]]


def field_errors(errors: Iterable[Mapping[str, Any]]) -> FieldErrors:
    """Errors by form field (`victim.phone`), from pydantic's errors or a problem+json's `errors` (`body.victim.phone`);
    an error of the whole case (a rule across fields) goes under ''."""
    shown: FieldErrors = {}
    for error in errors:
        where = error["loc"] if isinstance(error.get("loc"), str) else error_location(error)
        where = where.removeprefix("body").lstrip(".")
        field = next(
            (f for f in (*CASE_FIELDS, *CASE_FLAGS, *CASE_LISTS) if where == f or where.startswith(f + ".")), ""
        )
        if not field and where.startswith("victim"):  # a rule of the victim's contact (safe channel without address)
            field = "victim.contact_rules.safe_channel"
        shown.setdefault(field, []).append(str(error.get("msg", "invalid")))
    return shown


def check_case(body: Mapping[str, Any]) -> FieldErrors:
    """The contract's own validation, before any call: the errors by field, or none."""
    try:
        CaseDetails.model_validate(body)
    except ValidationError as invalid:
        return field_errors(invalid.errors(include_input=False, include_context=False, include_url=False))
    return {}

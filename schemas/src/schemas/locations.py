"""Where validation failed, named by the contract's own fields only: never a key or a value that was sent."""

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

EXTRA_FIELD = "<extra field>"
_OWN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def error_location(error: Mapping[str, Any]) -> str:
    """One pydantic error's location (`victim.phone`, `needs.2`), with every key the sender chose (an unknown field,
    or a part that is not one of our snake_case names) shown as `<extra field>`, since keys are input too."""
    loc: Sequence[Any] = error.get("loc", ())
    unknown = error.get("type") == "extra_forbidden"
    parts: list[str] = []
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(part, int) and not isinstance(part, bool):
            parts.append(str(part))
        elif isinstance(part, str) and _OWN_NAME.fullmatch(part) and not (last and unknown):
            parts.append(part)
        else:
            parts.append(EXTRA_FIELD)
    return ".".join(parts)


def error_locations(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({error_location(e) for e in errors})

"""Korean and English: labels from the Babel catalogue (English message ids, Korean translations), names from the
catalogue's own name_ko / name_en, dates in Asia/Seoul. Pure: no framework."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.pofile import read_po

LANGUAGES = ("ko", "en")
DEFAULT_LANGUAGE = "ko"
SEOUL = ZoneInfo("Asia/Seoul")
LOCALE_DIR = Path(__file__).parent / "locale"


def language_of(chosen: str | None) -> str:
    """The page's language: the one chosen if we have it, else Korean."""
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


@cache
def catalogue(language: str) -> Mapping[str, str]:
    """The translated labels of a language by English id (none for English itself, whose ids are its labels)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.is_file():
        return {}
    with path.open("rb") as po:
        messages = read_po(po, locale=language)
    return {str(m.id): str(m.string) for m in messages if m.id and isinstance(m.id, str) and m.string}


@dataclass(frozen=True)
class Translator:
    """One language's labels, names and dates, as the templates use them."""

    language: str

    def gettext(self, message: str) -> str:
        return catalogue(self.language).get(message, message)

    def name(self, named: Mapping[str, str] | None, fallback: str = "") -> str:
        """An agency's (or anything's) own name in this language: `name_ko` / `name_en`."""
        if not named:
            return fallback
        return named.get(f"name_{self.language}") or named.get("name_en") or fallback

    def when(self, moment: str | datetime | None) -> str:
        """A time as people in Seoul read it, in this language ('' for none)."""
        if moment is None or moment == "":
            return ""
        at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        return format_datetime(at, "medium", tzinfo=SEOUL, locale=self.language)

    def functions(self) -> dict[str, Callable[..., str]]:
        return {"_": self.gettext, "gettext": self.gettext, "name": self.name, "when": self.when}

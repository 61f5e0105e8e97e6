"""Validators the contracts share."""

from collections.abc import Hashable
from typing import TypeVar

from pydantic import AfterValidator

T = TypeVar("T", bound=Hashable)


def listed_once(what: str) -> AfterValidator:
    """For a list field, `Annotated[list[X], listed_once("x")]`: refuses an item listed twice ("each x may be
    listed once")."""

    def check(items: list[T]) -> list[T]:
        if len(set(items)) != len(items):
            raise ValueError(f"each {what} may be listed once")
        return items

    return AfterValidator(check)

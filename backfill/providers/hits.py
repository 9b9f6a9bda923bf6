"""Helpers that turn a source's record into a :class:`~backfill.providers.base.Hit`.

Each source spells ISBNs, authors and dates its own way; these helpers make the
common parts of a hit the same everywhere: valid ISBN-13s only, plain strings,
and a record small enough to keep as evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

# Fields that hold prose (synopses, excerpts, reviews): no use as evidence of
# *which* book a hit is, and the bulk of a record's size.
LONG_FIELDS = frozenset(
    {
        "synopsis",
        "overview",
        "description",
        "excerpt",
        "excerpts",
        "first_sentence",
        "text",
        "table_of_contents",
        "reviews",
        "notes",
        "searchInfo",
        "textSnippet",
        "accessInfo",
    }
)
MAX_TEXT = 500  # characters kept of any other string
MAX_ITEMS = 50  # items kept of any list (an OL work can list hundreds of ISBNs)
MAX_DEPTH = 4


def isbn13s(values: Iterable[Any]) -> tuple[str, ...]:
    """The valid ISBN-13s among ``values`` (ISBN-10s converted, invalid ones dropped),
    de-duplicated, in the given order."""
    found: dict[str, None] = {}
    for value in values:
        if not isinstance(value, str | int) or isinstance(value, bool):
            continue
        try:
            found[str(stdisbn.to_isbn13(stdisbn.validate(str(value))))] = None
        except ValidationError:
            continue
    return tuple(found)


def text_of(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A stripped, bounded string of a scalar; None for anything else or empty."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    return text[:limit] or None


def texts_of(value: Any, limit: int = 20) -> tuple[str, ...]:
    """The non-empty strings of a list (or a single string), at most ``limit``."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(t for t in (text_of(item, 200) for item in items) if t)[:limit]


def full_title(title: Any, subtitle: Any) -> str | None:
    """ "Title: Subtitle", or the title alone when there is no (new) subtitle."""
    main, sub = text_of(title), text_of(subtitle)
    if main and sub and sub.casefold() not in main.casefold():
        return f"{main}: {sub}"
    return main


def bounded(record: Any, depth: int = 0) -> Any:
    """``record`` without prose fields, its strings and lists cut to a bounded size."""
    if isinstance(record, dict):
        if depth >= MAX_DEPTH:
            return {}
        return {
            str(k): bounded(v, depth + 1)
            for k, v in list(record.items())[:100]
            if str(k) not in LONG_FIELDS
        }
    if isinstance(record, list):
        return [bounded(v, depth + 1) for v in record[:MAX_ITEMS]]
    if isinstance(record, str):
        return record[:MAX_TEXT]
    return record

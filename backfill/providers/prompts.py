"""The two prompt variants, the answer schema, and the prompt version hash.

Both generators get the same prompt and the same schema (in each API's
dialect), so a month's two lists are comparable. The version hash covers the
template and the schema: change either and new attempts record a new version.
The text always holds the ISO month (``YYYY-MM``) and the phrase
``up to N books``; the local emulator reads both.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from typing import Any

from backfill.exceptions import InvalidInput, ProviderError
from backfill.providers.base import BookCandidate

VARIANTS = ("baseline", "contemporary-notable")

_COMMON = (
    "Return up to {batch_size} books as JSON matching the schema. For each book give the "
    "title, the authors, the original publisher, the publication date (YYYY-MM-DD when "
    "known), the ISBN-13 of the first print edition only if you are sure of it (otherwise "
    "null: a wrong ISBN is worse than none), and a one-line reason it is notable. "
    "Only books first published in {iso_month}; no reissues, no duplicates."
)

TEMPLATES: dict[str, str] = {
    "baseline": (
        "List up to {batch_size} books first published in {month_name} {year} ({iso_month}) "
        "that are widely known and culturally notable: classics, long-lasting bestsellers, "
        "books that shaped their genre or were widely discussed. " + _COMMON
    ),
    "contemporary-notable": (
        "List up to {batch_size} books released in {month_name} {year} ({iso_month}) that are "
        "notable recent releases: titles on prize lists (longlists and shortlists included), "
        "bestsellers, and critically noticed debuts. " + _COMMON
    ),
}

# One field list, rendered in both schema dialects below.
_FIELDS: dict[str, tuple[str, bool]] = {  # name -> (type, nullable)
    "title": ("string", False),
    "authors": ("array", False),
    "publisher": ("string", True),
    "publication_date": ("string", True),
    "isbn13": ("string", True),
    "reason": ("string", False),
}


def json_schema() -> dict[str, Any]:
    """The answer schema in JSON Schema (xAI strict structured output)."""
    properties: dict[str, Any] = {}
    for name, (kind, nullable) in _FIELDS.items():
        prop: dict[str, Any] = {"type": [kind, "null"] if nullable else kind}
        if kind == "array":
            prop["items"] = {"type": "string"}
        properties[name] = prop
    book = {
        "type": "object",
        "properties": properties,
        "required": list(_FIELDS),  # strict mode: every field present, nullable instead
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"books": {"type": "array", "items": book}},
        "required": ["books"],
        "additionalProperties": False,
    }


def gemini_schema() -> dict[str, Any]:
    """The answer schema in Gemini's OpenAPI subset (``responseSchema``)."""
    properties: dict[str, Any] = {}
    for name, (kind, nullable) in _FIELDS.items():
        prop: dict[str, Any] = {"type": kind.upper()}
        if kind == "array":
            prop["items"] = {"type": "STRING"}
        if nullable:
            prop["nullable"] = True
        properties[name] = prop
    book = {
        "type": "OBJECT",
        "properties": properties,
        "required": [name for name, (_, nullable) in _FIELDS.items() if not nullable],
        "propertyOrdering": list(_FIELDS),
    }
    return {
        "type": "OBJECT",
        "properties": {"books": {"type": "ARRAY", "items": book}},
        "required": ["books"],
    }


def variant_for(year: int) -> str:
    """The variant a month gets by default: recent releases from 2020 on."""
    return "contemporary-notable" if year >= 2020 else "baseline"


def _template(variant: str) -> str:
    try:
        return TEMPLATES[variant]
    except KeyError:
        raise InvalidInput("prompt_variant", f"must be one of {', '.join(VARIANTS)}") from None


def build_prompt(variant: str, year: int, month: int, batch_size: int) -> str:
    """The prompt text for one month."""
    return _template(variant).format(
        batch_size=batch_size,
        month_name=calendar.month_name[month],
        year=year,
        iso_month=f"{year:04d}-{month:02d}",
    )


def prompt_version(variant: str) -> str:
    """A short hash of the variant's template and the answer schema (12 hex digits)."""
    material = _template(variant) + json.dumps(json_schema(), sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:12]


# Bounds on what a generator may put in one field (the columns' widths): a longer
# value is cut, not refused, so one rambling entry still yields its book.
MAX_TITLE = 500
MAX_AUTHOR = 200
MAX_AUTHORS = 10
MAX_PUBLISHER = 300
MAX_DATE = 64
MAX_ISBN = 32
MAX_REASON = 1000
# More tokens than any model's context: a count above it is garbage, counted as 0.
MAX_TOKENS = 10_000_000


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TypeError("expected a string")
    return str(value).strip()[:limit].strip() or None


def token_count(value: Any) -> int:
    """A token count from an answer's usage block; anything but a sane count is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or not 0 <= value <= MAX_TOKENS:  # NaN, negative, absurd
        return 0
    return int(value)


def _first(item: dict[str, Any], *keys: str) -> Any:
    """The first non-empty value among ``keys`` (the schema's name comes first)."""
    for key in keys:
        if item.get(key) not in (None, "", []):
            return item[key]
    return None


def parse_books(provider: str, text: str) -> list[BookCandidate]:
    """Parse an answer ``{"books": [...]}`` strictly.

    A body that is not JSON, or not that shape, or holds no usable book, is a
    transient :class:`ProviderError` (the next attempt may do better). A single
    entry without a title is skipped, not fatal.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise ProviderError(provider, "malformed answer: not JSON") from None
    # The schema asks for {"books": [...]}; a bare list of books is taken too.
    items = (
        data if isinstance(data, list) else data.get("books") if isinstance(data, dict) else None
    )
    if not isinstance(items, list):
        raise ProviderError(provider, 'malformed answer: no "books" list')
    books: list[BookCandidate] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            title = _text(item.get("title"), MAX_TITLE)
            authors = _first(item, "authors", "author") or []
            if isinstance(authors, str):
                authors = [authors]
            if not title or not isinstance(authors, list):
                raise TypeError("no title or bad authors")
            named = [a for a in (_text(x, MAX_AUTHOR) for x in authors) if a]
            books.append(
                BookCandidate(
                    title=title,
                    authors=named[:MAX_AUTHORS],
                    publisher=_text(item.get("publisher"), MAX_PUBLISHER),
                    publication_date=_text(
                        _first(item, "publication_date", "published_date", "date_published"),
                        MAX_DATE,
                    ),
                    isbn=_text(
                        _first(item, "isbn13", "isbn_13", "isbn", "isbn10", "isbn_10"), MAX_ISBN
                    ),
                    reason=_text(item.get("reason"), MAX_REASON),
                    source=provider,
                )
            )
        except TypeError:
            continue  # one bad entry does not spoil the list
    if not books:
        raise ProviderError(provider, "empty answer: no usable book in the list")
    return books

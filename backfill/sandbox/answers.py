"""What the emulated models answer: the month's list, shaped as the request asks.

A real model follows the response schema it is given, so the sandbox does too:
the list goes under the schema's array property (``books`` by default) and each
entry's fields take the schema's names when they are recognisable synonyms
(``isbn`` for ``isbn13``, ``author`` as one string, ...). Without JSON mode the
JSON comes wrapped in a Markdown code fence, as chat models write it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from backfill.sandbox import codes

_MONTH = re.compile(r"(?<!\d)(\d{4})-(0[1-9]|1[0-2])(?!\d)")
_BATCH = re.compile(r"up to (\d+) books", re.IGNORECASE)

_SYNONYMS = {
    "title": ("title", "name", "booktitle"),
    "authors": ("authors", "author", "authornames", "writers", "writer"),
    "publisher": ("publisher", "imprint", "originalpublisher"),
    "publication_date": (
        "publicationdate",
        "published",
        "publishdate",
        "datepublished",
        "publisheddate",
        "releasedate",
        "date",
    ),
    "isbn13": ("isbn13", "isbn", "isbn13ifknown", "isbnthirteen"),
    "reason": ("reason", "why", "notability", "note", "description"),
}
_CANONICAL = {alias: field for field, aliases in _SYNONYMS.items() for alias in aliases}


class PromptError(ValueError):
    """The prompt breaks the sandbox's contract (no ``YYYY-MM`` month in it)."""


@dataclass(frozen=True)
class Prompt:
    """What the sandbox reads from a prompt: the month and the batch size."""

    year: int
    month: int
    limit: int | None

    @property
    def iso_month(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def read_prompt(text: str) -> Prompt:
    """The month (``YYYY-MM``, required) and ``up to N books`` (optional) of a prompt."""
    match = _MONTH.search(text)
    if not match:
        raise PromptError("sandbox: the prompt names no month written YYYY-MM")
    year, month = int(match.group(1)), int(match.group(2))
    if not codes.YEAR_MIN <= year <= codes.YEAR_MAX:
        raise PromptError(f"sandbox: knows books from {codes.YEAR_MIN} to {codes.YEAR_MAX} only")
    batch = _BATCH.search(text)
    limit = int(batch.group(1)) if batch else None
    return Prompt(year, month, limit if limit else None)


def shape(schema: Any, entries: list[dict[str, Any]]) -> Any:
    """``entries`` laid out the way ``schema`` (JSON Schema or Gemini's subset) asks."""
    if not isinstance(schema, dict):
        return {"books": entries}
    if _type(schema) == "array":
        return [_item(schema.get("items"), e) for e in entries]
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and _type(sub) == "array":
            return {name: [_item(sub.get("items"), e) for e in entries]}
    return {"books": entries}


def render(payload: Any, *, json_mode: bool) -> str:
    """The answer text: bare JSON in JSON mode, else JSON inside a Markdown fence."""
    if json_mode:
        return json.dumps(payload, ensure_ascii=False)
    return "```json\n" + json.dumps(payload, ensure_ascii=False, indent=2) + "\n```"


def truncate(text: str) -> str:
    """The answer cut off mid-way, as when a model runs out of output tokens."""
    return text[: max(1, int(len(text) * 0.55))]


def tokens(text: str) -> int:
    """A rough token count (about four characters a token)."""
    return max(1, math.ceil(len(text) / 4))


def _type(schema: Any) -> str:
    """The schema's type, lower-cased, ignoring "null" in a type list."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), None)
    return str(kind or "").lower()


def _item(schema: Any, entry: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return entry
    item: dict[str, Any] = {}
    for name, sub in properties.items():
        field = _CANONICAL.get(re.sub(r"[^a-z0-9]", "", name.lower()))
        value = entry.get(field) if field else None
        if field == "authors" and _type(sub) == "string" and isinstance(value, list):
            value = ", ".join(value)
        item[name] = value
    return item

"""Clients of the external APIs, one module each; every request is reserved in the quota first.

- :mod:`~backfill.providers.gemini` and :mod:`~backfill.providers.xai`: the generators
  (:class:`~backfill.providers.base.Generator`), listing a month's notable books;
- :mod:`~backfill.providers.isbndb`: ISBN lookups and title search;
- :mod:`~backfill.providers.openlibrary` and :mod:`~backfill.providers.googlebooks`:
  title search, returning :class:`~backfill.providers.base.Hit` like ISBNdb's ``hit_of``;
- :mod:`~backfill.providers.prompts`: the prompt variants, schema and version hash.
"""

from __future__ import annotations

from backfill.providers.base import BookCandidate, Generation, Generator, Hit
from backfill.providers.gemini import GeminiClient
from backfill.providers.googlebooks import GoogleBooksClient
from backfill.providers.isbndb import IsbndbClient
from backfill.providers.openlibrary import OpenLibraryClient
from backfill.providers.xai import XaiClient

__all__ = [
    "BookCandidate",
    "GeminiClient",
    "Generation",
    "Generator",
    "GoogleBooksClient",
    "Hit",
    "IsbndbClient",
    "OpenLibraryClient",
    "XaiClient",
]

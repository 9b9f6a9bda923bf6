"""A local emulator of the Gemini, xAI, ISBNdb, Open Library and Google Books HTTP
APIs, with fault injection.

One Flask app serves all five APIs on one port, so ``GEMINI_BASE_URL``,
``XAI_BASE_URL``, ``ISBNDB_BASE_URL``, ``OPENLIBRARY_BASE_URL`` and
``GOOGLE_BOOKS_BASE_URL`` can all point at it. The catalogue sets traps for a
resolver (:mod:`backfill.sandbox.traps`) and exposes its ground truth
(``/_sandbox/truth/YYYY-MM``, ``/_sandbox/truth-isbns``). It speaks each
API's public wire format (requests, answers, error bodies and status codes),
answers deterministic books per month, enforces ISBNdb's request rate and daily
quota, injects faults on demand, and counts every call (``/_sandbox/stats``).
The real clients talk HTTP to it; it is an emulator, not a mock.
"""

from backfill.sandbox.app import create_sandbox_app, serve

__all__ = ["create_sandbox_app", "serve"]

"""Settings for real worker processes in tests: fast retries, generous rates, so the
tests wait on faults and not on backoff or rate windows."""

from __future__ import annotations

FAST = {
    "BACKFILL_RETRY_BACKOFF_SECONDS": "0.2",
    "BACKFILL_RETRY_BACKOFF_MAX_SECONDS": "1",
    "ISBNDB_RATE_PER_SECOND": "50",
    "GEMINI_RATE_PER_MINUTE": "0",
    "XAI_RATE_PER_MINUTE": "0",
    # In-attempt retries without the production waits; the test sandbox lifts OL's rate.
    "PROVIDER_RETRY_BACKOFF_SECONDS": "0.05",
    "PROVIDER_RETRY_BACKOFF_MAX_SECONDS": "0.2",
    "OPENLIBRARY_RATE_PER_SECOND": "50",
    "GOOGLE_BOOKS_RATE_PER_MINUTE": "0",
}

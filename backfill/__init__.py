"""backfill: fills a book catalog month by month.

The Celery app lives in :mod:`backfill.celery` and is exposed here as ``app`` so
that ``celery -A backfill`` finds it; it is built lazily, so importing this
package runs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from backfill.celery import app

        return app
    raise AttributeError(name)

"""The service's shared vocabulary, each written once: the year range, the month and
book statuses, the providers and the task names.

Base layer: imports nothing of the service, so every layer (and the web schemas,
the CLI's parameter types and the database's CHECK constraints) reads the same
values. The sandbox keeps its own copies on purpose: it plays the outside world
and imports nothing of the service.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# Calendar months the service accepts, everywhere (API, CLI, task arguments,
# settings, the database's CHECK constraint).
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2100

# A month's status in backfill_log (the original's MonthStatus.status).
MonthStatus = Literal["pending", "processing", "completed", "failed", "retry"]
MONTH_STATUSES: Final[tuple[str, ...]] = get_args(MonthStatus)
# Statuses a month has once an attempt has ended (the stats' recent activity).
FINISHED_STATUSES: Final[tuple[str, ...]] = ("completed", "failed", "retry")

# A generated book's fate: waiting for (more) resolution, resolved to an ISBN-13,
# not found anywhere (kept, tried again by re-resolution), or named only with an
# ISBN that fails its checksum (a hallucination: kept, never looked up).
CandidateStatus = Literal["pending", "resolved", "unresolved", "invalid_isbn"]
CANDIDATE_STATUSES: Final[tuple[str, ...]] = get_args(CandidateStatus)

PROVIDERS: Final = ("gemini", "xai", "isbndb", "openlibrary", "googlebooks")
GENERATORS: Final = ("gemini", "xai")

# Celery task names: the wire names in every message, in beat's schedule
# (celeryconfig.py) and in Flower.
TASK_SCHEDULE: Final = "backfill.schedule"
TASK_PROCESS_MONTH: Final = "backfill.process_month"
TASK_RERESOLVE: Final = "backfill.reresolve"

"""Logging: one line per event, with the month, job id and attempt of the work
in progress on every line, as text or JSON (``LOG_FORMAT=json``).

As a last line of defence every configured secret (API keys, cron secret) is
redacted from every record before it is written.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

from backfill.config import Settings, get_settings
from backfill.constants import TASK_PROCESS_MONTH

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "backfill_log_context", default=None
)
_CONTEXT_KEYS = ("month", "job_id", "attempt")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within the block, every log line carries ``fields`` (month, job_id, attempt)."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context (e.g. the attempt, once it is known)."""
    _context.set({**(_context.get() or {}), **fields})


# "(2024, 5" in a task's args repr, or "'year': 2024, 'month': 5" in its kwargs repr
_ARGS_MONTH = re.compile(r"^\(\s*(\d{4}),\s*(\d{1,2})\b")
_KWARGS_YEAR = re.compile(r"'year':\s*(\d{4})\b")
_KWARGS_MONTH = re.compile(r"'month':\s*(\d{1,2})\b")
_KNOWN_TASKS = 2048  # task id -> month, for Celery's lines that name only the id


class ContextFilter(logging.Filter):
    """Adds the context fields to each record and redacts secrets.

    Celery's own lines about a month task ("Task backfill.process_month[<job id>]
    received / succeeded / retry") get the month and job id too: from the task's
    arguments when the line carries them, else from the task id seen before.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]
        self.months: collections.OrderedDict[str, str] = collections.OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for key in _CONTEXT_KEYS:
            setattr(record, key, ctx.get(key, getattr(record, key, None)))
        if ctx.get("month") and ctx.get("job_id"):
            self._remember(str(ctx["job_id"]), str(ctx["month"]))
        elif isinstance(record.args, dict) and record.args.get("name") == TASK_PROCESS_MONTH:
            self._celery_line(record, record.args)
        if self.secrets:
            message = record.getMessage()
            redacted = self._redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self._redact(record.exc_text)
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return text

    def _remember(self, task_id: str, month: str) -> None:
        self.months[task_id] = month
        self.months.move_to_end(task_id)
        while len(self.months) > _KNOWN_TASKS:
            self.months.popitem(last=False)

    def _celery_line(self, record: logging.LogRecord, args: dict[str, Any]) -> None:
        task_id = str(args.get("id") or "")
        month = self.months.get(task_id)
        positional = _ARGS_MONTH.search(str(args.get("args") or ""))
        year_kw = _KWARGS_YEAR.search(str(args.get("kwargs") or ""))
        month_kw = _KWARGS_MONTH.search(str(args.get("kwargs") or ""))
        if positional:
            month = f"{int(positional[1]):04d}-{int(positional[2]):02d}"
        elif year_kw and month_kw:
            month = f"{int(year_kw[1]):04d}-{int(month_kw[1]):02d}"
        if month and task_id:
            self._remember(task_id, month)
            record.month, record.job_id = month, task_id


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(
            f"{key}={getattr(record, key)}"
            for key in _CONTEXT_KEYS
            if getattr(record, key, None) is not None
        )
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.name}"
        line = f"{base} [{ctx}] {record.getMessage()}" if ctx else f"{base} {record.getMessage()}"
        if record.exc_info or record.exc_text:
            line += "\n" + (
                record.exc_text or self.formatException(record.exc_info or (None, None, None))
            )
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info or record.exc_text:
            doc["exc"] = record.exc_text or self.formatException(
                record.exc_info or (None, None, None)
            )
        return json.dumps(doc, default=str)


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.gemini_api_key,
        settings.xai_api_key,
        settings.isbndb_api_key,
        settings.google_books_api_key,
        settings.cron_secret,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def configure(settings: Settings | None = None, stream: Any = None) -> None:
    """Install our handler on the root logger (idempotent)."""
    settings = settings or get_settings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter(_secrets(settings)))
    handler.set_name("backfill")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "backfill" or isinstance(old, logging.StreamHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # urllib3 would log full URLs at DEBUG; some APIs accept keys in query strings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)

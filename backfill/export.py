"""Writing the catalogue out: JSON Lines or CSV, streamed, to a file replaced atomically.

Services layer. The rows come from :func:`backfill.catalogue.iter_books` (a
server-side cursor) and each is written as soon as it is read: nothing builds
the list, so memory stays flat however many books there are. Both formats
carry the same fields as the API (:data:`backfill.catalogue.FIELDS`), from the
same :class:`~backfill.catalogue.BookRow`.

* JSONL: one JSON object per line, UTF-8, non-ASCII kept as is.
* CSV: RFC 4180 -- a header row, ``\\r\\n`` line ends, fields quoted only when
  needed (commas, quotes, line breaks), UTF-8; list fields joined with ``"; "``
  and a null as an empty field.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session

from backfill.catalogue import FIELDS, BookFilters, BookRow, iter_books

FORMATS = ("jsonl", "csv")
LIST_SEPARATOR = "; "


def write_jsonl(rows: Iterable[BookRow], out: TextIO) -> int:
    """One JSON object per row and line; returns the number of rows written."""
    count = 0
    for row in rows:
        out.write(json.dumps(row.as_json(), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(item) for item in value)
    return str(value)


def write_csv(rows: Iterable[BookRow], out: TextIO) -> int:
    """A header row, then one record per row; returns the number of rows written.

    ``out`` must be opened with ``newline=""`` (as the csv module asks), so the
    ``\\r\\n`` record ends and the line breaks inside quoted fields pass unchanged.
    """
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(FIELDS)
    count = 0
    for row in rows:
        data = row.as_json()
        writer.writerow([_cell(data[name]) for name in FIELDS])
        count += 1
    return count


WRITERS: dict[str, Callable[[Iterable[BookRow], TextIO], int]] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
}


def export(session: Session, filters: BookFilters, fmt: str, out: TextIO) -> int:
    """Stream the books matching ``filters`` to ``out`` as ``fmt``; returns how many."""
    return WRITERS[fmt](iter_books(session, filters), out)


def _umask() -> int:
    # The only way to read the umask is to set it; a CLI process does this once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text file (``newline=""``) that appears at ``path`` only when the
    block succeeds.

    It is written as a temporary file next to ``path`` and renamed over it at
    the end (atomic on POSIX within one filesystem), so a failed or interrupted
    export never leaves half a file, and an earlier file at ``path`` stays as
    it was until the new one is complete.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the name points at it
        # mkstemp makes the file 0600; give it the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

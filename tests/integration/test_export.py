"""``backfill export``: JSONL and CSV, streamed, atomic, the same rows as the API.

The CLI opens its own sessions, so these tests commit (``committed_db``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.orm import Session

from backfill import catalogue, export
from backfill.cli import cli
from backfill.db import get_engine, transaction
from backfill.web import create_app
from tests.conftest import ROOT, subprocess_env
from tests.integration.test_books_api import add_book, build_catalogue
from tests.support.webutil import AUTH, add_candidate, add_month

# Titles that need CSV's quoting, and non-ASCII text.
TRICKY = [
    ("9780000000101", 'Commas, "Quotes" and More', ["Doe, Jane", "O'Brien"]),
    ("9780000000102", "Line one\nline two\r\nline three", ["Ünsal Çelik"]),
    ("9780000000103", "東京物語 — Ōsaka; naïve café", ["村上 春樹"]),
    ("9780000000104", "Trailing space ", []),
]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


@pytest.fixture
def books(committed_db: str) -> str:
    with transaction() as s:
        months = build_catalogue(s)
        for isbn, title, authors in TRICKY:
            add_book(s, months["feb"], isbn, title, authors=authors, publisher=None)
    return committed_db


def api_books(query: str) -> list[dict[str, Any]]:
    """Every book the API lists for ``query``, all pages."""
    client = create_app().test_client()
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        body = client.get(f"/api/internal/books?{query}&page_size=3&page={page}", headers=AUTH).json
        found += body["books"]
        if not body["books"]:
            return found
        page += 1


def test_jsonl_lines_parse_and_equal_the_api(books: str) -> None:
    result = invoke("--format", "jsonl")
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes
    assert "東京物語".encode() in raw  # UTF-8 as is, not \\u escapes
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with \n
    rows = [json.loads(line) for line in lines[:-1]]
    assert rows == api_books("status=resolved")
    assert len(rows) == 8 and all(r["isbn13"] for r in rows)
    assert all(list(r) == list(catalogue.FIELDS) for r in rows)


def test_export_equals_the_api_for_the_same_filters(books: str) -> None:
    for args, query in (
        (["--include-unresolved"], ""),
        (["--from", "2024-02"], "status=resolved&from=2024-02"),
        (["--to", "2024-02", "--include-unresolved"], "to=2024-02"),
        (["--from", "2024-02", "--to", "2024-02", "--include-unresolved"], "month=2024-02"),
        (["--from", "2030-01"], "from=2030-01&status=resolved"),
    ):
        result = invoke("--format", "jsonl", *args)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert rows == api_books(query), args
    unresolved = [
        json.loads(x)
        for x in invoke("--format", "jsonl", "--include-unresolved").stdout.splitlines()
    ]
    assert {r["title"] for r in unresolved if r["isbn13"] is None} == {
        "Lost Manuscript",
        "Not Tried Yet",
    }


def test_csv_is_rfc_4180_and_round_trips(books: str) -> None:
    result = invoke("--format", "csv", "--include-unresolved")
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes.decode("utf-8")
    assert raw.startswith(",".join(catalogue.FIELDS) + "\r\n")
    assert raw.endswith("\r\n")
    assert '"Commas, ""Quotes"" and More"' in raw  # quoted only where needed, quotes doubled
    assert "\r\n9780000000001,Zebra Crossing," in raw  # no needless quotes
    records = list(csv.reader(io.StringIO(raw, newline=""), strict=True))
    header, body = records[0], records[1:]
    assert tuple(header) == catalogue.FIELDS
    expected = api_books("")
    assert len(body) == len(expected) == 10
    for record, book in zip(body, expected, strict=True):
        assert record == [
            export._cell(book[name])
            for name in catalogue.FIELDS  # "; "-joined lists, "" null
        ]
    by_isbn = {r[0]: dict(zip(header, r, strict=True)) for r in body}
    for isbn, title, authors in TRICKY:
        assert by_isbn[isbn]["title"] == title  # embedded \n and \r\n survive exactly
        assert by_isbn[isbn]["authors"] == "; ".join(authors)
        assert by_isbn[isbn]["publisher"] == ""
    assert by_isbn["9780000000001"]["generators"] == "gemini; xai"


def test_output_file_is_written_atomically(books: str, tmp_path: Path) -> None:
    target = tmp_path / "books.csv"
    target.write_text("the previous export\n")
    result = invoke("--format", "csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "exported 8 books to" in result.stderr
    assert target.read_bytes().count(b"\r\n") >= 9 and b"previous" not in target.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["books.csv"]  # no temp file left

    # A failed export (the database is gone) leaves the earlier file as it was.
    before = target.read_bytes()
    down = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "backfill"), "export", "--format", "jsonl",
         "--output", str(target)],
        env=subprocess_env(DATABASE_URL="postgresql+psycopg://u@127.0.0.1:9/x"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 2 and down.stderr.startswith("Error: database unreachable")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["books.csv"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_file_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), export.atomic_file(target) as out:
        out.write("half a line")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_text("kept")
    with pytest.raises(RuntimeError), export.atomic_file(target) as out:
        out.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "kept" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "jsonl", "--from", "2024-13"], "--from: expected a month as YYYY-MM"),
        (["--format", "csv", "--to", "24-01"], "--to: expected a month as YYYY-MM"),
        (["--format", "csv", "--from", "2024-05", "--to", "2024-01"], "--from: must not be after"),
        (["--format", "xml"], "--format: expected one of jsonl, csv"),
        (["--format", "csv", "--output", "/nonexistent-dir/x.csv"], "--output: No such file"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(books: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]


def test_format_is_required_one_line() -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "backfill"), "export"],
        env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "--format" in proc.stderr


# -- 10^5 books: streamed, memory flat

N = 100_000
GENERATE = f"""
INSERT INTO books (isbn13, title, authors, publisher, publication_date,
                   found_year, found_month, generator, resolver)
SELECT '978' || lpad(g::text, 10, '0'),
       'Generated book number ' || g || ', "volume" ' || (g % 7),
       ARRAY['Author ' || g, 'Co-author ' || (g % 13)],
       'Publisher ' || (g % 97),
       '2020-01-01',
       2000 + g % 25, 1 + g % 12,
       (ARRAY['gemini', 'xai', 'both'])[1 + g % 3],
       'openlibrary'
FROM generate_series(1, {N}) AS g
"""


@pytest.fixture
def many_books(committed_db: str) -> str:
    with get_engine(committed_db).begin() as conn:
        conn.execute(text(GENERATE))
    return committed_db


def test_100k_books_stream_with_flat_memory(many_books: str, tmp_path: Path) -> None:
    jsonl, csv_file = tmp_path / "books.jsonl", tmp_path / "books.csv"
    tracemalloc.start()  # slows Python ~6x: measured on one format only
    try:
        result = invoke("--format", "jsonl", "--output", str(jsonl))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    # About 2 MB streamed; the same rows built into a list peak at about 80 MB.
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert jsonl.stat().st_size > 15 * 2**20
    with jsonl.open(encoding="utf-8") as f:
        assert sum(1 for _ in f) == N
    assert invoke("--format", "csv", "--output", str(csv_file)).exit_code == 0
    with csv_file.open(encoding="utf-8", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == N + 1  # and the header


def test_iter_books_reads_through_a_server_side_cursor(session: Session) -> None:
    """The rows arrive in batches from a named cursor (not all at once in the client)."""
    row = add_month(session, 2024, 1)
    for n in range(5):
        add_book(session, row, f"978200000000{n}", f"Book {n}")
    add_candidate(session, row, "Open one", "unresolved")
    rows = catalogue.iter_books(session, catalogue.BookFilters(), batch=2)
    first = next(rows)
    cursors = session.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one()
    assert cursors == 1
    rest = list(rows)
    assert [first.title, *(r.title for r in rest)] == [
        "Book 0", "Book 1", "Book 2", "Book 3", "Book 4", "Open one",
    ]  # fmt: skip
    assert session.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one() == 0

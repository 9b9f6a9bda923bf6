"""``GET /api/internal/books`` and ``backfill books``, on the real database.

The API tests run on the rolled-back ``session``; the CLI opens its own
sessions, so its tests commit (``committed_db``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from backfill import catalogue
from backfill.cli import cli
from backfill.db import transaction
from backfill.models import BackfillLog, Book, Candidate
from backfill.web import create_app
from tests.integration.test_api_openapi import Checker
from tests.support.webutil import AUTH, add_candidate, add_month, snapshot

URL = "/api/internal/books"


def add_book(
    session: Session,
    row: BackfillLog,
    isbn13: str,
    title: str,
    *,
    generators: tuple[str, ...] = ("gemini",),
    resolver: str = "openlibrary",
    **fields: Any,
) -> Book:
    """A resolved book filed under ``row``'s month, with its resolved candidate."""
    book = Book(
        isbn13=isbn13,
        title=title,
        authors=fields.pop("authors", ["A. Writer"]),
        publisher=fields.pop("publisher", "Pub"),
        publication_date=fields.pop("publication_date", f"{row.year}-{row.month:02d}-01"),
        found_year=row.year,
        found_month=row.month,
        generator="both" if len(generators) > 1 else generators[0],
        resolver=resolver,
    )
    session.add(book)
    session.flush()
    add_candidate(
        session, row, title, "resolved", isbn13=isbn13, generators=generators, resolver=resolver
    )
    return book


def build_catalogue(session: Session) -> dict[str, BackfillLog]:
    """Three months of books, resolved and not, with the cases the rules decide."""
    jan, feb, mar = (add_month(session, 2024, m, status="completed") for m in (1, 2, 3))
    add_book(session, jan, "9780000000001", "Zebra Crossing", generators=("gemini", "xai"))
    add_book(session, jan, "9780000000002", "Apple Orchard", resolver="isbndb:title")
    add_book(session, feb, "9780000000003", "Les Années 50% éclair", generators=("xai",))
    add_book(session, mar, "9780000000004", "Mango Season")
    # Named again in March: still one book, filed under January.
    add_candidate(session, mar, "Apple Orchard", "resolved", isbn13="9780000000002")
    add_candidate(session, feb, "Lost Manuscript", "unresolved", generators=("gemini", "xai"))
    add_candidate(session, mar, "Not Tried Yet", "pending")
    add_candidate(session, mar, "Made Up Isbn", "invalid_isbn")  # a hallucination: never listed
    old = add_candidate(session, feb, "Superseded Draft", "unresolved")
    session.execute(
        update(Candidate).where(Candidate.id == old.id).values(superseded_at=Candidate.created_at)
    )
    session.flush()
    return {"jan": jan, "feb": feb, "mar": mar}


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get(client: FlaskClient, query: str = "") -> Any:
    resp = client.get(f"{URL}?{query}", headers=AUTH)
    assert resp.status_code == 200, resp.json
    return resp.json


def titles(body: dict[str, Any]) -> list[str]:
    return [b["title"] for b in body["books"]]


def test_needs_the_cron_secret(client: FlaskClient) -> None:
    resp = client.get(URL)
    assert resp.status_code == 401 and resp.json["error"]["field"] == "X-Cron-Secret"


def test_lists_resolved_books_and_open_candidates_in_month_title_order(
    client: FlaskClient, session: Session
) -> None:
    build_catalogue(session)
    body = get(client)
    assert (body["page"], body["page_size"], body["total"]) == (1, 100, 6)
    assert [(b["month"], b["title"], b["isbn13"]) for b in body["books"]] == [
        ("2024-01", "Apple Orchard", "9780000000002"),  # once, at its filed month
        ("2024-01", "Zebra Crossing", "9780000000001"),
        ("2024-02", "Les Années 50% éclair", "9780000000003"),
        ("2024-02", "Lost Manuscript", None),  # unresolved
        ("2024-03", "Mango Season", "9780000000004"),
        ("2024-03", "Not Tried Yet", None),  # pending counts as unresolved
    ]
    zebra = body["books"][1]
    assert zebra == {
        "isbn13": "9780000000001",
        "title": "Zebra Crossing",
        "authors": ["A. Writer"],
        "publisher": "Pub",
        "publication_date": "2024-01-01",
        "month": "2024-01",
        "generators": ["gemini", "xai"],
        "resolver": "openlibrary",
    }
    lost = body["books"][3]
    assert lost["generators"] == ["gemini", "xai"] and lost["resolver"] is None
    assert list(lost) == list(catalogue.FIELDS)


def test_filters(client: FlaskClient, session: Session) -> None:
    build_catalogue(session)
    assert titles(get(client, "month=2024-03")) == ["Mango Season", "Not Tried Yet"]
    # Apple Orchard was named in March too, but is filed under January.
    assert "Apple Orchard" not in titles(get(client, "month=2024-03"))
    assert titles(get(client, "from=2024-02&to=2024-02")) == [
        "Les Années 50% éclair",
        "Lost Manuscript",
    ]
    assert len(get(client, "from=2024-02")["books"]) == 4
    assert len(get(client, "to=2024-01")["books"]) == 2
    assert titles(get(client, "status=unresolved")) == ["Lost Manuscript", "Not Tried Yet"]
    resolved = get(client, "status=resolved")
    assert resolved["total"] == 4 and all(b["isbn13"] for b in resolved["books"])
    assert titles(get(client, "resolver=isbndb:title")) == ["Apple Orchard"]
    assert titles(get(client, "q=ANNÉES")) == ["Les Années 50% éclair"]  # case-insensitive
    assert titles(get(client, "q=50%25")) == ["Les Années 50% éclair"]  # % is a plain character
    assert titles(get(client, "q=_")) == []  # so is _
    assert titles(get(client, "q=o&status=unresolved&month=2024-02")) == ["Lost Manuscript"]
    empty = get(client, "month=2023-01")
    assert empty == {"books": [], "page": 1, "page_size": 100, "total": 0}


def test_paging_is_stable_and_complete(client: FlaskClient, session: Session) -> None:
    months = build_catalogue(session)
    # Same month and title, told apart by ISBN-13 / candidate id.
    for n in range(5):
        add_book(session, months["feb"], f"978100000000{n}", "Twin")
        add_candidate(session, months["feb"], "Twin", "unresolved")
    everything = get(client, "page_size=500")["books"]
    assert len(everything) == 16
    pages = [get(client, f"page={p}&page_size=3") for p in range(1, 8)]
    assert [b for page in pages for b in page["books"]] == everything
    assert all(page["total"] == 16 for page in pages)
    assert pages[-1]["books"] == []  # past the end: empty, not an error
    twins = [b["isbn13"] for b in everything if b["title"] == "Twin"]
    assert twins == [f"978100000000{n}" for n in range(5)] + [None] * 5
    again = [get(client, f"page={p}&page_size=3")["books"] for p in range(1, 8)]
    assert again == [page["books"] for page in pages]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("month=2024-13", "month", "month: must be YYYY-MM (years 1900-2100)"),
        ("month=24-01", "month", "month: must be YYYY-MM (years 1900-2100)"),
        ("from=x", "from", "from: must be YYYY-MM"),
        ("to=2024-1", "to", "to: must be YYYY-MM"),
        ("from=2024-05&to=2024-01", "from", "from: must not be after to (2024-05 > 2024-01)"),
        ("month=2024-01&from=2023-01", "month", "month: give month, or from/to, not both"),
        ("page_size=0", "page_size", "page_size: must be 1..500"),
        ("page_size=501", "page_size", "page_size: must be 1..500"),
        ("page_size=ten", "page_size", "page_size: must be 1..500"),
        ("page=0", "page", "page: must be 1..1000000"),
        ("page=1000001", "page", "page: must be 1..1000000"),
        ("status=invalid_isbn", "status", "status: must be resolved or unresolved"),
        ("resolver=a%20b", "resolver", "resolver: must be 1-32 characters"),
        ("q=", "q", "q: must be 1-200 characters, no NUL"),
        ("q=a%00b", "q", "q: must be 1-200 characters, no NUL"),
        ("q=" + "x" * 201, "q", "q: must be 1-200 characters"),
        ("limit=5", "limit", "limit: Extra inputs are not permitted"),
        ("month=2024-01&month=2024-02", "month", "month: must be given at most once"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(
    client: FlaskClient, session: Session, query: str, field: str, message: str
) -> None:
    build_catalogue(session)
    before = snapshot(session)
    resp = client.get(f"{URL}?{query}", headers=AUTH)
    assert resp.status_code == 400, resp.json
    error = resp.json["error"]
    assert error["field"] == field
    assert error["message"].startswith(message), error["message"]
    assert snapshot(session) == before


def test_documented_and_responses_match_the_document(client: FlaskClient, session: Session) -> None:
    build_catalogue(session)
    doc = client.get("/openapi.json").json
    op = doc["paths"][URL]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"month", "from", "to", "status", "resolver", "q", "page", "page_size"}
    assert all(p["description"] for p in params.values())
    assert params["page_size"]["schema"]["maximum"] == 500
    assert params["status"]["schema"]["enum"] == ["resolved", "unresolved"]
    check = Checker(doc)
    for query in ("", "status=unresolved", "page=2&page_size=1", "q=zebra", "month=2024-13"):
        check("get", URL, client.get(f"{URL}?{query}", headers=AUTH))
    check("get", URL, client.get(URL))
    assert {s for _, _, s in check.seen} == {"200", "400", "401"}


# -- backfill books


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["books", *args], catch_exceptions=False)


@pytest.fixture
def committed_catalogue(committed_db: str) -> str:
    with transaction() as s:
        build_catalogue(s)
    return committed_db


def test_cli_table_and_json(committed_catalogue: str) -> None:
    result = invoke("--month", "2024-02")
    assert result.exit_code == 0, result.output
    # (80 columns under the runner: titles wrap, ISBNs never do)
    assert "Lost" in result.stdout and "Manuscript" in result.stdout
    assert "9780000000003" in result.stdout
    assert "Zebra" not in result.stdout
    assert "books 1-2 of 2 (page 1 of 1)" in result.stdout

    second = invoke("--from", "2024-01", "--to", "2024-03", "--page-size", "2", "--page", "2")
    assert second.exit_code == 0
    assert "9780000000003" in second.stdout and "Apple" not in second.stdout
    assert "books 3-4 of 6 (page 2 of 3)" in second.stdout
    api = create_app().test_client()
    for args, query in (
        (["--json"], ""),
        (["--json", "--status", "unresolved"], "status=unresolved"),
        (
            ["--json", "--q", "orchard", "--resolver", "isbndb:title"],
            "q=orchard&resolver=isbndb:title",
        ),
        (["--json", "--page", "2", "--page-size", "4"], "page=2&page_size=4"),
    ):
        cli_json = json.loads(invoke(*args).stdout)
        assert cli_json == api.get(f"{URL}?{query}", headers=AUTH).json, args


def test_cli_empty_result_is_one_sentence(committed_catalogue: str) -> None:
    result = invoke("--month", "2020-01")
    assert result.exit_code == 0
    assert result.stdout == "No books match these filters.\n"
    past = invoke("--page", "9")
    assert past.stdout == "No books match these filters on page 9 (there are 6).\n"
    assert json.loads(invoke("--month", "2020-01", "--json").stdout)["books"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2024-13"], "--month: expected a month as YYYY-MM"),
        (["--from", "2024-05", "--to", "2024-01"], "--from: must not be after to"),
        (["--month", "2024-01", "--to", "2024-02"], "--month: give month, or from/to"),
        (["--status", "invalid_isbn"], "--status: expected one of resolved, unresolved"),
        (["--page-size", "501"], "--page-size: expected a whole number from 1 to 500"),
        (["--page", "0"], "--page: expected a whole number from 1 to 1000000"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(
    committed_catalogue: str, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["books", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]

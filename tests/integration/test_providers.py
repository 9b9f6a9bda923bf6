"""The provider clients against the sandbox over real HTTP: wire formats and error mapping.

Every test also checks the quota ledger against the calls the sandbox counted.
In-attempt retries are exercised in tests/integration/test_provider_retries.py.
The prompts and the reading of answers, without HTTP: tests/unit/test_prompts.py.
"""

from __future__ import annotations

import time

import pytest

from backfill import quota
from backfill.config import Settings
from backfill.db import session_factory
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted
from backfill.providers import GeminiClient, IsbndbClient, XaiClient, prompts
from tests.support.pipeline_support import assert_ledger_matches, ledger_calls, make_settings
from tests.support.sandbox_fixture import Sandbox

Client = type[GeminiClient] | type[XaiClient]
# In-attempt retries without the production waits.
FAST_RETRIES = {"provider_retry_backoff_seconds": 0.01, "provider_retry_backoff_max_seconds": 0.05}


@pytest.fixture
def settings(sandbox: Sandbox, committed_db: str) -> Settings:
    """Sandbox URLs and keys, the emptied test database, fast limits and retries."""
    return make_settings(sandbox, committed_db, **FAST_RETRIES)


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient])
def test_generators_speak_the_wire_format_and_parse_the_answer(
    client_class: Client, sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    client = client_class(settings)
    generation = client.generate(2024, 5, "contemporary-notable", 10)
    expected = sandbox.truth(2024, 5)["answers"][client.name][:10]
    assert [b.title for b in generation.books] == [e["title"] for e in expected]
    assert [b.authors for b in generation.books] == [e["authors"] for e in expected]
    assert [b.isbn for b in generation.books] == [e["isbn13"] for e in expected]
    assert {b.source for b in generation.books} == {client.name}
    assert generation.tokens_in > 0 and generation.tokens_out > 0
    assert generation.prompt_version == prompts.prompt_version("contemporary-notable")
    assert generation.model in (settings.gemini_model, settings.xai_model)
    assert sandbox.stats()["by_month"] == {"2024-05": {client.name: 1}}
    assert assert_ledger_matches(sandbox, committed_db)[client.name] == 1 == client.calls


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient])
def test_baseline_variant_is_sent_for_an_old_month(
    client_class: Client, sandbox: Sandbox, settings: Settings
) -> None:
    generation = client_class(settings).generate(1999, 3, "baseline", 5)
    assert len(generation.books) == 5
    assert generation.prompt_version == prompts.prompt_version("baseline")
    assert sandbox.stats()["by_month"] == {"1999-03": {client_class.name: 1}}


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient, IsbndbClient])
def test_a_missing_key_is_refused_without_a_call(
    client_class: type[GeminiClient | XaiClient | IsbndbClient],
    sandbox: Sandbox,
    committed_db: str,
) -> None:
    settings = make_settings(sandbox, committed_db, **{f"{client_class.name}_api_key": None})
    client = client_class(settings)
    with pytest.raises(ProviderRefused, match="no API key"):
        if isinstance(client, IsbndbClient):
            client.book("9780306406157")
        else:
            client.generate(2024, 5, "contemporary-notable", 5)
    assert sandbox.stats()["calls"][client.name] == 0
    assert assert_ledger_matches(sandbox, committed_db)[client.name] == 0


def test_a_rejected_key_is_a_permanent_refusal(
    sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    sandbox.configure(reject_keys=[v for k, v in sandbox.env().items() if k.endswith("_KEY")])
    with pytest.raises(ProviderRefused, match="HTTP 400"):
        GeminiClient(settings).generate(2024, 5, "contemporary-notable", 5)
    with pytest.raises(ProviderRefused, match="HTTP 400"):
        XaiClient(settings).generate(2024, 5, "contemporary-notable", 5)
    with pytest.raises(ProviderRefused, match="HTTP 403"):
        IsbndbClient(settings).book("9780306406157")
    assert assert_ledger_matches(sandbox, committed_db) == {"gemini": 1, "xai": 1, "isbndb": 1}


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient])
@pytest.mark.parametrize(
    ("fault", "message", "retried"),
    [
        ({"error_rate": 1.0}, r"HTTP 50[03].* after 4 tries$", True),
        # the model's answer cut at its token limit: a whole body, so no in-attempt retry
        ({"malformed_rate": 1.0}, "malformed", False),
        ({"rate_limit_rate": 1.0}, "HTTP 429.* after 4 tries$", True),  # the rate, not the day
    ],
)
def test_transient_generator_failures_are_provider_errors(
    client_class: Client,
    fault: dict[str, float],
    message: str,
    retried: bool,
    sandbox: Sandbox,
    settings: Settings,
    committed_db: str,
) -> None:
    sandbox.configure(**{key: {client_class.name: rate} for key, rate in fault.items()})
    client = client_class(settings)
    with pytest.raises(ProviderError, match=message) as caught:
        client.generate(2024, 5, "contemporary-notable", 5)
    assert not isinstance(caught.value, ProviderRefused)
    tries = settings.provider_max_tries if retried else 1
    assert assert_ledger_matches(sandbox, committed_db)[client_class.name] == tries == client.calls
    # a rate-limit or server error does not mark the day exhausted
    with session_factory(committed_db)() as session:
        assert client_class.name not in quota.blocked_providers(session, settings)


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient])
def test_the_day_quota_answer_blocks_the_provider_until_the_reset(
    client_class: Client, sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    sandbox.configure(quota_exhausted={client_class.name: True})
    with pytest.raises(QuotaExhausted) as caught:
        client_class(settings).generate(2024, 5, "contemporary-notable", 5)
    assert caught.value.resets_at == quota.next_reset(settings)
    sandbox.configure(quota_exhausted={client_class.name: False})
    with pytest.raises(QuotaExhausted):  # refused by the ledger: no second call is made
        client_class(settings).generate(2024, 5, "contemporary-notable", 5)
    assert assert_ledger_matches(sandbox, committed_db)[client_class.name] == 1


@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient, IsbndbClient])
def test_a_hanging_api_ends_in_provider_error_within_the_timeout(
    client_class: type[GeminiClient | XaiClient | IsbndbClient],
    sandbox: Sandbox,
    committed_db: str,
) -> None:
    sandbox.configure(timeout_rate={client_class.name: 1.0}, timeout_seconds=30)
    settings = make_settings(
        sandbox, committed_db, http_timeout_seconds=0.5, provider_max_tries=2, **FAST_RETRIES
    )
    client = client_class(settings)
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"no answer within 0\.5s after 2 tries"):
        if isinstance(client, IsbndbClient):
            client.book("9780306406157")
        else:
            client.generate(2024, 5, "contemporary-notable", 5)
    assert time.monotonic() - started < 2 * 0.5 + 1.0  # two timeouts and a short backoff
    # (the sandbox counts a request once it answers, 30 s on: compare with the client's count)
    assert ledger_calls(committed_db)[client.name] == 2 == client.calls


def test_isbndb_bulk_chunks_by_the_bulk_size_and_omits_unknown_isbns(
    sandbox: Sandbox, committed_db: str
) -> None:
    settings = make_settings(sandbox, committed_db, isbndb_bulk_size=2)
    books = sandbox.truth(2024, 5)["books"]
    known = [b["isbn13"] for b in books if b["kind"] == "isbn"][:4]
    unknown = next(b["answers"]["gemini"]["isbn13"] for b in books if b["kind"] == "unknown")
    found = IsbndbClient(settings).books_bulk([*known, unknown])
    assert sorted(found) == sorted(known)
    assert all(found[isbn]["isbn13"] == isbn for isbn in known)
    assert sandbox.stats()["by_endpoint"] == {"isbndb:POST /books": 3}  # 2 + 2 + 1
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 3


def test_isbndb_single_lookup_and_title_search(
    sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    books = sandbox.truth(2024, 5)["books"]
    known = next(b for b in books if b["kind"] == "isbn")
    unknown = next(b for b in books if b["kind"] == "unknown")
    untitled = next(b for b in books if b["kind"] == "no_isbn")
    client = IsbndbClient(settings)
    assert client.book(known["isbn13"])["title"] == known["title"]  # type: ignore[index]
    assert client.book(unknown["answers"]["gemini"]["isbn13"]) is None
    editions = client.search_title(untitled["title"], page_size=50)
    assert {e["isbn13"] for e in editions} == {e["isbn13"] for e in untitled["editions"]}
    assert client.search_title(unknown["title"]) == []
    assert sandbox.stats()["by_endpoint"] == {
        "isbndb:GET /book/{isbn}": 2,
        "isbndb:GET /books/{query}": 2,
    }
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 4 == client.calls


def test_isbndb_429_waits_and_retries_and_every_try_is_in_the_ledger(
    sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    # The API allows 1/s but our settings claim 1000/s: the second and third
    # lookups meet a 429, wait for the next second and succeed.
    sandbox.configure(isbndb_rate_per_second=1)
    isbn = next(b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    client = IsbndbClient(settings)
    for _ in range(3):
        assert client.book(isbn) is not None
    statuses = sandbox.stats()["by_status"]["isbndb"]
    assert statuses["200"] == 3 and statuses.get("429", 0) >= 1
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == client.calls


def test_isbndb_limit_exceeded_for_the_rate_is_waited_out_not_taken_for_the_quota(
    sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    # ISBNdb documents 429 {"message": "Limit Exceeded"} for any request limit:
    # a per-second one clears after a wait and must not close the day.
    sandbox.configure(isbndb_rate_per_second=1, isbndb_rate_message="Limit Exceeded")
    isbn = next(b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    client = IsbndbClient(settings)
    for _ in range(3):
        assert client.book(isbn) is not None
    assert sandbox.stats()["by_status"]["isbndb"].get("429", 0) >= 1
    with session_factory(committed_db)() as session:
        assert quota.blocked_providers(session, settings) == {}
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == client.calls


@pytest.mark.parametrize("status", [429, 403])
def test_isbndb_daily_quota_answer_marks_the_day_exhausted(
    status: int, sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    sandbox.configure(isbndb_daily_limit=2, isbndb_daily_status=status)
    # Our plan's limit as the operator sets it: a bare "Limit Exceeded" is the
    # day's quota only near it (elsewhere it is the per-second limit).
    client = IsbndbClient(settings.model_copy(update={"isbndb_daily_limit": 12}))
    client.book("9780306406157")
    client.book("9780306406157")
    with pytest.raises(QuotaExhausted) as caught:
        client.book("9780306406157")
    assert caught.value.provider == "isbndb"
    with pytest.raises(QuotaExhausted):  # the ledger now refuses before any request
        client.search_title("anything")
    # a bare 429 "Limit Exceeded" is first waited out as the per-second limit;
    # an answer that names the day is the quota at once
    refused = settings.provider_max_tries if status == 429 else 1
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 2 + refused


# Refusals the sandbox does not produce: the answer parsing alone, on the documented shapes.


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"promptFeedback": {"blockReason": "SAFETY"}}, r"refused: prompt blocked \(SAFETY\)"),
        (
            {"candidates": [{"finishReason": "SAFETY", "content": {"parts": []}}]},
            r"refused: answer stopped \(SAFETY\)",
        ),
        ({"candidates": []}, "empty answer"),
        ({"candidates": [{"finishReason": "STOP", "content": {"parts": []}}]}, "empty answer"),
    ],
)
def test_gemini_refusals_and_empty_answers_are_transient(
    answer: dict[str, object], message: str, settings: Settings
) -> None:
    with pytest.raises(ProviderError, match=message) as caught:
        GeminiClient(settings)._answer_text(answer)
    assert not isinstance(caught.value, ProviderRefused)


def test_gemini_ignores_thought_parts(settings: Settings) -> None:
    parts = [{"text": "thinking...", "thought": True}, {"text": '{"books": []}'}]
    answer = {"candidates": [{"finishReason": "STOP", "content": {"parts": parts}}]}
    assert GeminiClient(settings)._answer_text(answer) == '{"books": []}'


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]},
            "refused: I can't help",
        ),
        ({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}, "refused"),
        ({"choices": []}, "empty answer"),
    ],
)
def test_xai_refusals_and_empty_answers_are_transient(
    answer: dict[str, object], message: str, settings: Settings
) -> None:
    with pytest.raises(ProviderError, match=message) as caught:
        XaiClient(settings)._answer_text(answer)
    assert not isinstance(caught.value, ProviderRefused)

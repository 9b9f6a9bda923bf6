"""Odd generator answers, over real HTTP: a bad shape fails only that generator.

A 200 whose JSON has the wrong structure is a ``ProviderError("malformed answer:
...")`` (transient, never a crash with AttributeError/TypeError/ValueError), and
a token count that is not a sane number counts as 0. Each answer is one request,
reserved once: a whole JSON body is not retried inside the attempt.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from backfill.config import Settings, load_settings
from backfill.exceptions import ProviderError, ProviderRefused
from backfill.providers import GeminiClient, XaiClient, prompts
from tests.integration.test_provider_canned import Canned, CannedServer, canned, ledger_calls  # noqa: F401

BOOKS = json.dumps(
    {"books": [{"title": "Dune", "authors": ["Frank Herbert"], "isbn13": "9780441013593"}]}
)


def settings_for(server: CannedServer, url: str, **overrides: Any) -> Settings:
    """Both generators pointed at the canned server, no rate windows, fast retries."""
    return load_settings(
        database_url=url,
        gemini_base_url=server.url,
        gemini_api_key="test-gemini-key",
        gemini_rate_per_minute=0,
        xai_base_url=server.url,
        xai_api_key="test-xai-key",
        xai_rate_per_minute=0,
        http_timeout_seconds=3,
        provider_retry_backoff_seconds=0.01,
        provider_retry_backoff_max_seconds=0.05,
        **overrides,
    )


def gemini_answer(candidate: Any = None, **top: Any) -> dict[str, Any]:
    """A Gemini generateContent answer, with ``candidate`` or ``top`` fields swapped in."""
    if candidate is None:
        candidate = {"content": {"parts": [{"text": BOOKS}], "role": "model"}}
        candidate["finishReason"] = "STOP"
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 20}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "m"} | top


def xai_answer(choice: Any = None, **top: Any) -> dict[str, Any]:
    """An xAI chat completion, with ``choice`` or ``top`` fields swapped in."""
    if choice is None:
        choice = {"index": 0, "message": {"role": "assistant", "content": BOOKS}}
        choice["finish_reason"] = "stop"
    usage = {"prompt_tokens": 10, "completion_tokens": 20}
    return {"choices": [choice], "usage": usage, "model": "grok"} | top


MALFORMED_GEMINI = {
    "candidates as an object": {"candidates": {"content": {"parts": [{"text": BOOKS}]}}},
    "candidate not an object": {"candidates": ["STOP"]},
    "content as a list": gemini_answer({"content": [{"parts": [{"text": BOOKS}]}]}),
    "parts as a string": gemini_answer({"content": {"parts": BOOKS}}),
    "parts as an object": gemini_answer({"content": {"parts": {"text": BOOKS}}}),
    "answer as a list": [gemini_answer()],
}
MALFORMED_XAI = {
    "message as a string": xai_answer({"message": BOOKS, "finish_reason": "stop"}),
    "choices as an object": {"choices": {"message": {"content": BOOKS}}},
    "choice not an object": {"choices": [BOOKS]},
    "content as a number": xai_answer({"message": {"content": 42}}),
    "answer as a string": BOOKS,
}


def _generate(client: GeminiClient | XaiClient) -> Any:
    return client.generate(2024, 5, "contemporary-notable", 5)


@pytest.mark.parametrize(
    ("client_class", "body"),
    [(GeminiClient, body) for body in MALFORMED_GEMINI.values()]
    + [(XaiClient, body) for body in MALFORMED_XAI.values()],
    ids=[f"gemini: {name}" for name in MALFORMED_GEMINI]
    + [f"xai: {name}" for name in MALFORMED_XAI],
)
def test_an_odd_answer_shape_is_a_malformed_answer_of_that_generator(
    client_class: type[GeminiClient | XaiClient],
    body: Any,
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned(json.dumps(body)))
    client = client_class(settings_for(canned, committed_db))
    with pytest.raises(ProviderError, match="malformed answer") as caught:
        _generate(client)
    assert not isinstance(caught.value, ProviderRefused)
    assert caught.value.provider == client.name
    # one whole JSON body: one request, not retried inside the attempt
    assert ledger_calls(committed_db)[client.name] == len(canned.seen) == client.calls == 1


BAD_COUNTS = ["12", "many", -5, 10**30, 1.5e300, True, None, [3], {"n": 1}]


@pytest.mark.parametrize("count", BAD_COUNTS, ids=[repr(c)[:20] for c in BAD_COUNTS])
@pytest.mark.parametrize("client_class", [GeminiClient, XaiClient])
def test_a_bad_token_count_counts_as_zero(
    client_class: type[GeminiClient | XaiClient],
    count: Any,
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    if client_class is GeminiClient:
        usage = {"promptTokenCount": count, "candidatesTokenCount": 7, "thoughtsTokenCount": count}
        body = gemini_answer(usageMetadata=usage)
    else:
        body = xai_answer(usage={"prompt_tokens": count, "completion_tokens": 7})
    canned.queue(Canned(body))
    generation = _generate(client_class(settings_for(canned, committed_db)))
    assert (generation.tokens_in, generation.tokens_out) == (0, 7)
    assert [b.title for b in generation.books] == ["Dune"]


@pytest.mark.parametrize(
    ("client_class", "body"),
    [
        (GeminiClient, gemini_answer(usageMetadata=[1, 2])),
        (GeminiClient, gemini_answer(usageMetadata="lots")),
        (XaiClient, xai_answer(usage=[1, 2])),
        (XaiClient, xai_answer(usage="lots")),
    ],
)
def test_a_usage_block_that_is_not_an_object_counts_no_tokens(
    client_class: type[GeminiClient | XaiClient],
    body: Any,
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned(body))
    generation = _generate(client_class(settings_for(canned, committed_db)))
    assert (generation.tokens_in, generation.tokens_out) == (0, 0)
    assert len(generation.books) == 1


def test_odd_but_readable_fields_do_not_break_a_good_answer(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    settings = settings_for(canned, committed_db)
    parts = [{"text": BOOKS[:10]}, {"text": 7}, "junk", {"text": BOOKS[10:]}]
    odd = {"content": {"parts": parts}, "finishReason": ["SAFETY"]}  # unhashable reason
    canned.queue(Canned(gemini_answer(odd, modelVersion={"v": 1})))
    generation = GeminiClient(settings).generate(2024, 5, "baseline", 5)
    assert [b.title for b in generation.books] == ["Dune"]
    assert generation.model == settings.gemini_model  # the odd modelVersion is ignored
    content_parts = [{"type": "text", "text": BOOKS}]
    canned.queue(Canned(xai_answer({"message": {"content": content_parts}}, model=None)))
    generation = XaiClient(settings).generate(2024, 5, "baseline", 5)
    assert [b.title for b in generation.books] == ["Dune"]
    assert generation.model == settings.xai_model


def test_every_string_of_a_book_is_bounded_not_refused(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    book = {
        "title": "T" * 900,
        "authors": [f"Author {i} " + "a" * 300 for i in range(15)],
        "publisher": "P" * 400,
        "publication_date": "2024-05-01" + " " + "x" * 100,
        "isbn13": "9" * 50,
        "reason": "R" * 3000,
    }
    answer = gemini_answer({"content": {"parts": [{"text": json.dumps({"books": [book]})}]}})
    canned.queue(Canned(answer))
    (got,) = _generate(GeminiClient(settings_for(canned, committed_db))).books
    assert len(got.title) == prompts.MAX_TITLE == 500
    assert len(got.authors) == prompts.MAX_AUTHORS == 10
    assert all(len(a) <= prompts.MAX_AUTHOR == 200 for a in got.authors)
    assert got.authors[0].startswith("Author 0 ")
    assert len(got.publisher or "") == prompts.MAX_PUBLISHER == 300
    assert len(got.publication_date or "") <= prompts.MAX_DATE == 64
    assert len(got.isbn or "") == prompts.MAX_ISBN == 32
    assert len(got.reason or "") == prompts.MAX_REASON == 1000


def test_a_deeply_nested_answer_text_is_malformed_not_a_crash() -> None:
    with pytest.raises(ProviderError, match="malformed answer"):
        prompts.parse_books("gemini", "[" * 100_000 + "]" * 100_000)

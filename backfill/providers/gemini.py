"""Gemini (Google AI) generator: REST ``models/{model}:generateContent`` with a JSON schema.

Wire format (Gemini API v1beta): key in the ``x-goog-api-key`` header; the body
holds ``contents[].parts[].text`` and ``generationConfig`` with
``responseMimeType: application/json`` and a ``responseSchema``; the answer's
JSON text is in ``candidates[0].content.parts[*].text`` and the token counts in
``usageMetadata``. A blocked prompt or a candidate stopped for safety is a
refusal: a transient error for this month, not a broken key.
"""

from __future__ import annotations

from typing import Any

import requests

from backfill.exceptions import ProviderError
from backfill.providers import prompts
from backfill.providers.base import Generation, ProviderClient, mentions_daily_quota
from backfill.providers.hits import text_of

# finishReason values that mean "the model would not answer this".
REFUSAL_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "OTHER"}
)


class GeminiClient(ProviderClient):
    """Lists a month's notable books with Gemini."""

    name = "gemini"

    def _retry_after(self, response: requests.Response) -> float | None:
        # A rate 429 names its wait in a google.rpc.RetryInfo ("30s"), not a header;
        # retrying sooner only spends another call of the day's budget.
        header = super()._retry_after(response)
        if header is not None or response.status_code != 429:
            return header
        try:
            details = response.json()["error"]["details"]
            delays = [d["retryDelay"] for d in details if isinstance(d, dict) and "retryDelay" in d]
            return max(float(str(delays[0]).removesuffix("s")), 0.0) if delays else None
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def generate(self, year: int, month: int, prompt_variant: str, batch_size: int) -> Generation:
        """One ``generateContent`` call; raises ProviderError on a refusal or a bad answer."""
        key = self._key(self.settings.gemini_api_key, "GEMINI_API_KEY")
        model = self.settings.gemini_model
        body = {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": prompts.build_prompt(prompt_variant, year, month, batch_size)}
                    ],
                }
            ],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": prompts.gemini_schema(),
                "temperature": 0.2,
            },
        }
        data = self._request_json(
            "POST",
            f"{self.settings.gemini_base_url}/v1beta/models/{model}:generateContent",
            json=body,
            headers={"x-goog-api-key": key},
        )
        text = self._answer_text(data)
        usage = data.get("usageMetadata")
        usage = usage if isinstance(usage, dict) else {}
        return Generation(
            provider=self.name,
            books=prompts.parse_books(self.name, text),
            tokens_in=prompts.token_count(usage.get("promptTokenCount")),
            # Thinking tokens are billed as output, so they count here too.
            tokens_out=prompts.token_count(usage.get("candidatesTokenCount"))
            + prompts.token_count(usage.get("thoughtsTokenCount")),
            model=text_of(data.get("modelVersion"), 200) or model,
            prompt_version=prompts.prompt_version(prompt_variant),
        )

    def _answer_text(self, data: Any) -> str:
        """The answer's JSON text; a refusal, an empty or an odd-shaped answer is a
        ProviderError for this generator only."""
        if not isinstance(data, dict):
            raise ProviderError(self.name, "malformed answer: not an object")
        candidates = data.get("candidates")
        if not candidates:
            feedback = data.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if reason:
                raise ProviderError(self.name, f"refused: prompt blocked ({text_of(reason, 64)})")
            raise ProviderError(self.name, "empty answer: no candidates")
        if not isinstance(candidates, list):
            raise ProviderError(self.name, 'malformed answer: "candidates" is not a list')
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise ProviderError(self.name, "malformed answer: the candidate is not an object")
        finish = text_of(candidate.get("finishReason"), 64)
        if finish in REFUSAL_REASONS:
            raise ProviderError(self.name, f"refused: answer stopped ({finish})")
        content = candidate.get("content") or {}
        if not isinstance(content, dict):
            raise ProviderError(self.name, 'malformed answer: "content" is not an object')
        parts = content.get("parts") or []
        if not isinstance(parts, list):
            raise ProviderError(self.name, 'malformed answer: "parts" is not a list')
        # Thought summaries (thought: true) are not part of the answer.
        text = "".join(
            part["text"]
            for part in parts
            if isinstance(part, dict)
            and isinstance(part.get("text"), str)
            and not part.get("thought")
        )
        if not text.strip():
            raise ProviderError(self.name, f"empty answer (finishReason {finish})")
        return text

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        # 429 RESOURCE_EXHAUSTED covers per-minute and per-day limits; the QuotaFailure
        # detail names the quota (e.g. GenerateRequestsPerDayPerProjectPerModel).
        return response.status_code == 429 and mentions_daily_quota(
            response, ("perday", "per day", "daily")
        )

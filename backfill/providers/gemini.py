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

# finishReason values that mean "the model would not answer this".
REFUSAL_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "OTHER"}
)


class GeminiClient(ProviderClient):
    """Lists a month's notable books with Gemini."""

    name = "gemini"

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
        response = self._send(
            "POST",
            f"{self.settings.gemini_base_url}/v1beta/models/{model}:generateContent",
            json=body,
            headers={"x-goog-api-key": key},
        )
        data = self._json(response)
        text = self._answer_text(data)
        usage = data.get("usageMetadata") or {}
        return Generation(
            provider=self.name,
            books=prompts.parse_books(self.name, text),
            tokens_in=int(usage.get("promptTokenCount") or 0),
            # Thinking tokens are billed as output, so they count here too.
            tokens_out=int(usage.get("candidatesTokenCount") or 0)
            + int(usage.get("thoughtsTokenCount") or 0),
            model=str(data.get("modelVersion") or model),
            prompt_version=prompts.prompt_version(prompt_variant),
        )

    def _answer_text(self, data: Any) -> str:
        if not isinstance(data, dict):
            raise ProviderError(self.name, "malformed answer: not an object")
        candidates = data.get("candidates") or []
        if not candidates:
            feedback = data.get("promptFeedback") or {}
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if reason:
                raise ProviderError(self.name, f"refused: prompt blocked ({reason})")
            raise ProviderError(self.name, "empty answer: no candidates")
        candidate = candidates[0] if isinstance(candidates[0], dict) else {}
        finish = candidate.get("finishReason")
        if finish in REFUSAL_REASONS:
            raise ProviderError(self.name, f"refused: answer stopped ({finish})")
        parts = (candidate.get("content") or {}).get("parts") or []
        # Thought summaries (thought: true) are not part of the answer.
        text = "".join(
            str(part.get("text") or "")
            for part in parts
            if isinstance(part, dict) and not part.get("thought")
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

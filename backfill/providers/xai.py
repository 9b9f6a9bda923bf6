"""xAI (Grok) generator: the OpenAI-compatible ``/v1/chat/completions`` endpoint.

Wire format: ``Authorization: Bearer <key>``; JSON output through
``response_format = {"type": "json_schema", "json_schema": {"name", "schema",
"strict": true}}``; the answer is ``choices[0].message.content`` (a JSON string),
token counts in ``usage.prompt_tokens`` / ``usage.completion_tokens``. A
``message.refusal`` or ``finish_reason: content_filter`` is a refusal.
"""

from __future__ import annotations

from typing import Any

import requests

from backfill.exceptions import ProviderError
from backfill.providers import prompts
from backfill.providers.base import Generation, ProviderClient, mentions_daily_quota
from backfill.providers.hits import text_of

SYSTEM = "You are a careful bibliographer. Answer only with JSON that matches the schema."


class XaiClient(ProviderClient):
    """Lists a month's notable books with Grok."""

    name = "xai"

    def generate(self, year: int, month: int, prompt_variant: str, batch_size: int) -> Generation:
        """One chat completion; raises ProviderError on a refusal or a bad answer."""
        key = self._key(self.settings.xai_api_key, "XAI_API_KEY")
        model = self.settings.xai_model
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": prompts.build_prompt(prompt_variant, year, month, batch_size),
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "books", "schema": prompts.json_schema(), "strict": True},
            },
            "temperature": 0.2,
        }
        data = self._request_json(
            "POST",
            f"{self.settings.xai_base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        text = self._answer_text(data)
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Generation(
            provider=self.name,
            books=prompts.parse_books(self.name, text),
            tokens_in=prompts.token_count(usage.get("prompt_tokens")),
            tokens_out=prompts.token_count(usage.get("completion_tokens")),
            model=text_of(data.get("model"), 200) or model,
            prompt_version=prompts.prompt_version(prompt_variant),
        )

    def _answer_text(self, data: Any) -> str:
        """The answer's JSON text; a refusal, an empty or an odd-shaped answer is a
        ProviderError for this generator only."""
        if not isinstance(data, dict):
            raise ProviderError(self.name, "malformed answer: not an object")
        choices = data.get("choices")
        if not choices:
            raise ProviderError(self.name, "empty answer: no choices")
        if not isinstance(choices, list):
            raise ProviderError(self.name, 'malformed answer: "choices" is not a list')
        choice = choices[0]
        if not isinstance(choice, dict):
            raise ProviderError(self.name, "malformed answer: the choice is not an object")
        message = choice.get("message") or {}
        if not isinstance(message, dict):
            raise ProviderError(self.name, 'malformed answer: "message" is not an object')
        if message.get("refusal"):
            raise ProviderError(self.name, f"refused: {str(message['refusal'])[:200]}")
        if choice.get("finish_reason") == "content_filter":
            raise ProviderError(self.name, "refused: answer stopped (content_filter)")
        content = message.get("content")
        if isinstance(content, list):  # content parts, as OpenAI-compatible APIs may send
            content = "".join(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if content is not None and not isinstance(content, str):
            raise ProviderError(self.name, 'malformed answer: "content" is not text')
        if not content or not content.strip():
            raise ProviderError(self.name, "empty answer: no message content")
        return content

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        # xAI answers 429 both for the request rate and for a spent budget; only
        # the latter names the quota, the credits or the spending limit.
        return response.status_code == 429 and mentions_daily_quota(
            response, ("quota", "per day", "daily", "credits", "spending limit")
        )

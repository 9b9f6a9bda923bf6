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
        response = self._send(
            "POST",
            f"{self.settings.xai_base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        data = self._json(response)
        text = self._answer_text(data)
        usage = data.get("usage") or {}
        return Generation(
            provider=self.name,
            books=prompts.parse_books(self.name, text),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            model=str(data.get("model") or model),
            prompt_version=prompts.prompt_version(prompt_variant),
        )

    def _answer_text(self, data: Any) -> str:
        if not isinstance(data, dict):
            raise ProviderError(self.name, "malformed answer: not an object")
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            raise ProviderError(self.name, "empty answer: no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        if message.get("refusal"):
            raise ProviderError(self.name, f"refused: {str(message['refusal'])[:200]}")
        if choice.get("finish_reason") == "content_filter":
            raise ProviderError(self.name, "refused: answer stopped (content_filter)")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ProviderError(self.name, "empty answer: no message content")
        return content

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        # xAI answers 429 both for the request rate and for a spent budget; only
        # the latter names the quota, the credits or the spending limit.
        return response.status_code == 429 and mentions_daily_quota(
            response, ("quota", "per day", "daily", "credits", "spending limit")
        )

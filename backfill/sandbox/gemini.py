"""Gemini API emulation: ``POST /v1beta/models/{model}:generateContent``.

Request: key in the ``x-goog-api-key`` header (or ``?key=``); body
``{"contents": [{"role", "parts": [{"text"}]}], "systemInstruction"?,
"generationConfig"?: {"responseMimeType", "responseSchema" | "responseJsonSchema"}}``.
Answer: ``{"candidates": [{"content": {"parts": [{"text"}], "role": "model"},
"finishReason": "STOP", "index": 0}], "usageMetadata": {...}, "modelVersion",
"responseId"}``. ``responseSchema`` is Gemini's OpenAPI subset: a field outside it
(``additionalProperties``, ``$ref``, ...) is refused with 400 INVALID_ARGUMENT, as
the real API does.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, request

from backfill.sandbox import answers, errors, faults
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.plumbing import answer, json_response, provider_call
from backfill.sandbox.state import SandboxState

bp = Blueprint("gemini", __name__)
ENDPOINT = "POST /v1beta/models/{model}:generateContent"

# The fields of Gemini's Schema object (ai.google.dev/api/caching#Schema).
SCHEMA_FIELDS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
        "maximum",
    }
)  # fmt: skip
SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
JSON_TYPES = ("application/json", "text/x.enum")


@bp.post("/v1beta/models/<model>:generateContent")
@provider_call("gemini", ENDPOINT, errors.gemini)
def generate_content(state: SandboxState, model: str) -> Response:
    """One generateContent call."""
    key = request.headers.get("x-goog-api-key") or request.args.get("key")
    if not key:
        return answer(errors.gemini_missing_key())
    if key in state.config.reject_keys:
        return answer(errors.gemini_bad_key())
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return answer(errors.gemini(400, "Invalid JSON payload received."))
    try:
        text = _prompt_text(body)
        config = _generation_config(body)
    except ValueError as exc:
        return answer(errors.gemini(400, str(exc)))
    try:
        prompt = answers.read_prompt(text)
    except answers.PromptError as exc:
        return answer(errors.gemini(400, str(exc)))
    state.count_month(prompt.iso_month, "gemini")

    outcome = faults.generate_outcome(state, "gemini", prompt.iso_month)
    if outcome.kind == faults.QUOTA:
        return answer(errors.gemini_quota(model, daily=True))
    if outcome.kind == faults.RATE_LIMITED or outcome.status == 429:
        return answer(errors.gemini_quota(model, daily=False))
    if outcome.kind in (faults.ERROR, faults.FAIL_MONTH):
        return answer(errors.gemini(outcome.status))

    entries = month_catalogue(
        prompt.year, prompt.month, state.config.trap_placement == "head"
    ).answer("gemini", prompt.limit)
    mime = config.get("responseMimeType") or config.get("response_mime_type")
    schema = _first(config, "responseSchema", "response_schema", "responseJsonSchema")
    answer_text = answers.render(answers.shape(schema, entries), json_mode=mime in JSON_TYPES)
    finish = "STOP"
    if outcome.kind == faults.MALFORMED:
        answer_text, finish = answers.truncate(answer_text), "MAX_TOKENS"
    elif not outcome.late:  # a complete list the client receives: what it pays for
        state.count_answer(prompt.iso_month, "gemini")
    prompt_tokens, out_tokens = answers.tokens(text), answers.tokens(answer_text)
    return json_response(
        200,
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": answer_text}], "role": "model"},
                    "finishReason": finish,
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": out_tokens,
                "totalTokenCount": prompt_tokens + out_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        },
    )


def _prompt_text(body: dict[str, Any]) -> str:
    """All the text the request sends (system instruction and contents)."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    for content in [body.get("systemInstruction") or body.get("system_instruction"), *contents]:
        if content is None:
            continue
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise ValueError(
                "* GenerateContentRequest.contents.parts: contents.parts must not be empty."
            )
        texts += [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
    return "\n".join(texts)


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        raise ValueError("Invalid value at 'generation_config': expected an object")
    mime = config.get("responseMimeType") or config.get("response_mime_type")
    schema = _first(config, "responseSchema", "response_schema")
    if schema is not None:
        _check_schema(schema, "generation_config.response_schema")
        if mime not in JSON_TYPES:
            raise ValueError(
                "* GenerateContentRequest.generation_config.response_mime_type: "
                "response_schema requires response_mime_type application/json or text/x.enum"
            )
    return config


def _check_schema(schema: Any, where: str) -> None:
    """Refuse what Gemini's Schema object does not have, naming the place."""
    if not isinstance(schema, dict):
        raise ValueError(f"Invalid value at '{where}': expected a Schema object")
    for name, value in schema.items():
        if name not in SCHEMA_FIELDS:
            raise ValueError(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field."
            )
        if name == "type" and str(value).lower() not in SCHEMA_TYPES:
            raise ValueError(f"Invalid value at '{where}.type': \"{value}\"")
    for i, sub in enumerate((schema.get("properties") or {}).values()):
        _check_schema(sub, f"{where}.properties[{i}].value")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or []):
        _check_schema(sub, f"{where}.any_of[{i}]")


def _first(mapping: dict[str, Any], *names: str) -> Any:
    return next((mapping[n] for n in names if mapping.get(n) is not None), None)

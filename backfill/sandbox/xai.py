"""xAI API emulation: the OpenAI-compatible ``POST /v1/chat/completions``.

Request: ``Authorization: Bearer <key>``; body ``{"model", "messages": [{"role",
"content"}], "response_format"?: {"type": "json_schema", "json_schema": {"name",
"schema", "strict"?}} | {"type": "json_object"} | {"type": "text"}}``.
Answer: ``{"id", "object": "chat.completion", "created", "model", "choices":
[{"index": 0, "message": {"role": "assistant", "content", "refusal": null},
"finish_reason": "stop"}], "usage": {"prompt_tokens", "completion_tokens",
"total_tokens"}, "system_fingerprint"}``.

Status codes follow docs.x.ai ("Debugging errors"): 401 without a bearer token,
400 for a key xAI does not accept (``reject_keys``) or a bad argument, 415 for a
body that is not JSON, 422 for a body of the wrong shape, 429 rate limit or spent
credits, 500/503 service trouble.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, request

from backfill.sandbox import answers, errors, faults
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.plumbing import answer, json_response, provider_call
from backfill.sandbox.state import SandboxState

bp = Blueprint("xai", __name__)
ENDPOINT = "POST /v1/chat/completions"
FORMAT_TYPES = ("text", "json_object", "json_schema")


@bp.post("/v1/chat/completions")
@provider_call("xai", ENDPOINT, errors.xai)
def chat_completions(state: SandboxState) -> Response:
    """One chat completion."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return answer(errors.xai(401, "No authorization header or an invalid bearer token."))
    if key.strip() in state.config.reject_keys:
        return answer(errors.xai(400, "Incorrect API key provided. Obtain one at console.x.ai."))
    if not request.data:
        return answer(errors.xai(415, "The request body is empty."))
    body = request.get_json(silent=True)
    if body is None:
        if not request.is_json:
            return answer(errors.xai(415, "Content-Type must be application/json."))
        return answer(errors.xai(400, "The request body is not valid JSON."))
    try:
        model, text, schema, json_mode = _read(body)
        prompt = answers.read_prompt(text)
    except answers.PromptError as exc:
        return answer(errors.xai(400, str(exc)))
    except ValueError as exc:
        return answer(errors.xai(422, str(exc)))
    state.count_month(prompt.iso_month, "xai")

    outcome = faults.generate_outcome(state, "xai", prompt.iso_month)
    if outcome.kind == faults.QUOTA:
        return answer(errors.xai_budget_spent())
    if outcome.kind == faults.RATE_LIMITED or outcome.status == 429:
        return answer(errors.xai_rate_limited())
    if outcome.kind in (faults.ERROR, faults.FAIL_MONTH):
        return answer(errors.xai(outcome.status))

    entries = month_catalogue(
        prompt.year, prompt.month, state.config.trap_placement == "head"
    ).answer("xai", prompt.limit)
    content = answers.render(answers.shape(schema, entries), json_mode=json_mode)
    finish = "stop"
    if outcome.kind == faults.MALFORMED:
        content, finish = answers.truncate(content), "length"
    elif not outcome.late:  # a complete list the client receives: what it pays for
        state.count_answer(prompt.iso_month, "xai")
    prompt_tokens, out_tokens = answers.tokens(text), answers.tokens(content)
    return json_response(
        200,
        {
            "id": str(uuid.uuid4()),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": out_tokens,
                "total_tokens": prompt_tokens + out_tokens,
            },
            "system_fingerprint": "fp_sandbox",
        },
    )


def _read(body: Any) -> tuple[str, str, Any, bool]:
    """(model, all message text, the JSON schema or None, JSON mode) of a request body."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model: field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: at least one message is required")
    texts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "developer",
            "tool",
        ):
            raise ValueError(f"messages[{i}]: needs a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [str(p.get("text") or "") for p in content if isinstance(p, dict)]
        else:
            raise ValueError(f"messages[{i}].content: must be a string or a list of parts")
    fmt = body.get("response_format")
    if fmt is None:
        return model, "\n".join(texts), None, False
    if not isinstance(fmt, dict) or fmt.get("type") not in FORMAT_TYPES:
        raise ValueError(f"response_format.type: must be one of {', '.join(FORMAT_TYPES)}")
    schema = None
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise ValueError("response_format.json_schema.schema: a JSON schema object is required")
        schema = spec["schema"]
    return model, "\n".join(texts), schema, fmt["type"] != "text"

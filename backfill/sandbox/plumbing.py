"""Plumbing shared by the emulated APIs' views: state lookup, JSON answers, counting.

(The app and its server are in :mod:`backfill.sandbox.app`.)
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response, current_app

from backfill.sandbox.errors import Answer
from backfill.sandbox.state import SandboxState

log = logging.getLogger(__name__)
EXTENSION = "backfill_sandbox"

View = Callable[..., Response]


def get_state() -> SandboxState:
    """The running app's sandbox state."""
    state: SandboxState = current_app.extensions[EXTENSION]
    return state


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the given status."""
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def answer(reply: Answer) -> Response:
    """An error answer built by :mod:`backfill.sandbox.errors`."""
    status, body = reply
    return json_response(status, body)


def provider_call(
    provider: str, endpoint: str, on_crash: Callable[[int], Answer]
) -> Callable[[View], View]:
    """Wrap a provider view: configured latency, crash safety, and counting.

    Every request is counted (calls, by endpoint, by status), whatever it answers;
    a bug in the emulator answers the provider's own 500 instead of an HTML page.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = get_state()
            if provider == "isbndb":
                state.isbndb_arrival()
            state.sleep(getattr(state.config.latency_ms, provider) / 1000)
            try:
                response = view(state, *args, **kwargs)
            except Exception:
                log.exception("sandbox %s %s crashed", provider, endpoint)
                response = answer(on_crash(500))
            state.record(provider, endpoint, response.status_code)
            return response

        return wrapper

    return decorate

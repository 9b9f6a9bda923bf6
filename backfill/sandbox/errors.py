"""Error answers, each in the shape the real API uses.

* **Gemini** (Google APIs error model): ``{"error": {"code", "message", "status",
  "details"?}}`` with the gRPC status name (400 INVALID_ARGUMENT, 403
  PERMISSION_DENIED, 429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE). A 429
  carries a ``google.rpc.QuotaFailure`` naming the quota (``...PerMinute...`` for the
  request rate, ``...PerDay...`` for the day's budget) and a ``RetryInfo``.
* **xAI**: ``{"code": "<gRPC status text>", "error": "<message>"}`` -- the flat shape
  xAI's REST API answers with (not OpenAI's nested ``{"error": {"message"}}``);
  status codes per docs.x.ai "Debugging errors": 400 bad argument or incorrect
  key, 401 missing/invalid bearer token, 429 rate limit, 5xx service trouble.
  A spent budget is a 429 whose text speaks of credits and the spending limit.
* **ISBNdb** (behind AWS API Gateway): gateway answers are ``{"message": ...}``
  (401 "Unauthorized", 403 "Forbidden", 429 "Too Many Requests"/"Limit Exceeded",
  5xx); a lookup that finds nothing is ``404 {"errorMessage": "Not Found"}``. See
  :func:`isbndb_daily_quota` for the day's-quota answer.
* **Google Books**: Google's v1 error JSON (``errors`` list plus ``status``).
* **Open Library**: ``{"error": ...}`` from the app; 429 and 5xx are HTML pages.
"""

from __future__ import annotations

from typing import Any

GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GEMINI_MESSAGES = {
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_XAI_CODES = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    415: "Unsupported media type",
    422: "Client specified an invalid argument",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
}
_GATEWAY_MESSAGES = {
    401: "Unauthorized",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Endpoint request timed out",
}

Answer = tuple[int, dict[str, Any]]


def gemini(code: int, message: str | None = None, details: list[Any] | None = None) -> Answer:
    """A Gemini error answer for HTTP status ``code``."""
    status = GEMINI_STATUS.get(code, "UNKNOWN")
    error: dict[str, Any] = {
        "code": code,
        "message": message or _GEMINI_MESSAGES.get(code, status.replace("_", " ").capitalize()),
        "status": status,
    }
    if details:
        error["details"] = details
    return code, {"error": error}


def gemini_missing_key() -> Answer:
    """No key at all: Google's "unregistered callers" refusal."""
    return gemini(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def gemini_bad_key() -> Answer:
    """A key Google does not accept (400 with reason API_KEY_INVALID)."""
    message = "API key not valid. Please pass a valid API key."
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return gemini(400, message, [info])


def gemini_quota(model: str, *, daily: bool, retry_seconds: int = 30) -> Answer:
    """429 RESOURCE_EXHAUSTED for the per-minute rate or (``daily``) the day's budget."""
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        if daily
        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/"
                    "generate_content_free_tier_requests",
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": model},
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_seconds}s"},
    ]
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits."
    )
    return gemini(429, message, details)


def xai(code: int, message: str | None = None) -> Answer:
    """An xAI error answer for HTTP status ``code``."""
    text = _XAI_CODES.get(code, "Unknown error")
    return code, {"code": text, "error": message or text}


def xai_rate_limited() -> Answer:
    """429 for the request rate (retry later; the budget is intact)."""
    return xai(429, "Too many requests: the rate limit for this model was reached. Slow down.")


def xai_budget_spent() -> Answer:
    """429 for a spent budget: the team's credits or monthly spending limit are used up."""
    return xai(
        429,
        "Your team sandbox-team has either used all available credits or reached its "
        "monthly spending limit. To continue making API requests, please purchase more "
        "credits or raise your spending limit.",
    )


def isbndb(code: int, message: str | None = None) -> Answer:
    """An ISBNdb/API Gateway answer for HTTP status ``code``."""
    if code == 404:
        return 404, {"errorMessage": message or "Not Found"}
    return code, {"message": message or _GATEWAY_MESSAGES.get(code, "Error")}


def isbndb_daily_quota(status: int = 429) -> Answer:
    """The answer once the key's daily calls are spent ("the key will no longer work
    the remainder of that day", isbndb.com/faq).

    Chosen default: **429 ``{"message": "Limit Exceeded"}``**, the answer ISBNdb's API
    v2 documentation gives for "if the key reaches the request limit"; it is also AWS
    API Gateway's usage-plan QUOTA_EXCEEDED answer, while its THROTTLED answer (the
    per-second rate) is 429 ``{"message": "Too Many Requests"}``, so a client tells the
    two apart by the message. Field reports also show 403 answers whose message says
    the daily hits were reached; ``status=403`` (config ``isbndb_daily_status``) gives
    that variant so a client can be tested against both.
    """
    if status == 403:
        return 403, {"message": "Forbidden: daily hits reached for this API key"}
    return 429, {"message": "Limit Exceeded"}


_GOOGLE_REASONS = {
    400: "invalid",
    403: "forbidden",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}


def googlebooks(code: int, message: str | None = None, reason: str | None = None) -> Answer:
    """A Google Books (v1 API) error: ``{"error": {"code", "message", "errors": [...],
    "status"}}``, the older ``errors`` list beside the gRPC status name."""
    text = message or ("Backend Error" if code >= 500 else GEMINI_STATUS.get(code, "Error"))
    return code, {
        "error": {
            "code": code,
            "message": text,
            "errors": [
                {
                    "message": text,
                    "domain": "global" if code != 429 else "usageLimits",
                    "reason": reason or _GOOGLE_REASONS.get(code, "unknown"),
                }
            ],
            "status": GEMINI_STATUS.get(code, "UNKNOWN"),
        }
    }


def googlebooks_daily_quota() -> Answer:
    """429 RESOURCE_EXHAUSTED once keyless calls have spent the day's shared quota."""
    return googlebooks(
        429,
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service "
        "'books.googleapis.com' for consumer 'project_number:000000000000'.",
        "rateLimitExceeded",
    )


def googlebooks_bad_key() -> Answer:
    """400 for a key Google does not accept."""
    return googlebooks(400, "API key not valid. Please pass a valid API key.", "badRequest")


def openlibrary(code: int, message: str | None = None) -> Answer:
    """An Open Library application error: ``{"error": "<message>"}`` (its gateway's
    429 and 5xx pages are HTML, see :func:`openlibrary_page`)."""
    return code, {"error": message or _GATEWAY_MESSAGES.get(code, "Error")}


def openlibrary_page(code: int) -> tuple[int, str]:
    """The HTML page Open Library's front servers answer a 429 or a 5xx with."""
    title = f"{code} {_GATEWAY_MESSAGES.get(code, 'Error')}"
    return code, f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"

"""GitHub's error answers read: rate limits (primary and secondary), Retry-After, the message, and a hint to fix it."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


def retry_after(headers: Any, now: float) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or x-ratelimit-reset (when remaining is 0)."""
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                return None
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    return None


def is_rate_limited(status: int, headers: Any, message: str) -> bool:
    """GitHub answers rate limits with 429, or with 403 plus Retry-After / remaining=0 / a 'rate limit' message."""
    if status == 429:
        return True
    if status != 403:
        return False
    return (
        headers.get("retry-after") is not None
        or headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in message.lower()
    )


def hint(status: int, message: str) -> str:
    if status == 401:
        return "check GITHUB_TOKEN (or the GitHub App's id and key)"
    if status == 403 and "rate limit" not in message.lower():
        return "the token may not do this: give the workflow `permissions: checks: write` (fork PRs get a read-only token)"
    if status == 404:
        return "check GITHUB_REPOSITORY and that the token can see the repository"
    if status == 422:
        return "GitHub refused the request body"
    return "GitHub may be having trouble; re-run the job"


def message_of(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return (r.text or r.reason_phrase or "").strip().splitlines()[0][:300] if r.text else r.reason_phrase
    msg = str(data.get("message", "")) if isinstance(data, dict) else ""
    return (msg or r.reason_phrase)[:500]

"""Retries for SIEM REST calls: 429 and 5xx are retried, honouring Retry-After, with capped
exponential backoff; anything else fails at once. The sleep function is a parameter so tests
can record the waits instead of waiting."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

T = TypeVar("T")


class HttpFailure(Exception):
    """A REST call that failed with an HTTP status (after retries, if it was retryable)."""

    def __init__(self, status: int, message: str, retry_after: str | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5           # total tries, the first included
    base_seconds: float = 1.0   # backoff 1, 2, 4, … when the server gives no Retry-After
    cap_seconds: float = 60.0   # no single wait is longer, whatever Retry-After says


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def is_retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def with_retries(call: Callable[[], T], policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] | None = None) -> T:
    sleep = sleep or time.sleep
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except HttpFailure as failure:
            if not is_retryable(failure.status) or attempt == policy.attempts:
                raise
            wait = retry_after_seconds(failure.retry_after)
            if wait is None:
                wait = policy.base_seconds * 2 ** (attempt - 1)
            sleep(min(wait, policy.cap_seconds))
    raise AssertionError("unreachable")

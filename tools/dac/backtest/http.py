"""HTTP for backtests: JSON over HTTPS with requests, the deploy's retry policy (429/5xx, with
Retry-After) and its response checks. Every failure becomes one BacktestError naming the
endpoint; 401/403 are `fatal` (the next rule would fail the same way), anything else stops only
the rule it happened to. Redirects are not followed: the token would go with them."""
from __future__ import annotations

from typing import Callable

from dac.deploy.plan import DeployError
from dac.deploy.responses import json_document
from dac.core.retry import HttpFailure, RetryPolicy, with_retries


class BacktestError(Exception):
    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class BudgetExhausted(BacktestError):
    """The run's time budget ran out while a search was running (the search was cancelled)."""


class JsonHttp:
    def __init__(self, endpoint: str, headers: dict, verify, timeout: float,
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None,
                 message: Callable[[object], str] | None = None):
        import requests
        self.requests = requests
        self.endpoint = endpoint
        self.session = requests.Session()
        self.session.headers.update(headers)
        # verify is passed on every request: a session-level setting loses to $REQUESTS_CA_BUNDLE
        self.verify, self.timeout, self.policy, self.sleep = verify, timeout, policy, sleep
        self.message = message or _message

    def call(self, method: str, path: str, what: str, *, data=None, json_body=None, params=None,
             headers: dict | None = None, expect_body: bool = True) -> dict | None:
        url = f"{self.endpoint}{path}"

        def once():
            response = self.session.request(method, url, data=data, json=json_body, params=params, headers=headers,
                                            timeout=self.timeout, verify=self.verify, allow_redirects=False)
            if response.status_code >= 400:
                raise HttpFailure(response.status_code, self.message(response), response.headers.get("Retry-After"))
            if not 200 <= response.status_code <= 299:
                raise DeployError(f"unexpected HTTP {response.status_code}")
            if not expect_body:
                return None
            return json_document(response.content, response.headers.get("Content-Type", ""), what)
        try:
            return with_retries(once, self.policy, self.sleep)
        except HttpFailure as e:
            raise BacktestError(f"{what} at {self.endpoint}: {e}", fatal=e.status in (401, 403)) from None
        except DeployError as e:
            raise BacktestError(f"{what} at {self.endpoint}: {e}") from None
        except self.requests.exceptions.SSLError as e:
            raise BacktestError(f"TLS verification failed for {self.endpoint} ({e.__class__.__name__})", fatal=True) from None
        except self.requests.exceptions.ConnectionError:
            raise BacktestError(f"cannot reach {self.endpoint} ({what})", fatal=True) from None
        except self.requests.exceptions.RequestException as e:      # timeout, cut-off body
            raise BacktestError(f"{what} at {self.endpoint}: no complete answer ({e.__class__.__name__})") from None


def _message(response) -> str:
    """The server's own words when it gives them in a documented shape (Splunk `messages`, Azure `error`)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "request failed"
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            text = "; ".join(str(m.get("text", "")) for m in body["messages"] if isinstance(m, dict))
            if text:
                return text
        error = body.get("error")
        if isinstance(error, dict):
            return ": ".join(str(error[k]) for k in ("code", "message") if error.get(k)) or response.reason
        if isinstance(error, str):
            return error
    return response.reason or "request failed"

"""Secrets during a deployment: checked before use, and kept out of everything dac prints.

A token is checked before it goes into a header: a value with whitespace or control characters
(a secret saved on Windows ends in \\r) makes http.client raise with the header, token included,
in its message. The check names the variable, never the value.

One Redactor per run holds every secret in the forms it can take in a message (as is, repr- and
JSON-escaped, URL-encoded); every line dac prints and every exception message goes through it,
and while a deployment runs so does every log record (azure-identity and urllib3 log through
`logging`), whatever logger or handler emits it.
"""
from __future__ import annotations

import contextlib
import json
import logging
from urllib.parse import quote

MASK = "***"


class SecretError(Exception):
    """A secret that cannot be used; the message never contains the value."""


def check_secret(name: str, value: str) -> str:
    if not value:
        raise SecretError(f"{name} is empty")
    for position, char in enumerate(value, 1):
        if char.isspace() or not char.isprintable() or not char.isascii():
            what = ("a line break or carriage return (a secret saved with a trailing newline?)" if char in "\r\n"
                    else "whitespace" if char.isspace()
                    else "a control character" if not char.isprintable()
                    else "a non-ASCII character")
            raise SecretError(f"{name} contains {what} at position {position} of {len(value)}: "
                              "tokens are printable ASCII without spaces; fix the secret (its value is not shown)")
    return value


def _forms(secret: str) -> set[str]:
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], quote(secret, safe=""), quote(secret),
             secret.encode("unicode_escape").decode("ascii", "replace")}
    return {f for f in forms if f}       # even a short one: garbled output is better than a leak


class Redactor:
    def __init__(self, *secrets: str):
        self._forms: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret:
            self._forms = sorted(set(self._forms) | _forms(secret), key=len, reverse=True)   # longest first

    def __call__(self, text) -> str:
        text = str(text)
        for form in self._forms:
            text = text.replace(form, MASK)
        return text

    @contextlib.contextmanager
    def logging(self):
        """Every log record made while this is active is redacted (message, arguments, traceback)."""
        previous = logging.getLogRecordFactory()
        redact = self

        def factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:       # a broken format string: keep what can be shown
                message = f"{record.msg} {record.args}"
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = redact(message), None
            return record

        logging.setLogRecordFactory(factory)
        try:
            yield self
        finally:
            logging.setLogRecordFactory(previous)

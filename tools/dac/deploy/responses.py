"""Response bodies from a SIEM are believed only when they are what the API documents: a list
call that answers with nothing, half a document or a proxy's HTML page must stop a deploy, not
read as "there is nothing there"."""
from __future__ import annotations

import json

from .plan import DeployError


def json_document(body: bytes, content_type: str, what: str) -> dict:
    """A response body that must be a JSON object; anything else is an error naming what came."""
    if not body:
        raise DeployError(f"{what}: the server answered with an empty body; nothing can be concluded from it")
    kind = content_type.split(";")[0].strip().lower()
    if kind and "json" not in kind:
        raise DeployError(f"{what}: the server answered {kind} ({len(body)} bytes), not JSON "
                          "(a proxy or login page?)")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DeployError(f"{what}: the answer is not complete JSON ({len(body)} bytes; cut off?)") from None
    if not isinstance(data, dict):
        raise DeployError(f"{what}: the answer is JSON but not an object")
    return data

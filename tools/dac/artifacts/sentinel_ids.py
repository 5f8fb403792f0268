"""Identity and ownership of the Sentinel analytics: rule ids are GUIDs derived from (Sigma rule
id, target), so renaming a rule keeps its analytic, and each description ends with an ownership
marker (`owned_marker`, `parse_owner`) by which a deployment recognises the analytics it owns."""

from __future__ import annotations

import re
import uuid


# Fixed namespace for the alert rule GUIDs: never change it, every deployed rule id depends on it.
NAMESPACE = uuid.UUID("d158ea35-1a5c-4700-998b-1e5ec26b5c5e")
HUNTING_TARGET = "hunting"      # the `target` of a composed union in the ownership marker
MARKER = "Managed by dac from sigma rule {rule_id} (target {target}); edit the Sigma rule, not this analytic."
_MARKER_RE = re.compile(r"Managed by dac from sigma rule (\S+) \(target ([^\s()]+)\); "
                        r"edit the Sigma rule, not this analytic\.")


_STAMP_LINES = re.compile(r"(?:\n[ \t]*dac-[a-z-]+: \S*[ \t]*)+\s*$")


def alert_rule_id(rule_id: str, target: str) -> str:
    """GUID of the analytic for one Sigma rule on one target: stable across titles, names, files."""
    return str(uuid.uuid5(NAMESPACE, f"{rule_id}/{target}"))


def hunting_rule_id(hunting_name: str) -> str:
    """GUID of the analytic for a composed hunting union."""
    return str(uuid.uuid5(NAMESPACE, hunting_name))


def owned_marker(rule_id: str, target: str) -> str:
    """The line every generated description ends with."""
    return MARKER.format(rule_id=rule_id, target=target)


def parse_owner(description: str | None) -> tuple[str, str] | None:
    """(rule id, target) when the description ends with dac's ownership marker, else None.

    A composed union gives (hunting name, "hunting"). Trailing whitespace is ignored (the portal
    and the API may trim it), and so are `dac-<word>: <value>` lines after the marker (the deploy
    step appends `dac-hash: …`); a marker anywhere else does not count.
    """
    if not description:
        return None
    lines = _STAMP_LINES.sub("", description).rstrip().splitlines()
    match = _MARKER_RE.fullmatch(lines[-1].strip()) if lines else None
    return (match.group(1), match.group(2)) if match else None

"""Plan and apply for `dac deploy`, independent of the SIEM (like `terraform plan/apply`).

The repository owns an object in a SIEM when its description carries dac's ownership marker
(see splunk_searches.owned_marker / sentinel_ids.owned_marker); nothing else is ever touched.
When dac writes an object it also appends `dac-hash: <h>`, the hash of the managed attributes it
wrote. On the next plan, an owned object whose live attributes no longer hash to that value was
edited in the SIEM since (drift); the plan shows it, and apply puts the repository's version back.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

class DeployError(Exception):
    """Stops a deployment with one clear message (bad config, no token, unreachable SIEM)."""


HASH_LINE = re.compile(r"\n?dac-hash: ([0-9a-f]{16})\s*$")


@dataclass
class DesiredObject:
    key: str                    # the SIEM's name or id of the object
    label: str                  # for people: rule name / target
    attributes: dict            # exactly the attributes dac manages
    description_key: str        # the attribute that holds the description (marker + hash)


@dataclass
class LiveObject:
    key: str
    attributes: dict
    owned: bool
    etag: str | None = None


@dataclass
class Change:
    action: str                 # create | update | unchanged | delete | keep | conflict
    key: str
    label: str
    desired: DesiredObject | None = None
    live: LiveObject | None = None
    drift: bool = False
    diff: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)      # the attributes an update changes


Normalize = Callable[[object], str]


def _without_hash(value: str) -> str:
    return HASH_LINE.sub("", value or "")


def content_hash(attributes: dict, description_key: str, normalize: Normalize) -> str:
    canonical = {k: normalize(_without_hash(v) if k == description_key else v) for k, v in sorted(attributes.items())}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def stamped(desired: DesiredObject, normalize: Normalize) -> DesiredObject:
    """The object as dac writes it: its description ends with the hash of what is written."""
    attributes = dict(desired.attributes)
    digest = content_hash(attributes, desired.description_key, normalize)
    attributes[desired.description_key] = _without_hash(attributes[desired.description_key]) + f"\ndac-hash: {digest}"
    return DesiredObject(desired.key, desired.label, attributes, desired.description_key)


def _recorded_hash(live: LiveObject, description_key: str) -> str | None:
    match = HASH_LINE.search(str(live.attributes.get(description_key) or ""))
    return match.group(1) if match else None


def _diff(key: str, old, new, normalize: Normalize) -> list[str]:
    old_text, new_text = normalize(old) if old is not None else "", normalize(new)
    if "\n" not in old_text and "\n" not in new_text:
        return [f"- {key}: {old_text}" if old is not None else f"- {key}: (not set)", f"+ {key}: {new_text}"]
    lines = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), f"{key} (live)", f"{key} (repository)", lineterm="", n=1)
    return list(lines)


def make_plan(desired: list[DesiredObject], live: list[LiveObject], normalize: Normalize, prune: bool) -> list[Change]:
    live_by_key = {o.key: o for o in live}
    changes = []
    for want in sorted(desired, key=lambda d: d.key):
        want = stamped(want, normalize)
        have = live_by_key.get(want.key)
        if have is None:
            changes.append(Change("create", want.key, want.label, want))
            continue
        if not have.owned:
            changes.append(Change("conflict", want.key, want.label, want, have,
                                  diff=["exists in the SIEM without dac's ownership marker: not touched"]))
            continue
        recorded = _recorded_hash(have, want.description_key)
        live_managed = {k: have.attributes.get(k) for k in want.attributes}
        drift = recorded is not None and content_hash(live_managed, want.description_key, normalize) != recorded
        changed = [k for k in sorted(want.attributes) if normalize(have.attributes.get(k)) != normalize(want.attributes[k])]
        diff = [line for k in changed for line in _diff(k, have.attributes.get(k), want.attributes[k], normalize)]
        changes.append(Change("update" if changed else "unchanged", want.key, want.label, want, have, drift, diff, changed))
    wanted = {d.key for d in desired}
    for have in sorted(live, key=lambda o: o.key):
        if have.owned and have.key not in wanted:
            changes.append(Change("delete" if prune else "keep", have.key, have.key, None, have,
                                  diff=[] if prune else ["its rule was removed from the repository; --prune deletes it"]))
    return changes


SYMBOL = {"create": "+", "update": "~", "unchanged": "=", "delete": "-", "keep": "!", "conflict": "x"}


def render_plan(title: str, changes: list[Change]) -> list[str]:
    lines = [title]
    for c in changes:
        note = "  [drift: edited in the SIEM since dac last wrote it]" if c.drift else ""
        lines.append(f"  {SYMBOL[c.action]} {c.action:9} {c.key}  ({c.label}){note}")
        lines += [f"      {d}" for d in c.diff]
    counts = {a: sum(1 for c in changes if c.action == a) for a in SYMBOL}
    drifted = sum(1 for c in changes if c.drift)
    lines.append(f"plan: {counts['create']} to create, {counts['update']} to update ({drifted} drifted), "
                 f"{counts['unchanged']} unchanged, {counts['delete']} to delete, "
                 f"{counts['keep']} orphaned (kept; --prune deletes), {counts['conflict']} conflicts")
    return lines


class Applier(Protocol):
    def create(self, desired: DesiredObject) -> None: ...
    def update(self, desired: DesiredObject, live: LiveObject) -> None: ...
    def delete(self, live: LiveObject) -> None: ...


def apply_plan(changes: list[Change], client: Applier,
               redact: Callable[[str], str]) -> tuple[list[str], bool, list[Change]]:
    """Carry out every change; one failure does not stop the others. Returns report lines,
    whether everything succeeded (conflicts count as failures: the object could not be deployed),
    and the changes the SIEM accepted (to be read back)."""
    lines, done, failed, applied = [], {"created": 0, "updated": 0, "deleted": 0}, [], []
    for c in changes:
        try:
            if c.action == "create":
                client.create(c.desired)
                done["created"] += 1
            elif c.action == "update":
                client.update(c.desired, c.live)
                done["updated"] += 1
            elif c.action == "delete":
                client.delete(c.live)
                done["deleted"] += 1
            elif c.action == "conflict":
                failed.append(f"{c.key}: exists in the SIEM without dac's ownership marker; not touched")
                continue
            else:
                continue
            lines.append(f"  {_past(c.action)} {c.key}")
            applied.append(c)
        except Exception as e:  # one object's failure must not stop the others
            failed.append(f"{c.key}: {c.action} failed: {redact(str(e))}")
    untouched = sum(1 for c in changes if c.action in ("unchanged", "keep"))
    for f in failed:
        lines.append(f"  FAILED {f}")
    lines.append(f"applied: {done['created']} created, {done['updated']} updated, {done['deleted']} deleted; "
                 f"{len(failed)} failed (not changed); {untouched} left as they were")
    return lines, not failed, applied


def _past(action: str) -> str:
    return {"create": "created", "update": "updated", "delete": "deleted"}[action]

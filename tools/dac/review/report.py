"""`dac review --base <ref>`: what a pull request does to every SIEM query and to detection
quality, as one Markdown report (and JSON) a reviewer can read without running anything.

The base is the given git ref, extracted to a temporary folder; the head is the working tree.
Both are compiled and replayed by this checkout's dac, so differences come from the rules,
pipelines, settings and labels, not from the tool. Rules are matched by id (a moved file is a
change, not a delete and an add). Nothing contacts a SIEM: the deploy plan is the head's
objects planned against the base's, as if the SIEM held exactly what the base deployed.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from dac.artifacts.build import stale_report
from dac.core.repo import Layout
from .compare import artifact_diffs, deploy_changes, findings, label_changes, metric_deltas, rule_changes, score_table, verdict_changes
from .sides import _load_side, extract_ref

MARKER = "<!-- dac-review -->"
COMMENT_LIMIT = 60_000           # GitHub refuses comments over 65,536 characters


def review(root: Path, base_ref: str, replay: bool = True, backtest=None) -> dict:
    """`backtest`: a review_backtest.ReviewBacktest to run the changed rules on the SIEM (when
    credentials are there), or None for no backtest section at all."""
    head = _load_side("head", Layout(root), replay)
    with tempfile.TemporaryDirectory(prefix="dac-review-") as tmp:
        commit = extract_ref(root, base_ref, Path(tmp))
        base = _load_side("base", Layout(Path(tmp)), replay)
        result = {
            "base": {"ref": base_ref, "commit": commit, "problems": base.problems},
            "rules": rule_changes(base, head),
            "artifacts": {k: [{"name": n, "diff": d} for n, d in v] for k, v in sorted(artifact_diffs(base, head).items())},
            "verdict_changes": verdict_changes(base, head),
            "scores": score_table(base, head),
            "metrics": metric_deltas(base, head),
            "label_changes": label_changes(base, head),
            "deploy_plan": deploy_changes(base, head),
            "replayed_base": base.replay is not None,
            "replayed": base.replay is not None and head.replay is not None,
        }
        if backtest is not None:
            from .backtest import review_backtest
            changed = {c["id"] for c in result["rules"]}
            result["backtest"] = review_backtest(Path(tmp), base.files, head.files, changed, backtest)
    result["head"] = {"problems": head.problems,
                      "stale": [s.splitlines()[0] for s in stale_report(head.files, head.layout)] if head.files else [],
                      "test_failures": list(head.replay.failures) if head.replay else [],
                      "skipped_lines": list(head.replay.skipped_lines) if head.replay else []}
    result["findings"] = findings(head)
    result["blockers"] = _blockers(result)
    result["verdict"] = "blocked" if result["blockers"] else "ready"
    return result


def _blockers(r: dict) -> list[str]:
    blockers = []
    if r["head"]["problems"]:
        blockers.append(f"{len(r['head']['problems'])} problem(s) in the rules, settings or labels")
    if r["head"]["stale"]:
        blockers.append(f"{len(r['head']['stale'])} generated file(s) not regenerated: run `dac convert` and commit")
    new_fp = sum(1 for c in r["verdict_changes"] if c["kind"] == "new false positive")
    lost_tp = sum(1 for c in r["verdict_changes"] if c["kind"] == "lost true positive")
    if new_fp:
        blockers.append(f"{new_fp} new false positive(s) on the labelled logs")
    if lost_tp:
        blockers.append(f"{lost_tp} lost true positive(s) on the labelled logs")
    if r["head"]["test_failures"]:
        blockers.append(f"`dac test` fails ({len(r['head']['test_failures'])} failure(s))")
    errors = sum(1 for f in r["findings"] if f["severity"] == "error")
    if errors:
        blockers.append(f"{errors} validator error(s)")
    return blockers


def _fence(text: str, lang: str = "diff") -> str:
    return f"```{lang}\n{text.replace('```', '` ` `')}\n```"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(r: dict) -> str:
    head = [MARKER]
    if r["verdict"] == "ready":
        head.append("## dac review: ✅ ready")
    else:
        head.append("## dac review: ⛔ blocked — " + "; ".join(r["blockers"]))
    head.append(f"Base `{r['base']['ref']}` (`{r['base']['commit'][:12]}`) → this pull request.")
    body: list[str] = []

    body.append("\n### Rules")
    if r["rules"]:
        body += ["| change | rule | id | file |", "|---|---|---|---|"]
        for c in r["rules"]:
            moved = f" (moved from `{c['moved_from']}`)" if c.get("moved_from") else ""
            body.append(f"| {c['change']} | {_cell(c['name'])} | `{c['id']}` | `{c['path']}`{moved} |")
    else:
        body.append("No rule added, changed or removed.")

    body.append("\n### Detection quality on the labelled sample logs")
    important = [c for c in r["verdict_changes"] if c["kind"] in ("new false positive", "lost true positive")]
    other = [c for c in r["verdict_changes"] if c not in important]
    if important:
        body.append("**Verdicts that got worse** (a new false positive or a lost true positive):\n")
        body += ["| | rule | target | log | event | engines |", "|---|---|---|---|---|---|"]
        body += [f"| ⚠️ {c['kind']} | {_cell(c['rule'])} | {c['target']} | `{c['log']}` | `{c['event']}` | {', '.join(c['engines'])} |"
                 for c in important]
    if other:
        body.append("\nOther verdict changes:\n")
        body += ["| | rule | target | log | event | engines |", "|---|---|---|---|---|---|"]
        body += [f"| {c['kind']} | {_cell(c['rule'])} | {c['target']} | `{c['log']}` | `{c['event']}` | {', '.join(c['engines'])} |"
                 for c in other]
    if r["base"]["problems"]:
        body.append("Notes on the base (" + r["base"]["commit"][:12] + "):\n")
        body += [f"- {_cell(p)}" for p in r["base"]["problems"][:20]]
        body.append("")
    if not r["replayed"]:
        body.append("Verdicts were not compared: " + ("the base" if not r["replayed_base"] else "this change")
                    + " could not be replayed (see the problems above and below).")
    elif not r["verdict_changes"]:
        body.append("No event's verdict changed.")
    if r.get("metrics"):
        def cell(m):
            if m is None:
                return "-"
            if "count" in m:
                return str(m["count"])
            return f"P {m['precision']} R {m['recall']} F1 {m['f1']} (FP {m['fp']})"
        body.append("\n**Metrics over the truth labels that changed** (before → after):\n")
        body += ["| what | before | after |", "|---|---|---|"]
        body += [f"| {_cell(m['name'])} | {cell(m['before'])} | {cell(m['after'])} |" for m in r["metrics"][:40]]
    changed_scores = [s for s in r["scores"] if s["before"] != s["after"]]
    rows = changed_scores or r["scores"]
    if rows:
        body.append("\n<details><summary>TP / FP / FN per rule × target (before → after)</summary>\n")
        body += ["| rule | target | before | after |", "|---|---|---|---|"]
        fmt = lambda s: "/".join(map(str, s)) if s else "—"
        body += [f"| {_cell(s['rule'])} | {s['target']} | {fmt(s['before'])} | {fmt(s['after'])} |" for s in r["scores"]]
        body.append("\n</details>")
    if r["label_changes"]:
        body.append("\n<details><summary>Label changes (" + str(len(r["label_changes"])) + ")</summary>\n")
        body += ["| file | event | before | after |", "|---|---|---|---|"]
        body += [f"| `{c['file']}` | `{c['event']}` | {c['before'] if c['before'] is not None else '—'} | "
                 f"{c['after'] if c['after'] is not None else '—'} |" for c in r["label_changes"]]
        body.append("\n</details>")
    failures = r["head"]["test_failures"]
    if failures:
        body.append("\n<details><summary>`dac test` failures (" + str(len(failures)) + ")</summary>\n")
        body.append(_fence("\n".join(failures[:50]) + (f"\n… {len(failures) - 50} more" if len(failures) > 50 else ""), "text"))
        body.append("\n</details>")

    body.append("\n### Validator findings")
    if r["head"]["problems"]:
        body.append(_fence("\n".join(r["head"]["problems"]), "text"))
    if r["head"]["stale"]:
        body.append("Generated files not up to date:\n" + "\n".join(f"- `{s}`" for s in r["head"]["stale"]))
    if r["findings"]:
        body += ["| severity | where | check | message |", "|---|---|---|---|"]
        body += [f"| {f['severity']} | `{f['where']}` | {f['check']} | {_cell(f['message'])} |" for f in r["findings"]]
    elif not r["head"]["problems"]:
        body.append("No findings.")

    body.append("\n### Deploy plan after merge")
    if r["deploy_plan"]:
        body += ["| SIEM | action | object | what changes |", "|---|---|---|---|"]
        body += [f"| {d['siem']} | {d['action']} | `{d['object']}` | {', '.join(d['changed'])} |" for d in r["deploy_plan"]]
        body.append("\n(Planned against a SIEM holding exactly what the base deploys; no SIEM was contacted.)")
    else:
        body.append("No SIEM object changes.")
    from .backtest import render_markdown as backtest_markdown
    body += backtest_markdown(r.get("backtest"))

    diffs: list[str] = ["\n### Generated artifacts"]
    names = {c["id"]: c["name"] for c in r["rules"]}
    if not r["artifacts"]:
        diffs.append("No generated file changed.")
    for owner, entries in r["artifacts"].items():
        title = "Shared files (manifest, hunting queries, app metadata)" if owner == "shared" else f"{names.get(owner, owner)} (`{owner}`)"
        section = [f"\n<details><summary>{_cell(title)}: {len(entries)} file(s) changed</summary>\n"]
        for entry in entries:
            section += [f"`{entry['name']}`", _fence(entry["diff"])]
        section.append("\n</details>")
        diffs.append("\n".join(section))

    ref = r["base"]["ref"]
    # a change that touches everything can outgrow a comment with its body alone: cut it too
    text, cut = _fit("\n".join(head), body, 400, "line(s) of this report", ref)
    if not cut:
        text, _ = _fit(text, diffs, 200, "diff section(s)", ref)
    return _blank_line_before_tables(text) + "\n"


def _fit(text: str, parts: list[str], margin: int, what: str, ref: str) -> tuple[str, int]:
    """Append parts while the comment stays under COMMENT_LIMIT; say how many were left out."""
    for i, part in enumerate(parts):
        if len(text) + len(part) + margin > COMMENT_LIMIT:
            left = len(parts) - i
            return (text + f"\n\n_Truncated: {left} more {what} do not fit a GitHub comment; run "
                    f"`dac review --base {ref}` locally for the whole report._"), left
        text += "\n" + part
    return text, 0


def _blank_line_before_tables(text: str) -> str:
    """GitHub Markdown only starts a table after a blank line (or a heading)."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.startswith("| ") and out and out[-1].strip() and not out[-1].startswith(("|", "#")):
            out.append("")
        out.append(line)
    return "\n".join(out)


def render_json(r: dict) -> str:
    return json.dumps(r, indent=2, sort_keys=True, default=str) + "\n"

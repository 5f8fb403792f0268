"""KQL validation with Microsoft's Kusto.Language (npm @kusto/language-service-next), run in Node.

tools/kusto-analyzer/analyze.js analyzes a batch of queries in one Node process against table
symbols built from the schemas in sentinel/schemas/ (real Defender XDR columns and types):
unknown tables, columns and functions and syntax errors are Errors; analyzer hints such as
KS500 ("avoid contains") come back as Suggestions or Warnings. The same run also reports each
query's output columns (Kusto.Language's KustoCode.ResultType), which `result_columns` returns:
the Sentinel analytics use it to check that every entity mapping names a column the query emits.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


# (node, analyze.js path, its sha256, input) -> the results, as JSON (callers get a fresh copy)
_RESULTS: dict[tuple, str] = {}


class KqlAnalyzerUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class KqlDiagnostic:
    code: str
    severity: str       # Error | Warning | Suggestion | Information
    message: str
    line: int
    column: int


def is_error(diagnostic: KqlDiagnostic) -> bool:
    return diagnostic.severity == "Error"


def load_schemas(schema_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Table name -> [(column, Kusto type)] from every *.json in schema_dir.

    `*.schema.json` files there are JSON Schemas of other documents (the analytic rule template
    schema), not table schemas, and are skipped.
    """
    tables = {}
    for path in sorted(Path(schema_dir).glob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            tables[doc["table"]] = [(c["name"], c["type"]) for c in doc["columns"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: malformed table schema ({e})") from e
    if not tables:
        raise ValueError(f"{schema_dir}: no table schemas (*.json)")
    return tables


def _run_analyzer(queries: dict[str, str], tables: dict[str, list[tuple[str, str]]], analyzer_dir: Path) -> list[dict]:
    """One Node process over the whole batch; the raw `results` list of analyze.js."""
    node = shutil.which("node")
    script = Path(analyzer_dir) / "analyze.js"
    if node is None or not (Path(analyzer_dir) / "node_modules" / "@kusto" / "language-service-next").is_dir():
        raise KqlAnalyzerUnavailable(
            f"the Kusto analyzer is not installed (node and {analyzer_dir}/node_modules are needed): run `make setup`")
    payload = json.dumps({"tables": tables, "queries": [{"name": n, "text": t} for n, t in queries.items()]})
    # the analysis is a function of the script and its input: one Node run per distinct batch in a
    # process (the test suite validates the same queries many times)
    try:
        key = (node, str(script.resolve()), hashlib.sha256(script.read_bytes()).hexdigest(), payload)
    except OSError:
        key = None
    if key is not None and key in _RESULTS:
        return json.loads(_RESULTS[key])
    proc = subprocess.run([node, str(script)], input=payload, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"Kusto analyzer failed (exit {proc.returncode}): {proc.stderr.strip()}")
    results = json.loads(proc.stdout)["results"]
    if key is not None:
        _RESULTS[key] = json.dumps(results)
        if len(_RESULTS) > 256:
            _RESULTS.pop(next(iter(_RESULTS)))
    return results


def _diagnostics(result: dict) -> list[KqlDiagnostic]:
    return [KqlDiagnostic(d["code"], d["severity"], d["message"], d["line"], d["column"]) for d in result["diagnostics"]]


def analyze(queries: dict[str, str], tables: dict[str, list[tuple[str, str]]], analyzer_dir: Path) -> dict[str, list[KqlDiagnostic]]:
    return {r["name"]: _diagnostics(r) for r in _run_analyzer(queries, tables, analyzer_dir)}


def result_columns(queries: dict[str, str], tables: dict[str, list[tuple[str, str]]],
                   analyzer_dir: Path) -> dict[str, list[str]]:
    """Query name -> the names of its output columns, in output order.

    A query whose result is not a table (e.g. it names an unknown table) gets an empty list; its
    errors are what `analyze` reports. Column names only: entity mappings and custom details
    refer to columns by name.
    """
    return {r["name"]: [c["name"] for c in (r.get("columns") or [])]
            for r in _run_analyzer(queries, tables, analyzer_dir)}


"""KQL validation with Microsoft's Kusto.Language (npm @kusto/language-service-next), run in Node.

tools/kusto-analyzer/analyze.js analyzes a batch of queries in one Node process against table
symbols built from the schemas in sentinel/schemas/ (real Defender XDR columns and types):
unknown tables, columns and functions and syntax errors are Errors; analyzer hints such as
KS500 ("avoid contains") come back as Suggestions or Warnings.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


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
    """Table name -> [(column, Kusto type)] from every *.json in schema_dir."""
    tables = {}
    for path in sorted(Path(schema_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            tables[doc["table"]] = [(c["name"], c["type"]) for c in doc["columns"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: malformed table schema ({e})") from e
    if not tables:
        raise ValueError(f"{schema_dir}: no table schemas (*.json)")
    return tables


def analyze(queries: dict[str, str], tables: dict[str, list[tuple[str, str]]], analyzer_dir: Path) -> dict[str, list[KqlDiagnostic]]:
    node = shutil.which("node")
    script = Path(analyzer_dir) / "analyze.js"
    if node is None or not (Path(analyzer_dir) / "node_modules" / "@kusto" / "language-service-next").is_dir():
        raise KqlAnalyzerUnavailable(
            f"the Kusto analyzer is not installed (node and {analyzer_dir}/node_modules are needed): run `make setup`")
    payload = json.dumps({"tables": tables, "queries": [{"name": n, "text": t} for n, t in queries.items()]})
    proc = subprocess.run([node, str(script)], input=payload, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"Kusto analyzer failed (exit {proc.returncode}): {proc.stderr.strip()}")
    results = json.loads(proc.stdout)["results"]
    return {r["name"]: [KqlDiagnostic(d["code"], d["severity"], d["message"], d["line"], d["column"])
                        for d in r["diagnostics"]] for r in results}

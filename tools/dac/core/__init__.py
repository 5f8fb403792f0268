"""Shared low-level helpers every stage may import: problems and errors, repository layout,
atomic writes, redaction, retries, regex safety and time budgets.

May import nothing else of dac (it sits under every stage); never rules, queries, logs or SIEMs.
"""

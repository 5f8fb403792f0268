"""Stage 6, checks: `dac lint` (SigmaHQ's checks offline, the project's own, one exception list)
and `dac validate` (generated queries against analyzers, schemas and query-cost rules).

May import every earlier stage (core … engines: the SPL cost rules read the SPL parser); never
replay, deploy, backtest, review or cli."""

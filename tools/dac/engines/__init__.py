"""Stage 5, engines: the embedded query engines that execute compiled queries offline, one package
each: sigma (SQLite), kql (DuckDB via duckdb-kql), spl (parser, DuckDB compiler, reference evaluator).

May import dac.core, dac.rules, dac.compile, dac.logs; never replay, deploy, review or cli."""

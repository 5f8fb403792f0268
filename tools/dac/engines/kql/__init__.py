"""KQL engine: generated KQL executed on DuckDB through duckdb-kql (see engine.py).

May import dac.core, dac.rules, dac.compile; never the other engines or later stages."""

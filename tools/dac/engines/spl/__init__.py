"""SPL engine: parser and structural checker, the DuckDB compiler (sql.py), the Python reference
evaluator (engine.py) and the checked pair dac test uses (checked.py).

May import dac.core, dac.rules, dac.compile; never the other engines or later stages."""

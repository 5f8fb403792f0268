"""Sigma semantics engine: rules evaluated with pySigma's SQLite backend (see engine.py).

May import dac.core, dac.rules, dac.compile; never the other engines or later stages."""

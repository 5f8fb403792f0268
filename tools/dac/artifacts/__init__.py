"""Stage 3, artifacts: the generated, checked-in files (Splunk app, Sentinel analytics, hunting
queries and ARM templates, ATT&CK coverage), computed in memory and written atomically.

May import dac.core, dac.rules, dac.compile; never logs, engines, replay, deploy, review or cli."""

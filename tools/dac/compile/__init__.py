"""Stage 2, compile: targets, processing pipelines, backends, correlations and composed hunting
queries, from a loaded rule set to query text (SPL, KQL), plus the KQL analyzer that checks it.

May import dac.core and dac.rules; never artifacts, logs, engines, replay, deploy, review or cli."""

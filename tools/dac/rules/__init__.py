"""Stage 1, rules: finding, loading and validating the Sigma rule files, their tier and content hygiene.

May import dac.core only; knows nothing of targets, queries, logs or SIEMs."""

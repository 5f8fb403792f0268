"""Stage 7, replay: every compiled query run on the labelled sample logs with the embedded engines,
truth metrics, and `dac test --events` hunting over unlabelled logs.

May import core, rules, compile, artifacts, logs, engines, checks; never deploy, backtest, review or cli."""

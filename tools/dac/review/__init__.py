"""Stage 10, review: the pull-request report (`dac review`): what changed in rules, queries,
verdicts, coverage, and on the SIEM (backtest of old against new query).

May import every earlier stage; never cli."""

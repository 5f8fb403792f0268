"""Stage 9, backtest: the checked-in queries run on a real SIEM over a past window, one module per
SIEM (splunk.py, sentinel.py), connected exactly like deploy (connect.py).

May import every earlier stage (deploy for its configuration and transport); never review or cli."""

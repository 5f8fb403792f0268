"""Stage 8, deploy: plan and apply the generated detections to a SIEM, one module per SIEM
(splunk.py, sentinel.py, sentinel_hunting.py) behind the plan/apply interface of plan.py, over
the transport rules of transport.py.

May import every earlier stage; never backtest, review or cli."""

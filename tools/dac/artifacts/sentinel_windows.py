"""How a scheduled Sentinel analytic avoids alerting twice when its queryPeriod is longer than its
queryFrequency: single-event queries filter on ingestion time (each run sees the rows ingested
since the previous one), correlations on the event time of a sequence's last event (consecutive
runs' slices neither overlap nor leave gaps)."""

from __future__ import annotations

import re

from .sentinel_config import duration_minutes


# dedupByIngestionTime: each run alerts only on rows ingested since the previous run (see
# ingestion_window), so a queryPeriod longer than queryFrequency catches late rows without
# alerting twice on the rows of the overlap.
INGESTION_FILTER = "| where ingestion_time() > ago({window})"


# A correlation alerts on its sequences whose last event falls in one run's slice of event time,
# (now - queryFrequency - delay, now - delay], delay = queryPeriod - queryFrequency - timespan:
# consecutive runs' slices neither overlap nor leave gaps, and every step of a sequence in the
# slice is inside the lookback. Filtering a step on ingestion time would lose a sequence whose
# steps were ingested out of order in two runs.
SEQUENCE_FILTER = "| where LastTime > ago({start}m) and LastTime <= ago({delay}m)"


def sequence_window(query: str, frequency: str, period: str, seconds: int) -> str | None:
    """A correlation query restricted to the sequences of this run's slice (SEQUENCE_FILTER);
    None when the lookback is too short to hold a whole sequence beyond the frequency."""
    delay = duration_minutes(period) - duration_minutes(frequency) - -(-seconds // 60)
    if delay < 0:
        return None
    start = duration_minutes(frequency) + delay
    return query.rstrip("\n") + "\n" + SEQUENCE_FILTER.format(start=start, delay=delay) + "\n"


def ingestion_window(query: str, window: str, lets: list[str] | None) -> str | None:
    """The query with `| where ingestion_time() > ago(<window>)` right after its table, or after
    the table of each named `let`; None when there is no such place."""
    lines = query.rstrip("\n").split("\n")
    flt = INGESTION_FILTER.format(window=window)
    if lets is None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", lines[0].strip()):
            return None
        return "\n".join([lines[0], flt] + lines[1:]) + "\n"
    out, found = [], set()
    for line in lines:
        out.append(line)
        match = re.fullmatch(r"let ([A-Za-z_][A-Za-z0-9_]*) = [A-Za-z_][A-Za-z0-9_]*", line.strip())
        if match and match.group(1) in lets:
            out.append(flt)
            found.add(match.group(1))
    return "\n".join(out) + "\n" if found == set(lets) else None

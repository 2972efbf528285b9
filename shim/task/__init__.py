"""The Task service and what it drives: processes, stdio, runc, the reaper, events, stats."""

"""Reliability suite (issue 7): the real stack under faults -- killed workers,
broker and database restarts, concurrent schedulers, provider faults, bad input."""

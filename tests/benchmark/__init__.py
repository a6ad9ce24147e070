"""``script/bench``: the sync engine and the real clients against the simulators.

Measured the same way every time: requests, wall time, bytes received,
library-store writes and bytes, and the longest event-loop block, for each
scenario, beside a naive show -> season -> episode walk measured in the same
run. See ``python -m tests.benchmark --help``.
"""

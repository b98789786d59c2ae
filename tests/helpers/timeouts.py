"""Timeouts for the few tests that start, kill and restart several processes, or put a load of
hundreds of messages on one worker.

Every test has 30 s (pyproject.toml). These take 15 to 25 s on a 2-core machine running the suite
in four processes (`make test`), up to 29 s: each worker spends a few seconds starting and
joining its group, and they start two or three; a gateway restarted under a page waits out its
event streams' grace first. The first test of an xdist process to need the browser also pays
chromium's launch.
Machines here differ 2x from day to day, so they get twice the room rather than failing on a
slow one; what they check does not depend on how long they take.
"""

from __future__ import annotations

import pytest

SEVERAL_PROCESSES = pytest.mark.timeout(60)
UNDER_LOAD = pytest.mark.timeout(60)

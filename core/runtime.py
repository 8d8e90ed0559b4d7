"""What a long-running process (the API, a worker) does while it serves."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Container allocations (net) between young collections: Python's default, 700, sent every object that
# lives a few milliseconds (a request's, a workflow run's) on to the older generations, whose collections
# then traversed them again and again.
YOUNG_COLLECTION_THRESHOLD = 50_000


@contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """While it serves, exempt what the process held once started (imported libraries, its app or worker)
    from the garbage collector, whose full collections otherwise traverse every tracked object (about 90 ms
    each on a worker's heap, every few seconds under load), and collect the young generation less often.
    Measured on the worker over a run of benchmarks/backtests_e2e.py: 1.2 s of garbage collection before,
    0.4 s after. What startup left behind is collected first; objects made later are collected as before.
    Afterwards the collector is as it was (a test process starts and stops many apps)."""
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()

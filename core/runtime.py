"""What a long-running process (the API, a worker) does while it serves."""

from __future__ import annotations

import gc
import os
import select
import threading
import time
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


def pool_process(owner: int) -> None:
    """What each process of a worker's pool does first (its initializer): collect less often, as the worker
    does, and end with the worker ``owner``."""
    _frozen_heap()
    _exit_with(owner)


def _frozen_heap() -> None:
    """Exempt what the process holds once started from the collector, for good. A pool process imports the
    engine, optuna, scipy and scikit-learn; every full collection traversed all of it, about 100 ms, and a
    sampler's batch, which allocates many objects, set one off every few batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def _exit_with(owner: int) -> None:
    """End this process when the process ``owner`` ends, however it ends. A pool process whose worker was
    killed outright otherwise waits for work forever: it holds both ends of its call queue's pipe, so it
    never reads an end of file, and it keeps the pool's fork server alive in turn."""
    threading.Thread(target=_exit_after, args=(owner,), name="exit-with-owner", daemon=True).start()


def _exit_after(owner: int) -> None:
    if hasattr(os, "pidfd_open"):  # Linux: woken when the process ends, whatever reuses its id later
        try:
            select.select([os.pidfd_open(owner)], [], [])
        except ProcessLookupError:
            pass
    else:
        while _alive(owner):
            time.sleep(1)
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

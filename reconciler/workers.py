"""Fan CPU-bound, per-device work of a large fleet out over forked worker processes.

Loading and rendering 10,000 devices is pure Python and independent per device, so
``validate`` and ``impact`` split it over one process per core (at most 4). Workers
are *forked*: the repository value they read is inherited copy-on-write, never
pickled; only the small per-item results travel back. Results come back in input
order, so the outcome is the same as a plain loop — only the wall time differs.
Small inputs (under ``PARALLEL_FROM`` items) and platforms without ``fork`` run inline.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

PARALLEL_FROM = 1000
MAX_WORKERS = 4

_job: list[Callable[[Any], Any]] = []
"""The function the forked workers apply (inherited through fork, not pickled)."""


def map_forked(work: Callable[[In], Out], items: Sequence[In]) -> list[Out]:
    """``[work(item) for item in items]``, spread over forked workers when worth it."""
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if len(items) < PARALLEL_FROM or workers < 2 or "fork" not in mp.get_all_start_methods():
        return [work(item) for item in items]
    chunks = [list(range(i, len(items), workers)) for i in range(workers)]
    _job[:] = [lambda index: work(items[index])]
    # Everything loaded so far is read-only from here on: move it out of the collector's
    # sight, so the workers neither scan it nor copy its pages by touching refcounts.
    gc.freeze()
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_run_chunk, chunks)
    finally:
        _job.clear()
        gc.unfreeze()
    out: list[Any] = [None] * len(items)
    for chunk, part in zip(chunks, parts, strict=True):
        for index, result in zip(chunk, part, strict=True):
            out[index] = result
    return out


def _run_chunk(indexes: list[int]) -> list[Any]:
    job = _job[0]
    return [job(index) for index in indexes]

"""What the benchmark scripts share: timing a call several times (wall clock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed_runs(n: int, fn: Callable[[], T]) -> tuple[list[float], T]:
    """Call ``fn`` ``n`` times; the wall-clock seconds of each call and the last result."""
    times = []
    out = None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out  # type: ignore[return-value]


def best_of(n: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``n`` calls of ``fn`` (seconds) and the last result."""
    times, out = timed_runs(n, fn)
    return min(times), out

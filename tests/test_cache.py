"""lattice_plan.cache.BoundedCache: least-recently-used eviction by entries and by bytes."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from lattice_plan.cache import BoundedCache


def test_entry_bound_drops_least_recently_used() -> None:
    c: BoundedCache[int] = BoundedCache(max_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # "b" is now the least recently used
    c.put("c", 3)
    assert (c.get("a"), c.get("b"), c.get("c")) == (1, None, 3)
    assert len(c) == 2


def test_byte_bound_counts_values_and_keeps_the_newest() -> None:
    c: BoundedCache[np.ndarray] = BoundedCache(max_bytes=100, nbytes=lambda a: a.nbytes)
    c.put(1, np.zeros(5))  # 40 bytes
    c.put(2, np.zeros(5))  # 80
    c.put(3, np.zeros(5))  # 120 > 100: key 1 goes
    assert c.get(1) is None and c.nbytes == 80
    c.put(4, np.zeros(50))  # 400 bytes alone: kept, every older entry goes
    assert len(c) == 1 and c.nbytes == 400
    c.put(4, np.zeros(1))  # replacing a key replaces its size
    assert c.nbytes == 8


def test_pickles_empty_with_its_bounds() -> None:
    c: BoundedCache[int] = BoundedCache(max_entries=1)
    c.put("a", 1)
    d = pickle.loads(pickle.dumps(c))
    assert len(d) == 0
    d.put("a", 1)
    d.put("b", 2)
    assert len(d) == 1


def test_threads_share_one_cache_within_its_bound() -> None:
    c: BoundedCache[int] = BoundedCache(max_entries=8)

    def work(t: int) -> None:
        for i in range(500):
            c.put((t, i % 20), i)
            c.get((t, (i + 1) % 20))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(c) == 8


def test_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="max_entries or max_bytes"):
        BoundedCache()

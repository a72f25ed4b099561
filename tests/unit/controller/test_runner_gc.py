"""`tokenscale run`'s garbage-collector set-up: the start-up heap frozen, full collections ten times rarer, and
what was already garbage collected rather than frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tokenscale.controller import runner


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was: thresholds back, the heap unfrozen."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.mark.usefixtures("restored_collector")
def test_the_start_up_heap_is_frozen_and_full_collections_are_rarer() -> None:
    gc.unfreeze()
    young, middle, _ = gc.get_threshold()
    kept = _Node()
    cycle = _Node()
    cycle.other = _Node()
    cycle.other.other = cycle
    garbage = weakref.ref(cycle)
    del cycle

    runner.tune_garbage_collector()

    assert garbage() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    assert all(tracked is not kept for tracked in gc.get_objects())  # frozen: outside every generation
    assert gc.get_threshold() == (young, middle, runner.FULL_COLLECTION_EVERY)

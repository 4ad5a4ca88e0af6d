"""Background: items prepared in a thread, in order, errors raised where they happened."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from leelalab.runs.background import Background, fast_thread_switches


def test_items_come_in_order() -> None:
    with Background(iter(range(100)), ahead=3) as items:
        assert list(items) == list(range(100))


def test_an_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("line 3 is bad")

    seen = []
    with pytest.raises(ValueError, match="line 3 is bad"), Background(items()) as background:
        for item in background:
            seen.append(item)
    assert seen == [1, 2]


def test_closing_early_stops_the_thread() -> None:
    background = Background(iter(range(10**9)), ahead=2)
    assert next(iter(background)) == 0
    background.close()
    assert not background._thread.is_alive()


def test_switch_interval_is_restored() -> None:
    before = sys.getswitchinterval()
    with fast_thread_switches():
        assert sys.getswitchinterval() < before
    assert sys.getswitchinterval() == before

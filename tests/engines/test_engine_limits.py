"""Search limits: validated on construction, with a stable text key."""

from __future__ import annotations

import math

import chess.engine
import pytest

from leelalab.engines import Limit


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"depth": 0},
        {"depth": -3},
        {"nodes": 0},
        {"depth": 2.5},
        {"depth": True},
        {"nodes": "100"},
        {"time": 0},
        {"time": -1.0},
        {"time": math.nan},
        {"time": math.inf},
        {"time": "1"},
        {"time": False},
    ],
)
def test_bad_limits_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Limit(**kwargs)


def test_keys_are_stable_and_distinct() -> None:
    assert Limit(depth=12).key == "depth=12"
    assert Limit(nodes=10_000).key == "nodes=10000"
    assert Limit(nodes=10, depth=3).key == "depth=3,nodes=10"  # one order, whatever was passed
    assert Limit(time=1).key == Limit(time=1.0).key == "time=1.0"
    assert str(Limit(depth=5)) == "depth=5"
    keys = {Limit(depth=5).key, Limit(nodes=5).key, Limit(depth=5, nodes=5).key}
    assert len(keys) == 3
    assert Limit(depth=5) == Limit(depth=5) and hash(Limit(depth=5)) == hash(Limit(depth=5))


def test_the_python_chess_limit() -> None:
    limit = Limit(depth=4, nodes=100).to_chess()
    assert isinstance(limit, chess.engine.Limit)
    assert (limit.depth, limit.nodes, limit.time) == (4, 100, None)

"""Stockfish analyses are cached (a rerun searches nothing), and Lichess's win-chance scale
gives a hanging queen as a blunder."""

from __future__ import annotations

import chess
import pytest

from leelalab.anomaly.stockfish import (
    BLUNDER_WIN_CHANCE_LOSS,
    CachedStockfish,
    Line,
    win_chance_loss,
)
from leelalab.engines import CACHE_FILE, EngineNotFoundError, find_stockfish

try:
    find_stockfish()
    HAVE_STOCKFISH = True
except EngineNotFoundError:
    HAVE_STOCKFISH = False
needs_stockfish = pytest.mark.skipif(not HAVE_STOCKFISH, reason="Stockfish is not installed")


def test_win_chances_follow_lichess() -> None:
    assert Line("e2e4", 0, None).win_chances == 0
    assert Line("e2e4", 100, None).win_chances == pytest.approx(0.1812, abs=1e-3)
    assert Line("e2e4", None, 3).win_chances == Line("e2e4", 5000, None).win_chances
    assert Line("e2e4", None, -2).win_chances == pytest.approx(-0.951, abs=1e-3)


@needs_stockfish
def test_cache_makes_reruns_free(tmp_path) -> None:
    cache = tmp_path / CACHE_FILE
    board = chess.Board("rnb1kbnr/ppp2ppp/8/3pp3/8/5p2/PPPP1PPP/RNBQKBNR w KQkq - 0 3")
    with CachedStockfish(cache=cache) as engine:
        loss = win_chance_loss(engine, board, "d1e2", depth=6)
        first = engine.searches
    assert loss >= BLUNDER_WIN_CHANCE_LOSS  # Qe2 hangs the queen to fxe2
    assert first == 2
    with CachedStockfish(cache=cache) as engine:
        assert win_chance_loss(engine, board, "d1e2", depth=6) == loss
        assert engine.searches == 0
    with CachedStockfish(cache=cache, hash_mb=16) as engine:  # another engine identity
        assert win_chance_loss(engine, board, "d1e2", depth=6) == loss
        assert engine.searches == 2


def test_a_missing_binary_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(EngineNotFoundError, match="no-such-stockfish: no Stockfish executable"):
        CachedStockfish(tmp_path / "no-such-stockfish")

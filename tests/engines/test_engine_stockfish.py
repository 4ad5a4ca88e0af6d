"""The cached Stockfish against python-chess driving the same binary directly: the same
lines for the same limits, cached reruns that search nothing, $LEELALAB_STOCKFISH honoured."""

from __future__ import annotations

from pathlib import Path

import chess
import chess.engine
import pytest

from leelalab.engines import (
    CACHE_FILE,
    EngineCache,
    EngineNotFoundError,
    Limit,
    Stockfish,
    find_stockfish,
)


def _stockfish() -> str:
    try:
        return find_stockfish()
    except EngineNotFoundError:
        pytest.skip("Stockfish is not installed (Debian: apt-get install stockfish)")


POSITIONS = [
    chess.STARTING_FEN,
    "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1",  # back-rank mate in one
    "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",  # Qxf7#
    "rnb1kbnr/ppp2ppp/8/3pp3/8/5p2/PPPP1PPP/RNBQKBNR w KQkq - 0 3",
]


def test_lines_equal_a_direct_python_chess_search(tmp_path: Path) -> None:
    binary = _stockfish()
    limit = Limit(nodes=3000)
    with chess.engine.SimpleEngine.popen_uci(binary) as direct:
        direct.configure({"Threads": 1, "Hash": 16})
        expected = []
        for fen in POSITIONS:
            info = direct.analyse(chess.Board(fen), limit.to_chess(), game=object())
            expected.append((info["pv"][0].uci(), info["score"].relative))
    with Stockfish(binary, cache=tmp_path / CACHE_FILE) as engine:
        lines = [engine.analyse(chess.Board(fen), limit)[0] for fen in POSITIONS]
        assert engine.searches == len(POSITIONS)
        identity = engine.identity
    for fen, line, (move, score) in zip(POSITIONS, lines, expected, strict=True):
        assert line.move == move, fen
        assert line.score(chess.Board(fen).turn).relative == score, fen
    assert lines[1].mate == 1 and lines[1].move == "a1a8"
    assert identity.startswith("Stockfish") and '"Hash": 16' in identity
    with Stockfish(binary, cache=tmp_path / CACHE_FILE) as again:
        assert [again.analyse(chess.Board(f), limit)[0] for f in POSITIONS] == lines
        assert again.searches == 0


def test_multipv_and_root_moves_are_separate_queries() -> None:
    board = chess.Board(POSITIONS[3])
    with Stockfish(_stockfish(), cache=EngineCache()) as engine:
        best = engine.analyse(board, Limit(depth=6))
        three = engine.analyse(board, Limit(depth=6), multipv=3)
        queen = engine.analyse(board, Limit(depth=6), root_moves=[chess.Move.from_uci("d1e2")])
        assert engine.searches == 3
        with pytest.raises(ValueError, match="multipv"):
            engine.analyse(board, Limit(depth=1), multipv=0)
    assert len(best) == 1 and len(three) == 3
    assert queen[0].move == "d1e2"


def test_the_environment_variable_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    binary = _stockfish()
    monkeypatch.setenv("LEELALAB_STOCKFISH", binary)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_stockfish() == binary
    monkeypatch.setenv("LEELALAB_STOCKFISH", str(tmp_path / "missing"))
    with pytest.raises(EngineNotFoundError, match="LEELALAB_STOCKFISH"):
        Stockfish()


def test_a_result_does_not_depend_on_what_was_searched_before() -> None:
    # Without a cleared hash a depth-limited search inherits the previous search's table
    # (measured: 33 of 40 depth-12 scores changed when a run resumed 20 positions later).
    binary = _stockfish()
    limit = Limit(depth=10)
    first, second = chess.Board(POSITIONS[2]), chess.Board(POSITIONS[3])
    with Stockfish(binary) as engine:
        engine.analyse(first, limit)
        after_another = engine.analyse(second, limit)
    with Stockfish(binary) as fresh:
        alone = fresh.analyse(second, limit)
    assert after_another == alone

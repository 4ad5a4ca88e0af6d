"""The engine cache: a round trip through the file, keys that keep apart what an engine sees
differently (en passant, history, clocks) and who searched (identity, limit, query), and one
clear line for a file that is not a cache."""

from __future__ import annotations

from pathlib import Path

import chess
import pytest

from leelalab.engines import EngineCache, EngineCacheError, Limit, position_key

DEPTH = Limit(depth=8)


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "cache.sqlite"
    cache = EngineCache(path)
    board = chess.Board()
    assert cache.get("sf", DEPTH, board) is None
    assert not path.parent.exists()  # opened on the first write: the run creates its directory
    path.parent.mkdir()
    cache.put("sf", DEPTH, board, [["e2e4", 31, None]])
    cache.close()
    with EngineCache(path) as again:
        assert again.get("sf", DEPTH, board) == [["e2e4", 31, None]]
        assert again.get("sf", DEPTH, position_key(board)) == [["e2e4", 31, None]]
        assert len(again) == 1
        again.put("sf", DEPTH, board, {"move": "d2d4"})  # a rewrite replaces
        assert again.get("sf", DEPTH, board) == {"move": "d2d4"} and len(again) == 1


def test_identity_limit_and_query_are_kept_apart() -> None:
    board = chess.Board()
    with EngineCache() as cache:
        cache.put('Stockfish 15.1 {"Hash": 16, "Threads": 1}', DEPTH, board, 1)
        cache.put('Stockfish 15.1 {"Hash": 64, "Threads": 1}', DEPTH, board, 2)
        cache.put('Stockfish 16 {"Hash": 16, "Threads": 1}', DEPTH, board, 3)
        cache.put('Stockfish 15.1 {"Hash": 16, "Threads": 1}', Limit(nodes=8), board, 4)
        cache.put('Stockfish 15.1 {"Hash": 16, "Threads": 1}', DEPTH, board, 5, "multipv=2")
        assert len(cache) == 5
        assert cache.get('Stockfish 15.1 {"Hash": 16, "Threads": 1}', DEPTH, board) == 1
        assert cache.get('Stockfish 16 {"Hash": 16, "Threads": 1}', DEPTH, board) == 3
        assert cache.get('Stockfish 15.1 {"Hash": 16, "Threads": 1}', Limit(depth=9), board) is None


def test_en_passant_history_and_clocks_make_distinct_keys() -> None:
    pushed = chess.Board()
    pushed.push_uci("e2e4")  # no black pawn can take on e3: a "legal" FEN drops the square
    bare = chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1")
    with_square = chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1")
    assert pushed.fen() == bare.fen()  # python-chess's default FEN cannot tell them apart
    keys = {position_key(b) for b in (pushed, bare, with_square)}
    assert len(keys) == 3
    assert position_key(with_square) == (
        "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1 moves"
    )
    assert position_key(pushed) == f"{chess.STARTING_FEN} moves e2e4"
    # The same position reached by two move orders: different history planes for lc0.
    one, two = chess.Board(), chess.Board()
    for uci in ("g1f3", "g8f6", "b1c3"):
        one.push_uci(uci)
    for uci in ("b1c3", "g8f6", "g1f3"):
        two.push_uci(uci)
    assert one.board_fen() == two.board_fen() and position_key(one) != position_key(two)
    # The fifty-move clock is an input plane: it is part of the key.
    assert position_key(chess.Board("8/8/8/8/8/8/k7/K6R w - - 0 40")) != position_key(
        chess.Board("8/8/8/8/8/8/k7/K6R w - - 12 40")
    )
    with EngineCache() as cache:
        cache.put("sf", DEPTH, pushed, "after e2e4")
        assert cache.get("sf", DEPTH, bare) is None
        assert cache.get("sf", DEPTH, with_square) is None


def test_chess960_keys_use_shredder_fen() -> None:
    board = chess.Board.from_chess960_pos(100)
    assert position_key(board) == f"{board.fen(shredder=True)} moves"
    assert position_key(board) != position_key(chess.Board(board.fen()))


@pytest.mark.parametrize(
    "content", [b"garbage, not SQLite" * 50, b"SQLite format 3\x00" + b"\x00" * 40]
)
def test_a_corrupt_cache_is_one_clear_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "engine_cache.sqlite"
    path.write_bytes(content)
    with pytest.raises(EngineCacheError) as error:
        EngineCache(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "delete it" in message


def test_a_truncated_cache_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "engine_cache.sqlite"
    with EngineCache(path) as cache:
        cache.put_many([("sf", DEPTH, f"position {i}", "", [i] * 50) for i in range(3000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineCacheError, match=f"{path.name}: "):
        with EngineCache(path) as cache:
            cache.get("sf", DEPTH, "position 2999")


def test_another_format_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute("INSERT INTO meta VALUES ('format', 'someone.else/7')")
    connection.close()
    with pytest.raises(EngineCacheError, match="another format"):
        EngineCache(path)


def test_non_finite_values_are_refused() -> None:
    with EngineCache() as cache, pytest.raises(ValueError):
        cache.put("sf", DEPTH, chess.Board(), [float("nan")])

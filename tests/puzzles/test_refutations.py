"""Refutations at depth k: the candidate pool keeps the prefix, Stockfish verdicts follow the
definition on a hand-checked puzzle, found refutations satisfy it when re-checked by a fresh
engine, and the verdict cache is keyed and reloaded."""

from __future__ import annotations

import chess
import pytest

from leelalab.engines import CACHE_FILE, EngineCache, EngineNotFoundError, find_stockfish
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path
from leelalab.puzzles.refutations import (
    Edit,
    RefutationSettings,
    StockfishOracle,
    check_edit,
    clean_evaluations,
    find_refutation,
    line_moves,
    local_to_ply,
    prefix_edits,
    prefix_squares,
    replay,
)

# A smothered mate from the shipped sample (Lichess 0Fi7Q), hand-checked: 1. Nh6+ (double
# check) Kh8 2. Qg8+ Rxg8 3. Nf7#. Removing Black's h7 pawn gives the king h7 at the end:
# the line still forces Kh8 and Rxg8, and fails only at the mate (ply 5).
SMOTHERED = "0Fi7Q"


def _puzzle(puzzle_id: str):
    for puzzle in iter_puzzles(shipped_puzzles_path()):
        if puzzle.id == puzzle_id:
            return puzzle
    raise AssertionError(f"{puzzle_id} is not in the shipped sample")


def _stockfish() -> str:
    try:
        return find_stockfish()
    except EngineNotFoundError:
        pytest.skip("Stockfish is not installed (apt-get install stockfish)")


def test_prefix_edits_keep_the_line_up_to_ply_k() -> None:
    for puzzle in iter_puzzles(shipped_puzzles_path(), limit=8):
        moves = line_moves(puzzle)
        board = puzzle.board(plies=1).copy(stack=False)
        for k in (1, 3, 5):
            if len(moves) < k:
                continue
            edits = prefix_edits(board, moves, k)
            for edit in edits:
                assert not prefix_squares(moves, k).intersection(edit.squares)
                assert edit.board.is_valid()
                assert replay(edit.board, moves[:k]) is not None
                changed = [s for s in chess.SQUARES if edit.board.piece_at(s) != board.piece_at(s)]
                assert sorted(changed) == sorted(edit.squares)


def test_locality_to_a_ply() -> None:
    board = chess.Board("4k3/8/8/8/8/8/8/R3K3 w - - 0 1")
    move = chess.Move.from_uci("a1a8")  # Ra8+
    blocked = board.copy()
    blocked.set_piece_at(chess.A4, chess.Piece(chess.PAWN, chess.BLACK))
    assert local_to_ply([chess.A4], board, blocked, move)  # on the rook's path
    guard = board.copy()
    guard.set_piece_at(chess.B6, chess.Piece(chess.KNIGHT, chess.BLACK))
    assert local_to_ply([chess.B6], board, guard, move)  # attacks a8
    flight = board.copy()
    flight.set_piece_at(chess.D7, chess.Piece(chess.PAWN, chess.BLACK))
    assert local_to_ply([chess.D7], board, flight, move)  # next to the king
    far = board.copy()
    far.set_piece_at(chess.H3, chess.Piece(chess.PAWN, chess.BLACK))
    assert not local_to_ply([chess.H3], board, far, move)


def _removed(board: chess.Board, square: int) -> Edit:
    edited = board.copy(stack=False)
    piece = edited.remove_piece_at(square)
    assert piece is not None
    return Edit(edited, [square], "remove_pawn", piece.symbol())


def test_hand_checked_depths_of_the_smothered_mate(tmp_path) -> None:
    puzzle = _puzzle(SMOTHERED)
    board = puzzle.board(plies=1).copy(stack=False)
    moves = line_moves(puzzle)
    assert [m.uci() for m in moves] == ["f7h6", "g8h8", "e6g8", "f8g8", "h6f7"]
    settings = RefutationSettings()
    flight = _removed(board, chess.H7)
    far = _removed(board, chess.B7)
    with StockfishOracle(_stockfish(), cache=tmp_path / CACHE_FILE) as oracle:
        verdicts = {}
        for k in (1, 3, 5):
            clean = clean_evaluations(board, moves, k, oracle)
            assert min(clean.values()) >= settings.win_cp  # a forced mate
            verdicts[k] = (
                check_edit(flight, moves, k, board, clean, oracle, settings),
                check_edit(far, moves, k, board, clean, oracle, settings),
            )
    # The h7 pawn breaks the line at ply 5 only; b7 changes nothing at any depth.
    assert [verdicts[k][0].verdict for k in (1, 3, 5)] == ["other", "other", "refutation"]
    assert "fails later" in verdicts[1][0].reason and "fails later" in verdicts[3][0].reason
    assert verdicts[5][0].evals[1] <= settings.fail_cp
    assert [verdicts[k][1].verdict for k in (1, 3, 5)] == ["control"] * 3


@pytest.mark.parametrize("puzzle_id", [SMOTHERED, pytest.param("4lRJs", marks=pytest.mark.slow)])
def test_found_refutations_satisfy_the_definition(puzzle_id, tmp_path) -> None:
    puzzle = _puzzle(puzzle_id)
    board = puzzle.board(plies=1).copy(stack=False)
    moves = line_moves(puzzle)
    settings = RefutationSettings(max_candidates=16, max_nonlocal_controls=4)
    path = _stockfish()
    with StockfishOracle(path, nodes=settings.nodes, cache=tmp_path / CACHE_FILE) as oracle:
        records = [find_refutation(puzzle, k, oracle, settings, seed=0) for k in (1, 3, 5)]
    found = [r for r in records if r["status"] == "found"]
    assert found
    # Re-check with a fresh engine and no cache, from the stored FENs alone.
    with StockfishOracle(path, nodes=settings.nodes) as fresh:
        for record in found:
            k = record["k"]
            for role in ("refutation", "control"):
                entry = record[role]
                if entry is None:
                    continue
                edited = chess.Board(entry["fen"])
                squares = [chess.parse_square(s) for s in entry["squares"]]
                assert not prefix_squares(moves, k).intersection(squares)
                changed = [s for s in chess.SQUARES if edited.piece_at(s) != board.piece_at(s)]
                assert sorted(changed) == sorted(squares)
                line = replay(edited, moves[:k])
                assert line is not None  # the prefix, and ply k, stay legal
                after = {j: fresh.evaluate(line[j - 1]).for_side(board.turn) for j in (1, k)}
                if role == "refutation":
                    assert after[1] <= settings.fail_cp and after[k] <= settings.fail_cp
                else:
                    assert min(after.values()) >= settings.win_cp
                    assert entry["kind"] == record["refutation"]["kind"]
                    assert entry["piece"] == record["refutation"]["piece"]


def test_oracle_cache_is_keyed_and_reloaded(tmp_path) -> None:
    path = _stockfish()
    cache = tmp_path / CACHE_FILE
    board = chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1")
    with StockfishOracle(path, nodes=2000, cache=cache) as oracle:
        first = oracle.evaluate(board)
        assert oracle.analyses == 1
        assert oracle.evaluate(board) == first and oracle.analyses == 1
        identity, limit = oracle.stockfish.identity, oracle.limit
    assert first.best == "a1a8" and first.cp_white > 9000  # back-rank mate
    assert limit.key == "nodes=2000"
    with EngineCache(cache) as stored:
        assert len(stored) == 1
        assert stored.get(identity, limit, board, "multipv=1") is not None
    with StockfishOracle(path, nodes=2000, cache=cache) as again:
        assert again.evaluate(board) == first and again.analyses == 0
    with StockfishOracle(path, nodes=3000, cache=cache) as other_limit:
        other_limit.evaluate(board)
        assert other_limit.analyses == 1
    mated = chess.Board("R5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 1 1")
    with StockfishOracle(path, nodes=2000) as oracle:
        verdict = oracle.evaluate(mated)
        assert verdict.best is None and verdict.for_side(chess.BLACK) == -10_000
        assert oracle.analyses == 0


def test_missing_stockfish_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(EngineNotFoundError, match="nowhere: no Stockfish executable"):
        StockfishOracle(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="odd"):
        find_refutation(_puzzle(SMOTHERED), 2, None)  # type: ignore[arg-type]

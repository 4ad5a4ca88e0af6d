"""Dataset loading and square groups, on hand-built puzzles (both colours)."""

from __future__ import annotations

import json

import chess
import numpy as np
import pytest

from leelalab.puzzles.dataset import SQUARE_GROUPS, DatasetError, DatasetPuzzle, load_dataset
from leelalab.puzzles.reader import Puzzle


def _puzzle(fen: str, moves: str, corrupted_squares: list[str]) -> DatasetPuzzle:
    puzzle = Puzzle("test", fen, tuple(moves.split()))
    corruption = {"fen": puzzle.board(1).fen(), "squares": corrupted_squares, "kind": "add_pawn"}
    return DatasetPuzzle(puzzle, {"id": "test", "filters": {}}, corruption)


def _group_of(groups: np.ndarray, square: str) -> str:
    return SQUARE_GROUPS[groups[chess.parse_square(square)]]


# White's opponent (black) plays ...Kg8-h8; white solves Qd1-d7, ...Kh8-g8, Qd7-e8+,
# ...Kg8-h7, Nf4-g6 (a made-up but legal line).
WHITE_SOLVES = ("6k1/8/8/8/5N2/8/8/3Q2K1 b - - 0 1", "g8h8 d1d7 h8g8 d7e8 g8h7 f4g6")
# The same idea for black: white's opponent move first, then black solves.
BLACK_SOLVES = ("3q2k1/8/8/5n2/8/8/8/6K1 w - - 0 1", "g1h1 d8d2 h1g1 d2e1 g1h2 f5g3")


def test_square_groups_white_to_move_real_and_model_frame_agree() -> None:
    item = _puzzle(*WHITE_SOLVES, corrupted_squares=["b3"])
    assert item.clean_board.turn == chess.WHITE
    real = item.square_groups(frame="real")
    assert _group_of(real, "d7") == "target_1"
    assert _group_of(real, "g8") == "target_2"
    assert _group_of(real, "e8") == "target_3"
    assert _group_of(real, "h7") == "target_later_opponent"
    assert _group_of(real, "g6") == "target_later_player"
    assert _group_of(real, "d1") == "source"
    assert _group_of(real, "b3") == "corrupted"
    assert _group_of(real, "a1") == "other"
    # White to move: the network's frame is the real board.
    np.testing.assert_array_equal(item.square_groups(frame="model"), real)


def test_square_groups_black_to_move_are_mirrored_in_the_model_frame() -> None:
    item = _puzzle(*BLACK_SOLVES, corrupted_squares=["b6"])
    assert item.clean_board.turn == chess.BLACK
    real = item.square_groups(frame="real")
    model = item.square_groups(frame="model")
    assert _group_of(real, "d2") == "target_1"
    assert _group_of(real, "e1") == "target_3"
    # The network sees black's pieces from below: rank r -> 9 - r, files unchanged.
    assert _group_of(model, "d7") == "target_1"
    assert _group_of(model, "e8") == "target_3"
    assert _group_of(model, "b3") == "corrupted"
    assert _group_of(model, "d2") != "target_1"
    assert item.target_square(1) == chess.D7 and item.target_square(1, frame="real") == chess.D2


def test_precedence_when_squares_coincide() -> None:
    # The 3rd move lands on the corrupted square: the corrupted group claims it.
    item = _puzzle(*WHITE_SOLVES, corrupted_squares=["e8"])
    groups = item.square_groups(frame="real")
    assert _group_of(groups, "e8") == "corrupted"
    assert (groups == SQUARE_GROUPS.index("target_3")).sum() == 0


def test_move_squares_mark_absent_moves() -> None:
    item = _puzzle(WHITE_SOLVES[0], "g8h8 d1d7 h8g8 d7e8", corrupted_squares=["b3"])
    squares = item.move_squares(frame="real")
    assert squares[0].tolist() == [chess.D1, chess.D7]
    assert squares[2].tolist() == [chess.D7, chess.E8]
    assert (squares[3:] == -1).all()


def test_load_dataset_joins_corruptions(tmp_path) -> None:
    records = [
        {"id": "a", "fen": WHITE_SOLVES[0], "moves": WHITE_SOLVES[1].split(), "selected": True},
        {"id": "b", "fen": BLACK_SOLVES[0], "moves": BLACK_SOLVES[1].split(), "selected": True},
        {"id": "c", "fen": BLACK_SOLVES[0], "moves": BLACK_SOLVES[1].split(), "selected": False},
    ]
    (tmp_path / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    corruption = {"fen": "8/8/8/8/8/8/8/K6k w - - 0 1", "squares": ["a2"], "kind": "add_pawn"}
    (tmp_path / "corruptions.jsonl").write_text(
        json.dumps({"id": "a", "corruption": corruption})
        + "\n"
        + json.dumps({"id": "b", "corruption": None})
        + "\n"
    )
    assert [p.id for p in load_dataset(tmp_path)] == ["a", "b"]
    assert [p.id for p in load_dataset(tmp_path, selected_only=False)] == ["a", "b", "c"]
    corrupted = load_dataset(tmp_path, corrupted_only=True)
    assert [p.id for p in corrupted] == ["a"]
    assert corrupted[0].corrupted_squares(frame="real") == [chess.A2]


def test_missing_or_malformed_dataset_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DatasetError, match="no dataset.jsonl"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.jsonl").write_text("{not json\n")
    with pytest.raises(DatasetError, match="not JSON"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.jsonl").write_text('{"id": "x", "selected": true}\n')
    with pytest.raises(DatasetError, match="lacks"):
        load_dataset(tmp_path)


def test_written_pairs_read_back_as_a_selected_corrupted_dataset(tmp_path) -> None:
    from leelalab.puzzles.dataset import write_pairs_dataset

    other = Puzzle("other", BLACK_SOLVES[0], tuple(BLACK_SOLVES[1].split()), 1500, ("fork",))
    corruption = {"fen": other.board(1).fen(), "squares": ["e5"], "kind": "add_pawn"}
    pairs = [_puzzle(*WHITE_SOLVES, ["e4"]), DatasetPuzzle(other, {}, corruption)]
    write_pairs_dataset(tmp_path / "data", pairs)
    loaded = load_dataset(tmp_path / "data")
    assert [p.id for p in loaded] == ["test", "other"]
    assert [p.puzzle.moves for p in loaded] == [p.puzzle.moves for p in pairs]
    assert [p.corruption for p in loaded] == [p.corruption for p in pairs]
    assert all(p.record["selected"] for p in loaded)
    assert (loaded[1].puzzle.rating, loaded[1].puzzle.themes) == (1500, ("fork",))

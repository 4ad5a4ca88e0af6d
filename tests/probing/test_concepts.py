"""Future-board and static-concept targets are right on hand-checked boards, and the probes
find a planted future board (and material) in synthetic activations but not in noise."""

from __future__ import annotations

import json
from itertools import islice

import chess
import h5py
import numpy as np
import pytest

from leelalab.probing.concepts import (
    PIECE_CLASSES,
    ConceptConfig,
    ConceptError,
    balanced_accuracy,
    future_boards,
    row_control,
    square_classes,
    static_concepts,
    store_puzzles,
    train_concept_probes,
)
from leelalab.probing.store import STORE_FORMAT, ActivationStore, puzzle_type
from leelalab.puzzles.dataset import DatasetPuzzle, load_dataset, write_pairs_dataset
from leelalab.puzzles.reader import Puzzle, iter_puzzles, shipped_puzzles_path

MY_PAWN, MY_ROOK, MY_KING = 1, 4, 6
THEIR_PAWN, THEIR_KNIGHT, THEIR_KING = 7, 8, 12


def _puzzle(fen: str, moves: list[str]) -> DatasetPuzzle:
    return DatasetPuzzle(Puzzle("t", fen, tuple(moves)), {"id": "t"}, None)


def test_square_classes_in_the_side_to_move_frame() -> None:
    board = chess.Board()
    labels = square_classes(board, board)
    assert labels[chess.A1] == MY_ROOK and labels[chess.E8] == THEIR_KING
    assert labels[chess.E4] == 0 and (labels == 0).sum() == 32
    board.push_uci("e2e4")  # black to move: mirrored ranks, black's pieces are "mine"
    labels = square_classes(board, board)
    assert labels[chess.E2] == MY_PAWN  # black's e7 pawn, seen from black
    assert labels[chess.E5] == THEIR_PAWN  # white's e4 pawn
    assert labels[chess.E1] == MY_KING
    assert PIECE_CLASSES[MY_ROOK] == "my rook" and len(PIECE_CLASSES) == 13


def test_future_boards_follow_the_line() -> None:
    # After the opponent's g8f6, White plays e4e5, Black Nf6d5, White e5e6.
    puzzle = _puzzle(
        "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1", ["g8f6", "e4e5", "f6d5"]
    )
    boards = future_boards([puzzle], [0, 1, 2, 3])
    root = puzzle.clean_board
    assert np.array_equal(boards[0][0], square_classes(root, root))
    changed = np.nonzero(boards[1][0] != boards[0][0])[0].tolist()
    assert changed == [chess.E4, chess.E5]
    assert boards[1][0][chess.E5] == MY_PAWN
    assert boards[2][0][chess.D5] == THEIR_KNIGHT and boards[2][0][chess.F6] == 0
    assert (boards[3][0] == -1).all()  # the line has only two moves after the opponent's


def test_static_concepts_on_a_hand_position() -> None:
    # After Black's ...Rh3-h2: White Ke1 Ra1 Pe4 against Ke8 Qh5 Rh2, White to move; Ra8+.
    puzzle = _puzzle("4k3/8/8/7q/4P3/7r/8/R3K3 b - - 0 1", ["h3h2", "a1a8"])
    concepts = static_concepts([puzzle])
    assert concepts["material"][0] == (5 + 1) - (9 + 5)
    assert concepts["in_check"][0] == 0
    assert concepts["gives_check"][0] == 1
    mine, theirs = concepts["attacked_by_me"][0], concepts["attacked_by_them"][0]
    assert mine[chess.A8] and mine[chess.D5] and mine[chess.F5] and not mine[chess.E5]
    assert theirs[chess.D1] and theirs[chess.H7] and theirs[chess.A2] and not theirs[chess.A1]
    check = _puzzle("4k3/8/8/8/8/8/q7/4K3 b - - 0 1", ["a2a1", "e1e2"])
    quiet = _puzzle("4k3/8/8/8/8/8/q7/4K3 b - - 0 1", ["a2a3", "e1e2"])
    assert static_concepts([check, quiet])["in_check"].tolist() == [1, 0]
    assert static_concepts([check, quiet])["gives_check"].tolist() == [0, 0]


def test_row_control_permutes_within_types() -> None:
    types = np.array([0, 0, 0, 1, 1, 1, 1])
    valid = np.array([True, True, True, True, True, False, True])
    order = row_control(types, valid, seed=3)
    assert sorted(order.tolist()) == list(range(7))
    assert order[5] == 5
    assert set(order[:3]) == {0, 1, 2} and set(order[[3, 4, 6]]) == {3, 4, 6}


def test_balanced_accuracy() -> None:
    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5
    assert balanced_accuracy(np.array([0, 1]), np.array([0, 1])) == 1.0


D = 24


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A dataset of real puzzles and a store whose layer 0 holds the board after 2 plies at
    every square (a class embedding plus noise) and material on every square; layer 1 is
    noise."""
    directory = tmp_path_factory.mktemp("concepts")
    lines = (p for p in iter_puzzles(shipped_puzzles_path(), limit=400) if len(p.moves) >= 4)
    write_pairs_dataset(directory, [DatasetPuzzle(p, {}, None) for p in islice(lines, 240)])
    puzzles = load_dataset(directory)
    rng = np.random.default_rng(0)
    n = len(puzzles)
    boards = future_boards(puzzles, [2])[2]
    material = static_concepts(puzzles)["material"]
    embedding = rng.normal(size=(13, D)) * 3
    signal = embedding[boards] + rng.normal(size=(n, 64, D))
    direction = rng.normal(size=D)
    signal += (material[:, None, None] * direction / 4)[:, :, :]
    path = directory / "acts.h5"
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    with h5py.File(path, "w") as handle:
        handle.create_dataset(f"activations/{hooks[0]}", data=signal.astype(np.float32))
        handle.create_dataset(
            f"activations/{hooks[1]}", data=rng.normal(size=(n, 64, D)).astype(np.float32)
        )
        ids = np.array([p.id for p in puzzles], dtype=object)
        handle.create_dataset("puzzle_ids", data=ids, dtype=h5py.string_dtype())
        handle.create_dataset(
            "move_squares", data=np.stack([p.move_squares() for p in puzzles]).astype(np.int8)
        )
        handle.create_dataset(
            "puzzle_type", data=np.array([puzzle_type(p) for p in puzzles], dtype=np.int16)
        )
        for flag in ("is_mate", "selected", "different_targets"):
            handle.create_dataset(flag, data=np.zeros(n, dtype=bool))
        handle.create_dataset("n_moves", data=np.array([p.n_moves for p in puzzles], np.int16))
        handle.attrs["format"] = STORE_FORMAT
        handle.attrs["hooks"] = json.dumps(hooks)
        handle.attrs["settings"] = json.dumps(
            {"network": "synthetic", "random_init": None, "dataset": str(directory)}
        )
    return directory, path


def test_probes_find_a_planted_future_board_and_not_noise(planted, tmp_path) -> None:
    _, store = planted
    config = ConceptConfig(
        horizons=[0, 2], square_concepts=False, seeds=[0], epochs=6, lr=2e-2, control=True
    )
    summary = train_concept_probes(store, tmp_path / "out", config, progress=False)
    by_hook = {r["hook"]: r["targets"] for r in summary["results"]}
    planted_board = by_hook["blocks.0.hook_resid_post"]["board_ply2"]
    noise_board = by_hook["blocks.1.hook_resid_post"]["board_ply2"]
    assert planted_board["scores"]["changed_accuracy"]["mean"] > 0.9
    assert planted_board["scores"]["arrival_accuracy"]["mean"] > 0.9
    assert planted_board["scores"]["accuracy"]["mean"] > 0.97
    # Noise: vacated squares come free ("empty" is the common class), arrivals do not.
    assert noise_board["scores"]["arrival_accuracy"]["mean"] < 0.2
    # Another puzzle's board cannot be read from this one's activations.
    assert planted_board["control"]["arrival_accuracy"]["mean"] < 0.2
    assert planted_board["selectivity"]["arrival_accuracy"] > 0.7
    copy = planted_board["scores"]["copy_baseline_accuracy"]["mean"]
    assert 0.85 < copy < 1.0  # most squares do not change in two plies
    material = by_hook["blocks.0.hook_resid_post"]["material"]["scores"]["r2"]["mean"]
    assert material > 0.8
    assert by_hook["blocks.1.hook_resid_post"]["material"]["scores"]["r2"]["mean"] < 0.3
    assert planted_board["test_puzzles"] + planted_board["train_puzzles"] == 240
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["classes"][0] == "empty" and (tmp_path / "out" / "run.json").is_file()
    # Finished hooks are kept: a rerun (or a resumed one) reads them back.
    (tmp_path / "out" / "layers" / "blocks.1.hook_resid_post.json").unlink()
    again = train_concept_probes(store, tmp_path / "out", config, progress=False)
    assert again["results"] == summary["results"]
    with pytest.raises(ConceptError, match="another store or settings"):
        other = ConceptConfig(horizons=[0, 1], square_concepts=False, seeds=[0], epochs=6)
        train_concept_probes(store, tmp_path / "out", other, progress=False)


def test_store_puzzles_checks_the_frame(planted) -> None:
    directory, store = planted
    puzzles = store_puzzles(ActivationStore(store))
    assert [p.id for p in puzzles] == list(ActivationStore(store).puzzle_ids)
    with pytest.raises(ConceptError, match="input format"):
        store_puzzles(ActivationStore(store), directory, input_format=3)


def test_weighting_changed_squares_lets_the_probe_predict_arrivals(planted, tmp_path) -> None:
    """Current board strong, next board weak: a plain probe copies the current board; the
    weighted one reads the arrivals."""
    directory, _ = planted
    puzzles = load_dataset(directory)
    boards = future_boards(puzzles, [0, 1])
    rng = np.random.default_rng(5)
    now, ahead = rng.normal(size=(13, D)) * 3, rng.normal(size=(13, D)) * 2
    acts = now[boards[0]] + ahead[boards[1]] + rng.normal(size=(len(puzzles), 64, D))
    path = tmp_path / "acts.h5"
    with h5py.File(planted[1], "r") as source, h5py.File(path, "w") as handle:
        for key in ("puzzle_ids", "move_squares", "puzzle_type", "is_mate", "selected"):
            source.copy(key, handle)
        for key in ("different_targets", "n_moves"):
            source.copy(key, handle)
        handle.create_dataset("activations/blocks.0.hook_resid_post", data=acts.astype("f4"))
        handle.attrs["format"] = STORE_FORMAT
        handle.attrs["hooks"] = json.dumps(["blocks.0.hook_resid_post"])
        handle.attrs["settings"] = source.attrs["settings"]
    arrival = {}
    for weight in (1.0, 10.0):
        config = ConceptConfig(
            horizons=[1],
            square_concepts=False,
            board_concepts=False,
            seeds=[0],
            control=False,
            changed_weight=weight,
            epochs=6,
        )
        summary = train_concept_probes(path, tmp_path / f"w{weight}", config, progress=False)
        scores = summary["results"][0]["targets"]["board_ply1"]["scores"]
        arrival[weight] = scores["arrival_accuracy"]["mean"]
    assert arrival[10.0] > arrival[1.0] + 0.2

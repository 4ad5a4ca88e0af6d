"""Probe targets beyond move squares: the board k plies ahead, and static concepts.

*Future board* (Karvonen; Othello-GPT): for every square, which piece stands there after the
first ``k`` plies of the puzzle's line (``k = 0`` is the current board), one of 13 classes —
empty, or one of the six piece types of the side to move ("mine") or of the opponent
("theirs") — in the network's square frame of the puzzle position. A per-square linear probe
(weights shared by the squares, plus a bias per square and class) reads it from the residual
at that square. Most squares never change in a few plies, so beside the accuracy over all
squares we report the accuracy on the squares whose content *changes* between the current
board and ply k, where copying the current board scores zero, split into *arrivals* (a piece
that is not there now will be: the hard part, since a probe predicting "empty" everywhere
already gets the *vacated* squares right) and *vacated* squares. Trained with a plain
cross-entropy, the probe learns to copy the current board (on maia-1900, 0.3% of arrivals
after one ply at block 0, 8% at block 2); the squares that change therefore weigh
``changed_weight`` (10) times as much in the loss, which costs a few points of overall
accuracy and lets the probe predict arrivals when the activations carry them.

*Static concepts* (McGrath et al.), as covariates: squares attacked by the side to move and by
the opponent (per-square binary), material balance (pawns 1, knights and bishops 3, rooks 5,
queens 9; the side to move's view; a ridge regression, R²), the side to move in check, and
the 1st move of the line giving check (binary, balanced accuracy). Board-level concepts are
read from the residual pooled over squares (mean and max).

Every probe is trained on a grouped train split of the puzzles (:func:`grouped_split`, by
puzzle id) and scored on the held-out rest, for each seed; a control task permutes the
targets among puzzles of the same type (:func:`leelalab.probing.store.puzzle_type`), and the
random-init baseline is the same on a store cached with ``random_init``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leelalab.errors import LeelaLabError
from leelalab.lc0.squares import permutation
from leelalab.probing.concept_settings import ConceptConfig, ConceptSettings
from leelalab.probing.probes import grouped_split
from leelalab.probing.settings import Schedule
from leelalab.probing.store import ActivationStore, match_hooks
from leelalab.probing.training import fit_probe, map_rows
from leelalab.puzzles.dataset import DatasetPuzzle, iter_dataset
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name
from leelalab.runs.results import RunDirectory, sha256_file, write_text_atomically

PIECE_CLASSES = (
    "empty",
    *(f"my {name}" for name in ("pawn", "knight", "bishop", "rook", "queen", "king")),
    *(f"their {name}" for name in ("pawn", "knight", "bishop", "rook", "queen", "king")),
)
PIECE_VALUES = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9}
SQUARE_CONCEPTS = ("attacked_by_me", "attacked_by_them")
BOARD_CONCEPTS = ("material", "in_check", "gives_check")


class ConceptError(LeelaLabError):
    """Probe targets that cannot be built (a store that does not match its dataset)."""


def square_classes(board: chess.Board, root: chess.Board, input_format: int = 1) -> np.ndarray:
    """``[64]`` piece classes of ``board`` in ``root``'s model frame, "mine" = ``root``'s side
    to move (so the labels of every ply share the frame of the puzzle position)."""
    real = permutation(root, input_format)
    labels = np.zeros(64, dtype=np.int64)
    for model, square in enumerate(real):
        piece = board.piece_at(int(square))
        if piece is not None:
            labels[model] = piece.piece_type + (0 if piece.color == root.turn else 6)
    return labels


def future_boards(
    puzzles: Sequence[DatasetPuzzle], horizons: Sequence[int], input_format: int = 1
) -> dict[int, np.ndarray]:
    """Per horizon ``k``, ``[N, 64]`` piece classes after ``k`` plies of each line (model
    frame of the puzzle position); rows of lines shorter than ``k`` are ``-1``."""
    out = {k: np.full((len(puzzles), 64), -1, dtype=np.int64) for k in horizons}
    for row, puzzle in enumerate(puzzles):
        root = puzzle.clean_board
        board = root.copy(stack=False)
        for ply in range(max(horizons) + 1):
            if ply in out:
                out[ply][row] = square_classes(board, root, input_format)
            move = puzzle.move(ply + 1)
            if move is None:
                break
            board.push(move)
    return out


def _attacked(board: chess.Board, color: chess.Color, real: np.ndarray) -> np.ndarray:
    return np.array([board.is_attacked_by(color, int(square)) for square in real], dtype=bool)


def static_concepts(
    puzzles: Sequence[DatasetPuzzle], input_format: int = 1
) -> dict[str, np.ndarray]:
    """Static concepts of each puzzle position (see the module docstring)."""
    out: dict[str, list[Any]] = {name: [] for name in (*SQUARE_CONCEPTS, *BOARD_CONCEPTS)}
    for puzzle in puzzles:
        board = puzzle.clean_board
        me = board.turn
        real = permutation(board, input_format)
        out["attacked_by_me"].append(_attacked(board, me, real))
        out["attacked_by_them"].append(_attacked(board, not me, real))
        material = 0
        for piece in board.piece_map().values():
            value = PIECE_VALUES.get(piece.piece_type, 0)
            material += value if piece.color == me else -value
        out["material"].append(material)
        out["in_check"].append(board.is_check())
        first = puzzle.move(1)
        out["gives_check"].append(first is not None and board.gives_check(first))
    return {
        "attacked_by_me": np.stack(out["attacked_by_me"]).astype(np.int64),
        "attacked_by_them": np.stack(out["attacked_by_them"]).astype(np.int64),
        "material": np.array(out["material"], dtype=np.float64),
        "in_check": np.array(out["in_check"], dtype=np.int64),
        "gives_check": np.array(out["gives_check"], dtype=np.int64),
    }


def store_puzzles(
    store: ActivationStore, dataset: str | os.PathLike[str] | None = None, input_format: int = 1
) -> list[DatasetPuzzle]:
    """The dataset puzzles behind a store's rows, in row order; checked against the store's
    move squares (which also checks the input format's frame)."""
    directory = Path(dataset or store.settings.get("dataset", ""))
    by_id = {p.id: p for p in iter_dataset(directory, selected_only=False)}
    missing = [i for i in store.puzzle_ids if i not in by_id]
    if missing:
        raise ConceptError(f"{directory}: {len(missing)} store puzzles are not in the dataset")
    puzzles = [by_id[i] for i in store.puzzle_ids]
    for row, puzzle in enumerate(puzzles[:64]):
        expected = puzzle.move_squares(frame="model", input_format=input_format)
        if not np.array_equal(expected, store.move_squares[row]):
            raise ConceptError(
                f"{store.path}: the move squares of {puzzle.id} differ from the dataset's "
                f"(another dataset, or not input format {input_format}?)"
            )
    return puzzles


def row_control(types: np.ndarray, valid: np.ndarray, seed: int) -> np.ndarray:
    """A row permutation within each puzzle type, over the valid rows (others map to
    themselves): the control task moves whole targets between puzzles of the same type."""
    rng = np.random.default_rng(seed)
    order = np.arange(len(types))
    for kind in np.unique(types):
        rows = np.nonzero((types == kind) & valid)[0]
        order[rows] = rows[rng.permutation(rows.size)]
    return order


class SquareClassifier(nn.Module):
    """``logits[s] = W x_s + b_s``: shared weights, a bias per square and class."""

    def __init__(self, d_model: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, classes)
        self.square_bias = nn.Parameter(torch.zeros(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.square_bias


@dataclass
class ConceptResults(Results):
    """``results.json`` of ``leelalab future-board``: per hook and target, scores per seed,
    mean ± std, the control task's, selectivity, and how many seeds' probes were degenerate
    (predicted one class everywhere)."""

    FORMAT = format_name("future-board")
    FILE = "results.json"
    HINT = "a `leelalab future-board` directory"

    store: str
    network: str | None
    random_init: Any
    puzzles: int
    config: dict[str, Any]
    classes: list[str]
    results: list[dict[str, Any]]


def _train_square_probe(
    store: ActivationStore,
    hook: str,
    labels: np.ndarray,
    rows: np.ndarray,
    classes: int,
    config: ConceptConfig,
    seed: int,
    reference: np.ndarray | None = None,
) -> SquareClassifier:
    """Train a per-square classifier; with ``reference`` (the current board), squares whose
    label differs from it weigh ``config.changed_weight`` times as much in the loss.
    Trained by the probes' one loop (:func:`~leelalab.probing.training.fit_probe`)."""

    def loss(probe: nn.Module, x: torch.Tensor, batch_rows: np.ndarray) -> torch.Tensor:
        y = torch.from_numpy(labels[batch_rows]).reshape(-1)
        losses = nn.functional.cross_entropy(probe(x).reshape(-1, classes), y, reduction="none")
        if reference is not None and config.changed_weight != 1:
            changed = torch.from_numpy(labels[batch_rows] != reference[batch_rows])
            losses = losses * (1 + (config.changed_weight - 1) * changed.reshape(-1))
        return losses.mean()

    schedule = Schedule(config.epochs, config.batch_size, config.lr, config.memory_budget_mb)
    return fit_probe(
        lambda: SquareClassifier(store.widths[hook], classes),
        loss,
        store,
        hook,
        rows,
        schedule,
        seed,
    )


def _square_predictions(
    probe: SquareClassifier, store: ActivationStore, hook: str, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return map_rows(lambda x, _: probe(x).argmax(-1), store, hook, rows)


def _pooled(store: ActivationStore, hook: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return map_rows(
        lambda x, _: torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=1), store, hook, rows
    )


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth``."""
    recalls = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    return float(np.mean(recalls))


@dataclass
class _Target:
    name: str
    kind: str  # "square" (per-square classes), "binary" or "regression" (board level)
    labels: np.ndarray
    classes: int = 2
    reference: np.ndarray | None = None
    """For future boards: the current board's classes (defines the changed squares)."""


def _targets(
    puzzles: Sequence[DatasetPuzzle], config: ConceptConfig, input_format: int
) -> list[_Target]:
    targets = []
    if config.horizons:
        boards = future_boards(puzzles, sorted(set(config.horizons) | {0}), input_format)
        for k in config.horizons:
            targets.append(
                _Target(f"board_ply{k}", "square", boards[k], len(PIECE_CLASSES), boards[0])
            )
    if config.square_concepts or config.board_concepts:
        concepts = static_concepts(puzzles, input_format)
        if config.square_concepts:
            targets += [_Target(name, "square", concepts[name]) for name in SQUARE_CONCEPTS]
        if config.board_concepts:
            targets.append(_Target("material", "regression", concepts["material"]))
            targets += [_Target(n, "binary", concepts[n]) for n in ("in_check", "gives_check")]
    return targets


def _score_square_target(
    target: _Target,
    labels: np.ndarray,
    reference: np.ndarray | None,
    store: ActivationStore,
    hook: str,
    train: np.ndarray,
    test: np.ndarray,
    config: ConceptConfig,
    seed: int,
) -> dict[str, float]:
    probe = _train_square_probe(store, hook, labels, train, target.classes, config, seed, reference)
    predicted, rows = _square_predictions(probe, store, hook, test)
    truth = labels[rows]
    # A probe that collapsed to a constant predicts one class on every test square: its
    # accuracies then measure the class's frequency, not what the activations hold.
    scores = {
        "accuracy": float(np.mean(predicted == truth)),
        "predicted_classes": float(np.unique(predicted).size),
    }
    if reference is not None:
        changed = truth != reference[rows]
        arrived = changed & (truth != 0)
        right = predicted == truth

        def share(mask: np.ndarray) -> float:
            return float(np.mean(right[mask])) if mask.any() else float("nan")

        scores["changed_accuracy"] = share(changed)
        scores["arrival_accuracy"] = share(arrived)
        scores["vacated_accuracy"] = share(changed & ~arrived)
        scores["changed_squares_per_puzzle"] = float(changed.sum() / max(len(rows), 1))
        scores["copy_baseline_accuracy"] = float(np.mean(~changed))
    else:
        scores["balanced_accuracy"] = balanced_accuracy(truth.ravel(), predicted.ravel())
        majority = np.bincount(labels[train].ravel(), minlength=target.classes).argmax()
        scores["majority_baseline_accuracy"] = float(np.mean(truth == majority))
    return scores


def _score_board_target(
    target: _Target,
    labels: np.ndarray,
    store: ActivationStore,
    hook: str,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> dict[str, float]:
    try:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise ConceptError(
            'board-level concept probes need the probe extra: pip install "leelalab[probe]"'
        ) from None
    x_train, train_rows = _pooled(store, hook, train)
    x_test, test_rows = _pooled(store, hook, test)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    y_train, y_test = labels[train_rows], labels[test_rows]
    if target.kind == "regression":
        model = Ridge(alpha=10.0).fit(x_train, y_train)
        residual = np.sum((y_test - model.predict(x_test)) ** 2)
        total = np.sum((y_test - y_train.mean()) ** 2)
        return {"r2": float(1 - residual / total) if total > 0 else float("nan")}
    if np.unique(y_train).size < 2:
        # Nothing to learn (one class in training): undefined, not a degenerate probe.
        return {"balanced_accuracy": float("nan"), "predicted_classes": float("nan")}
    model = LogisticRegression(max_iter=500, class_weight="balanced", random_state=seed)
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    return {
        "balanced_accuracy": balanced_accuracy(y_test, predicted),
        "predicted_classes": float(np.unique(predicted).size),
    }


def _valid_rows(target: _Target) -> np.ndarray:
    labels = target.labels
    return labels.min(axis=1) >= 0 if labels.ndim == 2 else np.isfinite(labels)


def _summarise(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in per_seed[0]:
        values = np.array([scores[key] for scores in per_seed], dtype=np.float64)
        summary[key] = {
            "mean": float(np.nanmean(values)) if np.isfinite(values).any() else None,
            "std": float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else 0.0,
            "per_seed": [None if not np.isfinite(v) else float(v) for v in values],
        }
    return summary


def degenerate_seeds(scores: dict[str, Any]) -> int:
    """How many seeds' probes predicted a single class on every test square or puzzle
    (``predicted_classes`` of :func:`_summarise`'d scores; 0 for regressions)."""
    per_seed = scores.get("predicted_classes", {}).get("per_seed", [])
    return sum(1 for value in per_seed if value is not None and value <= 1)


def _score_target(
    target: _Target,
    store: ActivationStore,
    hook: str,
    config: ConceptConfig,
    bar: Any,
) -> dict[str, Any]:
    """One target's scores at one hook over every seed, with its control task."""
    valid = _valid_rows(target)
    real_scores: list[dict[str, float]] = []
    control_scores: list[dict[str, float]] = []
    counts = (0, 0)
    for seed in config.seeds:
        train, test = grouped_split(store.puzzle_ids, config.test_fraction, seed)
        train, test = train[valid[train]], test[valid[test]]
        counts = (int(train.size), int(test.size))
        runs = [(target.labels, target.reference, real_scores)]
        if config.control:
            # The control moves whole targets between puzzles (with the current board they
            # are compared with, so "changed squares" stay the same population).
            order = row_control(store.puzzle_type, valid, seed)
            reference = None if target.reference is None else target.reference[order]
            runs.append((target.labels[order], reference, control_scores))
        for labels, reference, into in runs:
            if target.kind == "square":
                scores = _score_square_target(
                    target, labels, reference, store, hook, train, test, config, seed
                )
            else:
                scores = _score_board_target(target, labels, store, hook, train, test, seed)
            into.append(scores)
        bar.update(1)
    entry: dict[str, Any] = {
        "kind": target.kind,
        "scores": _summarise(real_scores),
        "train_puzzles": counts[0],
        "test_puzzles": counts[1],
    }
    entry["degenerate_seeds"] = degenerate_seeds(entry["scores"])
    if control_scores:
        entry["control"] = _summarise(control_scores)
        entry["selectivity"] = {
            key: (
                None
                if entry["scores"][key]["mean"] is None or entry["control"][key]["mean"] is None
                else entry["scores"][key]["mean"] - entry["control"][key]["mean"]
            )
            for key in entry["scores"]
        }
    return entry


def train_concept_probes(
    store_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: ConceptConfig | None = None,
    *,
    dataset: str | os.PathLike[str] | None = None,
    input_format: int = 1,
    hooks: Sequence[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Future-board and static-concept probes at every hook of a store, with controls.

    ``hooks``: names or globs (``blocks.*.hook_resid_post``) of the store's hooks (default:
    all). Writes ``output/results.json`` (:class:`ConceptResults`: per hook and target,
    scores per seed, mean ± std, the control task's, selectivity, degenerate seeds;
    train/test puzzle counts), ``config.json`` and ``run.json``. Resumable by hook: each
    finished hook is kept in ``output/layers/``; the directory follows
    :class:`~leelalab.runs.results.RunDirectory` (another store or other settings are
    refused unless ``overwrite``). Every input is checked before the output is touched.
    """
    config = config or ConceptConfig()
    store = ActivationStore(store_path)
    if hooks:
        hooks = match_hooks(store.hooks, hooks, f"{store.path} holds {store.hooks}")
    else:
        hooks = store.hooks
    for hook in hooks:
        store._check(hook)
    puzzles = store_puzzles(store, dataset, input_format)
    targets = _targets(puzzles, config, input_format)
    settings = {
        "store_settings": store.settings,
        "store_sha256": sha256_file(store.path),
        "config": asdict(config),
        "input_format": input_format,
    }
    run = RunDirectory(output, settings, overwrite=overwrite, what="future-board run")
    with run:
        finished = run.path / "layers"
        finished.mkdir(exist_ok=True)
        bar = tqdm(
            total=len(hooks) * len(targets) * len(config.seeds),
            desc="concept probes",
            unit="probe",
            disable=not progress,
        )
        results: list[dict[str, Any]] = []
        for hook in hooks:
            path = finished / f"{hook}.json"
            if path.is_file():
                results.append(json.loads(path.read_text(encoding="utf-8")))
                bar.update(len(targets) * len(config.seeds))
                continue
            layer_results = {
                "hook": hook,
                "targets": {t.name: _score_target(t, store, hook, config, bar) for t in targets},
            }
            write_text_atomically(path, json.dumps(layer_results))
            results.append(layer_results)
        bar.close()
        summary = ConceptResults(
            store=str(Path(store_path).resolve()),
            network=store.settings.get("network"),
            random_init=store.settings.get("random_init"),
            puzzles=store.n,
            config=asdict(config),
            classes=list(PIECE_CLASSES),
            results=results,
        )
        summary.save(run.path)
        write_text_atomically(run.path / "config.json", json.dumps(asdict(config), indent=2))
        run.write_record(store=str(Path(store_path).resolve()), hooks=hooks)
    return summary.to_json()


def load_concept_results(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``results.json`` of a ``leelalab future-board`` directory (one line when it is not)."""
    return ConceptResults.load(directory).to_json()


__all__ = [
    "PIECE_CLASSES",
    "ConceptConfig",
    "ConceptResults",
    "ConceptSettings",
    "ConceptError",
    "SquareClassifier",
    "balanced_accuracy",
    "future_boards",
    "load_concept_results",
    "row_control",
    "square_classes",
    "static_concepts",
    "store_puzzles",
    "train_concept_probes",
]

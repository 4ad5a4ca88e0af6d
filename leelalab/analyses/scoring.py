"""Puzzle scoring: did a player find the line?

The rule is Lichess's, as DeepMind's puzzle benchmark implements it (``searchless_chess``):
the opponent's first move is played, then at every solver move the player's move must equal
the line's move — except that a move which gives checkmate always solves the puzzle (Lichess
accepts every mate-in-one alternative, normally at the last move). The first wrong move that
is not a mate fails the puzzle; moves after a mate are not looked at.

Moves are scored *teacher-forced*: each solver position is reached by the line's own moves,
so the player's choice at move 3 is judged in the line's position whatever it chose at move
1. ``solved`` then equals playing the puzzle out (a wrong move ends it anyway), and the per-
move correctness gives first-versus-later statistics.

Solver moves are numbered 1, 3, 5, … as in the look-ahead paper ("the 3rd move" is the
solver's second move); in arrays they are indexed 0, 1, 2, … (``solver_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import chess

from leelalab.puzzles.reader import Puzzle


def solver_positions(puzzle: Puzzle) -> list[chess.Board]:
    """The boards at each solver move, with the real history (puzzle FEN + moves played)."""
    board = chess.Board(puzzle.fen)
    boards = []
    for ply, uci in enumerate(puzzle.moves):
        if ply % 2 == 1:
            boards.append(board.copy())
        board.push(chess.Move.from_uci(uci))
    return boards


def solver_moves(puzzle: Puzzle) -> list[str]:
    """The line's solver moves (plies 1, 3, 5, … of ``Moves``)."""
    return list(puzzle.moves[1::2])


def n_solver_moves(moves: Sequence[str]) -> int:
    """Solver moves of a Lichess ``Moves`` line (the opponent's move first)."""
    return len(moves) // 2


def gives_mate(board: chess.Board, uci: str) -> bool:
    """Whether ``uci`` is legal in ``board`` and checkmates."""
    try:
        move = chess.Move.from_uci(uci)
    except ValueError:
        return False
    if move not in board.legal_moves:
        return False
    board = board.copy(stack=False)
    board.push(move)
    return board.is_checkmate()


def move_correct(board: chess.Board, predicted: str | None, expected: str) -> bool:
    """The line's move, or any mating move."""
    if predicted is None:
        return False
    return predicted == expected or gives_mate(board, predicted)


@dataclass(frozen=True)
class PuzzleScore:
    """One player on one puzzle."""

    correct: tuple[bool, ...]
    """Per solver move (teacher-forced): the line's move or a mate."""
    solved: bool
    """The puzzle is solved under the Lichess rule (module docstring)."""

    @property
    def first_correct(self) -> bool:
        return bool(self.correct) and self.correct[0]

    @property
    def later_correct(self) -> bool | None:
        """Every solver move after the first is correct (``None`` for one-move puzzles)."""
        return all(self.correct[1:]) if len(self.correct) > 1 else None


def score_puzzle(puzzle: Puzzle, predicted: Sequence[str | None]) -> PuzzleScore:
    """Score one move per solver position (:func:`solver_positions` order).

    Raises:
        ValueError: ``predicted`` does not have one entry per solver move.
    """
    boards = solver_positions(puzzle)
    expected = solver_moves(puzzle)
    if len(predicted) != len(expected):
        raise ValueError(
            f"puzzle {puzzle.id}: {len(predicted)} predicted moves for {len(expected)} solver moves"
        )
    correct = tuple(
        move_correct(board, move, line)
        for board, move, line in zip(boards, predicted, expected, strict=True)
    )
    return PuzzleScore(correct, _solved(boards, predicted, expected))


def _solved(
    boards: Sequence[chess.Board], predicted: Sequence[str | None], expected: Sequence[str]
) -> bool:
    for board, move, line in zip(boards, predicted, expected, strict=True):
        if move == line:
            continue
        return move is not None and gives_mate(board, move)
    return True


def puzzle_from_record(record: dict) -> Puzzle:
    """The :class:`Puzzle` of a ``dataset.jsonl`` record."""
    return Puzzle(
        record["id"],
        record["fen"],
        tuple(record["moves"]),
        record.get("rating"),
        tuple(record.get("themes", ())),
    )


def network_predictions(record: dict, network: str = "strong") -> list[str]:
    """The network's top move at each solver position, from a filter record (the filter
    evaluates every ply of the line with the line's history: teacher forcing)."""
    top_moves = record.get(f"{network}_top_moves") or []
    return list(top_moves[0::2])


def score_record(record: dict, network: str = "strong") -> PuzzleScore:
    """:func:`score_puzzle` of a network's policy (1 node, no search) from a filter record."""
    return score_puzzle(puzzle_from_record(record), network_predictions(record, network))

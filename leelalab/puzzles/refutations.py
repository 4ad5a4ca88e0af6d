"""Refutations at depth k: one-piece edits that break a puzzle's line at ply k, not before.

Plies are numbered like the paper's moves: ply 1 is the solver's first move, ply 2 the
opponent's reply, ply 3 the solver's second move, and so on (the opponent's move that sets up
the puzzle is already on the board). Edits are the corruption generator's
(:func:`leelalab.puzzles.corruptions.candidate_edits`): add or remove a pawn, or move a
non-pawn, non-king piece to an empty square; the position stays valid and the 1st move legal.

A **depth-k refutation** (k odd: a solver move) of a puzzle is an edit such that

1. *unchanged prefix*: the edit touches no source or target square of plies 1 … k, and plies
   1 … k are all legal when replayed on the edited board (the same moves, by the same pieces);
2. *the line fails at ply k*: Stockfish's evaluation (solver's view) after ply k is at most
   ``fail_cp`` on the edited board, where it was at least ``win_cp`` on the clean board;
3. *the first move stops winning*: likewise after ply 1 (edited ≤ ``fail_cp``, clean ≥
   ``win_cp``); for k = 1 this is condition 2;
4. *nothing fails earlier*: each opponent reply of the line before ply k (plies 2, 4, …,
   k − 1) stays adequate on the edited board: it loses at most ``reply_tolerance_cp`` more
   against Stockfish's best reply than it does on the clean board — the edit gives the
   opponent no new defence before ply k;
5. *nor later*: the line ends at ply k, or its reply at ply k + 1 is no longer adequate
   (illegal, or losing more than ``reply_tolerance_cp`` more than on the clean board) — the
   opponent refutes the ply-k move at once. Without this, an
   edit whose line fails only at ply k + 2 would also pass conditions 1–4 at ply k (if the
   line's replies stay best, every later failure drags the evaluation after ply k down), so
   each edit has exactly one depth: e.g. removing the pawn that blocks the king's flight
   square of a smothered mate breaks the line at the mate (ply 5), not at the queen
   sacrifice (ply 3) that still forces the recapture.

A **control** is an edit drawn from the same pool that Stockfish says changes nothing that
matters: conditions 1 and 4 hold, the line still wins after ply 1 and after ply k (at least
``win_cp``), and those evaluations move by at most ``same_cp`` (evaluations clipped to
±``clip_cp`` first, so that two crushing scores count as equal). It is matched to the
refutation: the same kind of edit and the same piece (added, removed or moved), and among
those the closest distance (in king moves) from the edited square to the ply-k target
square. Controls come from the pool when
it has one; otherwise from the other edits with an unchanged prefix (``"local": false``).

*Which edits are tried.* All edits satisfying condition 1 that are **local to ply k** (a
prior that makes the search affordable, applied to refutations and controls alike): an edited
square lies between the ply-k move's source and target, between its target and the opponent's
king, next to the opponent's king, or holds (before or after the edit) a piece attacking the
ply-k target — all measured just before ply k. They are tried in a seeded random order, at most
``max_candidates`` per puzzle and depth; the first refutation found is kept (the paper picks
the edit the weak network notices least; a network-free choice keeps the selection
independent of the networks measured on it).

Stockfish runs single-threaded with a node limit and a cleared hash before every position, so
verdicts are deterministic, and :class:`StockfishOracle` caches them in the engine cache
(:mod:`leelalab.engines`), keyed by position, engine identity and limit. Stockfish sees
FENs, not move histories (no repetition draws).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import chess

from leelalab.engines import EngineCache, Limit, Stockfish
from leelalab.errors import LeelaLabError
from leelalab.puzzles.corruptions import candidate_edits
from leelalab.puzzles.reader import Puzzle

MATE_SCORE = 10_000


@dataclass(frozen=True)
class Verdict:
    """Stockfish on one position: centipawns from White's view (mates ±(10000 − plies)),
    and the best move (``None`` when the game is over)."""

    cp_white: int
    best: str | None

    def for_side(self, color: chess.Color) -> int:
        return self.cp_white if color == chess.WHITE else -self.cp_white


class StockfishOracle:
    """Cached, deterministic Stockfish verdicts (``with StockfishOracle(...) as oracle``).

    Args:
        path: the engine binary (see :func:`leelalab.engines.find_stockfish`).
        nodes: node limit per position (deterministic with one thread and a cleared hash).
        cache: the engine cache (:class:`leelalab.engines.EngineCache` or its file), read
            and written as verdicts come in; ``None`` keeps them in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        nodes: int = 10_000,
        cache: EngineCache | str | os.PathLike[str] | None = None,
        hash_mb: int = 16,
    ) -> None:
        self.limit = Limit(nodes=nodes)
        self.nodes = nodes
        self.stockfish = Stockfish(path, threads=1, hash_mb=hash_mb, cache=cache)
        self.path = self.stockfish.binary
        self.engine_id = self.stockfish.name
        self.limit_key = self.limit.key

    @property
    def analyses(self) -> int:
        """Stockfish searches run (cache hits and finished games excluded)."""
        return self.stockfish.searches

    def evaluate(self, board: chess.Board) -> Verdict:
        """Stockfish's verdict on ``board`` (as a FEN), from the cache when possible."""
        outcome = board.outcome(claim_draw=False)
        if outcome is not None:
            winner = outcome.winner
            cp = 0 if winner is None else (MATE_SCORE if winner == chess.WHITE else -MATE_SCORE)
            return Verdict(cp, None)
        position = chess.Board(board.fen())  # the FEN alone: no history
        line = self.stockfish.analyse(position, self.limit)[0]
        score = line.score(position.turn).white().score(mate_score=MATE_SCORE)
        return Verdict(int(score), line.move)

    def close(self) -> None:
        self.stockfish.close()

    def __enter__(self) -> StockfishOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RefutationSettings:
    """Thresholds (centipawns, solver's view) and search budget."""

    win_cp: int = 200
    """The clean line must be at least this good after ply 1 and after ply k."""
    fail_cp: int = 50
    """A refuted ply leaves the solver at most this much (the move no longer wins)."""
    same_cp: int = 150
    """A control changes the evaluations after plies 1 and k by at most this much (about a
    pawn and a half: adding or removing a pawn is worth about 100 on its own)."""
    clip_cp: int = 1000
    """Evaluations are clipped to ±this before the control comparison."""
    reply_tolerance_cp: int = 50
    """An opponent reply of the line is kept if it loses at most this much more, relative to
    Stockfish's best reply, than on the clean board."""
    max_candidates: int = 60
    """Edits evaluated per puzzle and depth at most."""
    max_nonlocal_controls: int = 10
    """Edits outside the pool tried for a control when the pool has no matching one."""
    nodes: int = 10_000
    """Stockfish node limit per position."""


def line_moves(puzzle: Puzzle) -> list[chess.Move]:
    """The solution line (ply 1 = the solver's first move)."""
    return [chess.Move.from_uci(uci) for uci in puzzle.moves[1:]]


def replay(board: chess.Board, moves: Sequence[chess.Move]) -> list[chess.Board] | None:
    """Boards after each of ``moves`` played from ``board`` (no history kept), or ``None``
    when one of them is illegal."""
    current = board.copy(stack=False)
    boards = []
    for move in moves:
        if move not in current.legal_moves:
            return None
        current.push(move)
        boards.append(current.copy(stack=False))
    return boards


def prefix_squares(moves: Sequence[chess.Move], k: int) -> set[int]:
    """Source and target squares of plies 1 … k."""
    return {square for move in moves[:k] for square in (move.from_square, move.to_square)}


def local_to_ply(
    squares: Sequence[int], clean: chess.Board, edited: chess.Board, move: chess.Move
) -> bool:
    """Whether an edit of ``squares`` is local to ``move`` (played from ``clean``/``edited``,
    the positions just before it); see the module docstring."""
    target = move.to_square
    region = set(chess.SquareSet(chess.between(move.from_square, target)))
    king = clean.king(not clean.turn)
    if king is not None:
        region |= set(chess.SquareSet(chess.between(target, king)))
        region |= set(chess.SquareSet(chess.BB_KING_ATTACKS[king]))
    for square in squares:
        if square in region:
            return True
        for board in (clean, edited):
            if board.piece_at(square) is not None and target in board.attacks(square):
                return True
    return False


@dataclass(frozen=True)
class Edit:
    board: chess.Board
    squares: list[int]
    kind: str
    piece: str
    """The piece added, removed or moved (python-chess symbol, upper case = White)."""
    local: bool = True
    """Whether the edit is local to the ply it is tried at (see the module docstring)."""

    @property
    def primary(self) -> int:
        """The square the edit puts something on (or empties, for a removal)."""
        return self.squares[-1]


def prefix_edits(board: chess.Board, moves: Sequence[chess.Move], k: int) -> list[Edit]:
    """Edits of ``board`` with an unchanged, legal prefix through ply ``k``, each marked
    local to ply ``k`` or not (in generator order)."""
    if len(moves) < k:
        return []
    clean_line = replay(board, moves[: k - 1])
    if clean_line is None:
        raise LeelaLabError(f"the line is illegal on {board.fen()}")
    clean_before = clean_line[-1] if clean_line else board
    touched = prefix_squares(moves, k)
    edits = []
    for edited, names, kind in candidate_edits(board, moves[0]):
        squares = [chess.parse_square(name) for name in names]
        if touched.intersection(squares):
            continue
        edited_line = replay(edited, moves[:k])
        if edited_line is None:
            continue
        edited_before = edited_line[k - 2] if k > 1 else edited
        local = local_to_ply(squares, clean_before, edited_before, moves[k - 1])
        piece = board.piece_at(squares[0]) if kind != "add_pawn" else edited.piece_at(squares[0])
        assert piece is not None
        edits.append(Edit(edited, squares, kind, piece.symbol(), local))
    return edits


def local_edits(board: chess.Board, moves: Sequence[chess.Move], k: int) -> list[Edit]:
    """The candidate pool at depth ``k``: :func:`prefix_edits` local to ply ``k``."""
    return [edit for edit in prefix_edits(board, moves, k) if edit.local]


@dataclass
class EditCheck:
    """What Stockfish says about one edit at depth k."""

    verdict: str
    """``"refutation"``, ``"control"`` or ``"other"`` (neither)."""
    evals: dict[int, int] = field(default_factory=dict)
    """Solver's evaluation after ply j (odd j), edited board."""
    reply_deviation: dict[int, int] = field(default_factory=dict)
    """Per opponent ply checked: how much more the line's reply loses against Stockfish's
    best reply than on the clean board (cp, opponent's view)."""
    reason: str = ""


def clean_evaluations(
    board: chess.Board, moves: Sequence[chess.Move], k: int, oracle: StockfishOracle
) -> dict[int, int]:
    """Solver's evaluation after each odd ply ``j ≤ k`` of the clean line."""
    positions = replay(board, moves[:k])
    if positions is None:
        raise LeelaLabError(f"the line is illegal on {board.fen()}")
    return {j: oracle.evaluate(positions[j - 1]).for_side(board.turn) for j in range(1, k + 1, 2)}


def reply_deviation(
    board: chess.Board, moves: Sequence[chess.Move], ply: int, oracle: StockfishOracle
) -> int | None:
    """How much worse for the opponent (cp) the line's reply at ``ply`` (even) is than
    Stockfish's best reply, on the line played from ``board``; 0 when it is Stockfish's
    choice, ``None`` when it is illegal."""
    line = replay(board, moves[:ply])
    if line is None:
        return None
    before = line[ply - 2]  # after ply - 1: the opponent to move
    verdict = oracle.evaluate(before)
    if verdict.best == moves[ply - 1].uci():
        return 0
    solver = board.turn
    return oracle.evaluate(line[ply - 1]).for_side(solver) - verdict.for_side(solver)


def check_edit(
    edit: Edit,
    moves: Sequence[chess.Move],
    k: int,
    clean_board: chess.Board,
    clean: dict[int, int],
    oracle: StockfishOracle,
    settings: RefutationSettings,
) -> EditCheck:
    """Classify one edit (see the module docstring); cheap verdicts are tried first.

    Reply deviations are compared with the clean line's (a shallow search may itself not
    prefer a puzzle's reply): a reply stops being adequate when it loses more than
    ``reply_tolerance_cp`` relative to the clean line.
    """
    solver = edit.board.turn
    positions = replay(edit.board, moves[:k])
    if positions is None:
        return EditCheck("other", reason="prefix illegal")

    def after(ply: int) -> int:
        return oracle.evaluate(positions[ply - 1]).for_side(solver)

    def clipped(value: int) -> int:
        return max(-settings.clip_cp, min(settings.clip_cp, value))

    def similar(ply: int) -> bool:
        edited, original = check.evals[ply], clean[ply]
        return edited >= settings.win_cp and (
            abs(clipped(edited) - clipped(original)) <= settings.same_cp
        )

    def reply_changed(ply: int) -> bool:
        edited = reply_deviation(edit.board, moves, ply, oracle)
        if edited is None:
            return True
        original = reply_deviation(clean_board, moves, ply, oracle) or 0
        check.reply_deviation[ply] = edited - original
        return edited - original > settings.reply_tolerance_cp

    check = EditCheck("other")
    check.evals[k] = after(k)
    fails = check.evals[k] <= settings.fail_cp
    if not (fails or similar(k)):
        check.reason = f"ply {k} neither fails nor stays as it was"
        return check
    if fails and len(moves) > k and not reply_changed(k + 1):
        check.reason = f"the line's reply at ply {k + 1} still works: it fails later"
        return check
    check.evals[1] = after(1)
    if fails and check.evals[1] > settings.fail_cp:
        check.reason = "the first move still wins"
        return check
    if not fails and not similar(1):
        check.reason = "ply 1 changed"
        return check
    for ply in range(2, k, 2):
        check.evals.setdefault(ply + 1, after(ply + 1))
        if reply_changed(ply):
            check.reason = f"the opponent has a better reply at ply {ply}"
            return check
    check.verdict = "refutation" if fails else "control"
    return check


def _edit_record(edit: Edit, check: EditCheck, target: int) -> dict[str, Any]:
    return {
        "fen": edit.board.fen(en_passant="fen"),
        "squares": [chess.square_name(s) for s in edit.squares],
        "kind": edit.kind,
        "piece": edit.piece,
        "distance_to_target": chess.square_distance(edit.primary, target),
        "local": edit.local,
        "evals": {str(j): v for j, v in sorted(check.evals.items())},
        "reply_deviation": {str(j): v for j, v in check.reply_deviation.items()},
    }


def find_refutation(
    puzzle: Puzzle,
    k: int,
    oracle: StockfishOracle,
    settings: RefutationSettings = RefutationSettings(),
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """A depth-``k`` refutation of ``puzzle`` and its matched control, as a JSON-able record.

    ``status`` is ``"found"`` (refutation, and ``control`` unless none matched),
    ``"line-too-short"``, ``"clean-not-winning"`` (Stockfish does not see the clean line
    winning after ply 1 and ply k), ``"no-candidates"`` or ``"not-found"``.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError("k must be an odd ply (a solver move): 1, 3, 5, …")
    board = puzzle.board(plies=1).copy(stack=False)
    moves = line_moves(puzzle)
    record: dict[str, Any] = {"k": k, "refutation": None, "control": None}
    if len(moves) < k:
        return {**record, "status": "line-too-short"}
    clean = clean_evaluations(board, moves, k, oracle)
    record["clean_evals"] = {str(j): v for j, v in clean.items()}
    if clean[1] < settings.win_cp or clean[k] < settings.win_cp:
        return {**record, "status": "clean-not-winning"}
    edits = prefix_edits(board, moves, k)
    pool = [edit for edit in edits if edit.local]
    record["pool"] = len(pool)
    if not pool:
        return {**record, "status": "no-candidates"}
    random.Random(f"{seed}:{puzzle.id}:{k}").shuffle(pool)
    target = moves[k - 1].to_square
    refutation: tuple[Edit, EditCheck] | None = None
    controls: list[tuple[Edit, EditCheck]] = []
    evaluated = 0
    counts = {"refutation": 0, "control": 0, "other": 0}

    def distance_gap(edit: Edit) -> int:
        assert refutation is not None
        return abs(
            chess.square_distance(edit.primary, target)
            - chess.square_distance(refutation[0].primary, target)
        )

    def same_edit_type(edit: Edit) -> bool:
        assert refutation is not None
        return edit.kind == refutation[0].kind and edit.piece == refutation[0].piece

    for edit in pool:
        if evaluated >= settings.max_candidates:
            break
        if refutation is not None:
            if not same_edit_type(edit):
                continue
            if any(same_edit_type(c) and distance_gap(c) == 0 for c, _ in controls):
                break
        check = check_edit(edit, moves, k, board, clean, oracle, settings)
        evaluated += 1
        counts[check.verdict] += 1
        if check.verdict == "refutation" and refutation is None:
            refutation = (edit, check)
        elif check.verdict == "control":
            controls.append((edit, check))
    record.update({"evaluated": evaluated, "verdicts": counts})
    if refutation is None:
        return {**record, "status": "not-found"}
    record["status"] = "found"
    record["refutation"] = _edit_record(*refutation, target)
    matching = [c for c in controls if same_edit_type(c[0])]
    if not matching:
        # No local control of this type: try edits of the same type elsewhere, the closest
        # in distance to the ply-k target first.
        others = [e for e in edits if not e.local and same_edit_type(e)]
        random.Random(f"{seed}:{puzzle.id}:{k}:control").shuffle(others)
        others.sort(key=distance_gap)
        matching = _first_control(
            others[: settings.max_nonlocal_controls],
            record,
            lambda edit: check_edit(edit, moves, k, board, clean, oracle, settings),
        )
    if matching:
        edit, check = min(matching, key=lambda c: distance_gap(c[0]))
        record["control"] = _edit_record(edit, check, target)
    return record


def _first_control(
    edits: list[Edit], record: dict[str, Any], check: Callable[[Edit], EditCheck]
) -> list[tuple[Edit, EditCheck]]:
    """The first of ``edits`` that ``check`` finds a control (in a list; empty: none),
    counting every check in ``record``."""
    for edit in edits:
        result = check(edit)
        record["evaluated"] += 1
        record["verdicts"][result.verdict] += 1
        if result.verdict == "control":
            return [(edit, result)]
    return []


def settings_record(settings: RefutationSettings, oracle: StockfishOracle) -> dict[str, Any]:
    return {**asdict(settings), "engine": oracle.engine_id, "limit": oracle.limit_key}


__all__ = [
    "Edit",
    "EditCheck",
    "RefutationSettings",
    "StockfishOracle",
    "Verdict",
    "check_edit",
    "clean_evaluations",
    "find_refutation",
    "local_edits",
    "local_to_ply",
    "prefix_edits",
    "prefix_squares",
    "replay",
    "reply_deviation",
]

"""Corrupted twins of puzzles, for activation patching (the look-ahead paper's method).

Candidates are one-piece edits of the puzzle position (after the opponent's first move):
add a pawn or remove one, or move a non-pawn, non-king piece to an empty square. A
candidate must leave a valid position in which the solution's first move is still legal.
It is *accepted* when:

- the weak network barely notices: its log-odds of the first move change by < 0.2;
- the strong network's W − L falls by > 0.1 and its P(first move) falls below 0.1.

Among accepted candidates we choose the one whose weak-network policy moves least (smallest
Jensen–Shannon divergence over the union of both positions' legal moves), and drop the
puzzle when even that JSD exceeds 0.2.

Corrupted positions have no move history (they never occurred): both networks see them as
lc0 sees a bare FEN (``history="lc0"`` on a board without moves).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import chess

from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import evaluate
from leelalab.puzzles.reader import Puzzle


@dataclass(frozen=True)
class CorruptionThresholds:
    weak_log_odds_change: float = 0.2
    strong_q_drop: float = 0.1
    strong_max_prob: float = 0.1
    max_jsd: float = 0.2


@dataclass(frozen=True)
class Corruption:
    fen: str
    """The corrupted puzzle position (side to move = the solver), written with its
    en-passant square even when no capture is legal: lc0 (and the search that scored it)
    sees that square, and un-pushes the pawn when filling the history."""
    squares: list[str]
    """Edited squares (one for an added or removed pawn; from and to for a moved piece)."""
    kind: str
    """``"add_pawn"``, ``"remove_pawn"`` or ``"move_piece"``."""
    weak_log_odds_change: float
    strong_q_drop: float
    strong_prob: float
    weak_jsd: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def candidate_edits(
    board: chess.Board, first_move: chess.Move
) -> list[tuple[chess.Board, list[str], str]]:
    """Every valid one-piece edit of ``board`` in which ``first_move`` stays legal."""
    candidates = []
    empty = [s for s in chess.SQUARES if board.piece_at(s) is None]
    touched = {first_move.from_square, first_move.to_square}

    def keep(edited: chess.Board, squares: list[int], kind: str) -> None:
        edited.clear_stack()
        if edited.is_valid() and first_move in edited.legal_moves:
            candidates.append((edited, [chess.square_name(s) for s in squares], kind))

    for square in empty:
        if chess.square_rank(square) in (0, 7) or square in touched:
            continue
        for color in chess.COLORS:
            edited = board.copy(stack=False)
            edited.set_piece_at(square, chess.Piece(chess.PAWN, color))
            keep(edited, [square], "add_pawn")
    for square, piece in board.piece_map().items():
        if square in touched:
            continue
        if piece.piece_type == chess.PAWN:
            edited = board.copy(stack=False)
            edited.remove_piece_at(square)
            keep(edited, [square], "remove_pawn")
        elif piece.piece_type != chess.KING:
            for target in empty:
                if target in touched:
                    continue
                edited = board.copy(stack=False)
                edited.remove_piece_at(square)
                edited.set_piece_at(target, piece)
                keep(edited, [square, target], "move_piece")
    return candidates


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """JSD (natural log) between two move distributions, missing moves counting as 0."""
    total = 0.0
    # A fixed order: set order follows per-process string hashing, and float sums depend on
    # order, so the result would change in the last bit from one process to the next.
    for move in sorted(set(p) | set(q)):
        a, b = p.get(move, 0.0), q.get(move, 0.0)
        m = (a + b) / 2
        if a > 0:
            total += 0.5 * a * math.log(a / m)
        if b > 0:
            total += 0.5 * b * math.log(b / m)
    return total


def find_corruption(
    puzzle: Puzzle,
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    thresholds: CorruptionThresholds = CorruptionThresholds(),
    *,
    batch_size: int = 256,
) -> Corruption | None:
    """The best corruption of ``puzzle`` under the rules above, or ``None``."""
    board = puzzle.board(plies=1)
    first = chess.Move.from_uci(puzzle.moves[1])
    clean = board.copy(stack=False)  # compared like for like: no history on either side
    candidates = candidate_edits(board, first)
    if not candidates:
        return None
    boards = [clean] + [edited for edited, _, _ in candidates]
    strong_eval = evaluate(strong, boards, batch_size=batch_size)
    weak_eval = evaluate(weak, boards, batch_size=batch_size)
    best: Corruption | None = None
    uci = first.uci()
    for (edited, squares, kind), s, w in zip(
        candidates, strong_eval[1:], weak_eval[1:], strict=True
    ):
        weak_change = abs(
            _log_odds(w.policy.get(uci, 0.0)) - _log_odds(weak_eval[0].policy.get(uci, 0.0))
        )
        q_drop = strong_eval[0].q - s.q
        strong_prob = s.policy.get(uci, 0.0)
        if (
            weak_change >= thresholds.weak_log_odds_change
            or q_drop <= thresholds.strong_q_drop
            or strong_prob >= thresholds.strong_max_prob
        ):
            continue
        jsd = jensen_shannon(weak_eval[0].policy, w.policy)
        if best is None or jsd < best.weak_jsd:
            best = Corruption(
                edited.fen(en_passant="fen"), squares, kind, weak_change, q_drop, strong_prob, jsd
            )
    if best is None or best.weak_jsd > thresholds.max_jsd:
        return None
    return best


def stockfish_confirms(
    puzzle: Puzzle,
    corruption: Corruption,
    engine_path: str | None = None,
    *,
    depth: int = 14,
    min_drop_cp: int = 150,
) -> bool:
    """Whether Stockfish agrees that the first move stops working after the corruption.

    Compares Stockfish's evaluation (solver's point of view, centipawns; mates count as
    ±10000) of the position after the first move, clean versus corrupted: the corruption
    is confirmed when it costs at least ``min_drop_cp``.
    """
    from leelalab.engines import Limit, Stockfish

    first = chess.Move.from_uci(puzzle.moves[1])
    clean = puzzle.board(plies=1).copy(stack=False)
    corrupted = chess.Board(corruption.fen)
    solver = clean.turn
    scores = []
    # Stockfish's defaults (one thread, 16 MB hash); each search starts with a cleared hash.
    with Stockfish(engine_path, threads=1, hash_mb=16) as engine:
        for board in (clean, corrupted):
            board.push(first)
            line = engine.analyse(board, Limit(depth=depth))[0]
            scores.append(line.score(board.turn).pov(solver).score(mate_score=10_000))
    return scores[0] - scores[1] >= min_drop_cp

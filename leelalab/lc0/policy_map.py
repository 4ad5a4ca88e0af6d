"""lc0's 1858-entry policy index: moves, gather maps and board transforms.

Every lc0 network scores moves in one fixed list of 1858 move strings written in the frame of
the side to move (``POLICY_MOVES``). This module builds that list by rule, maps python-chess
moves into it the way lc0 v0.31 does (king-takes-rook castling, knight promotions sharing the
plain entry, black mirrored by rank, the canonical board transform applied last), and builds
the two gather maps that turn a raw policy head output into the 1858 logits:

* convolution policy: 80 planes of 8x8, flattened channel-major (``plane * 64 + from``);
* attention policy: 64x64 from-to logits followed by 8x8x3 promotion logits (4288 values).

Squares are numbered a1=0, b1=1, ..., h8=63 (python-chess and lc0 agree on this).
"""

from __future__ import annotations

import functools

import chess
import numpy as np

from leelalab.errors import MoveIndexError, PositionError

__all__ = [
    "FLIP", "MIRROR", "MOVE_INDEX", "NUM_MOVES", "POLICY_MOVES", "TRANSPOSE",
    "attention_policy_gather_index", "attention_policy_map", "conv_policy_gather_index",
    "conv_policy_map", "index_to_move", "legal_mask", "legal_move_indices",
    "legal_moves_and_indices", "move_to_index", "transform_square",
]  # fmt: skip

NUM_MOVES: int = 1858
FLIP: int = 1
MIRROR: int = 2
TRANSPOSE: int = 4

# (dfile, drank) in lc0's convolution-plane order: 8 queen directions, then 8 knight jumps.
_QUEEN_DIRS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1),
)  # fmt: skip
_KNIGHT_JUMPS: tuple[tuple[int, int], ...] = (
    (1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2),
)  # fmt: skip
# Promotion codes follow lc0's packed move (N=0, Q=1, R=2, B=3): a knight promotion packs like
# a plain move, which is exactly why it shares the plain from-to policy entry.
_PROMO_CODE: dict[int | None, int] = {
    None: 0, chess.KNIGHT: 0, chess.QUEEN: 1, chess.ROOK: 2, chess.BISHOP: 3,
}  # fmt: skip
_PROMO_CHARS = "qrb"  # codes 1, 2, 3; also the table's suffix order
_CONV_PROMO_ORDER = "rbq"  # planes 64-72 use a different order than the table


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _name(square: int) -> str:
    return chess.SQUARE_NAMES[square]


def _plane_targets(frm: int) -> list[tuple[int, int]]:
    """(conv plane, to-square) for the queen and knight moves from ``frm`` on an empty board."""
    f, r = frm % 8, frm // 8
    steps = [(7 * d + k - 1, df * k, dr * k) for d, (df, dr) in enumerate(_QUEEN_DIRS)
             for k in range(1, 8)]  # fmt: skip
    steps += [(56 + k, df, dr) for k, (df, dr) in enumerate(_KNIGHT_JUMPS)]
    return [(plane, frm + 8 * dr + df) for plane, df, dr in steps
            if 0 <= f + df < 8 and 0 <= r + dr < 8]  # fmt: skip


def _build_policy_moves() -> tuple[str, ...]:
    moves = [_name(frm) + _name(to) for frm in range(64)
             for to in sorted(to for _, to in _plane_targets(frm))]  # fmt: skip
    for f in range(8):
        for tf in range(max(f - 1, 0), min(f + 2, 8)):
            moves.extend(_name(48 + f) + _name(56 + tf) + p for p in _PROMO_CHARS)
    return tuple(moves)


POLICY_MOVES: tuple[str, ...] = _build_policy_moves()
MOVE_INDEX: dict[str, int] = {m: i for i, m in enumerate(POLICY_MOVES)}


def _key_table() -> np.ndarray:
    """Policy index by (from, to, promo code) in the transformed side-to-move frame, or -1."""
    table = np.full((64, 64, 4), -1, dtype=np.int64)
    for i, m in enumerate(POLICY_MOVES):
        code = 0 if len(m) == 4 else 1 + _PROMO_CHARS.index(m[4])
        table[chess.parse_square(m[:2]), chess.parse_square(m[2:4]), code] = i
    return _readonly(table)


_KEY_TABLE: np.ndarray = _key_table()


def _check_transform(transform: int) -> None:
    if not isinstance(transform, (int, np.integer)) or not 0 <= transform < 8:
        raise PositionError(
            f"transform must be an int in 0..7 (FLIP|MIRROR|TRANSPOSE), got {transform!r}"
        )


@functools.cache
def _transform_table() -> np.ndarray:
    """``[8, 64]``: square -> transformed square for each transform."""
    sq = np.arange(64)
    out = np.empty((8, 64), dtype=np.int64)
    for t in range(8):
        r, f = sq // 8, sq % 8
        # Order matters once TRANSPOSE is combined with FLIP or MIRROR; this is v0.31's order,
        # which matches its board bit transform (lc0 >= 0.32 differs, see the format notes §4.3).
        if t & FLIP:
            f = 7 - f
        if t & MIRROR:
            r = 7 - r
        if t & TRANSPOSE:
            r, f = 7 - f, 7 - r
        out[t] = r * 8 + f
    return _readonly(out)


def transform_square(square: int, transform: int) -> int:
    """Applies an lc0 v0.31 canonical board transform to one square.

    Args:
        square: Square index, a1=0 ... h8=63.
        transform: Bit set of ``FLIP`` (file -> 7-file), ``MIRROR`` (rank -> 7-rank) and
            ``TRANSPOSE`` ((rank r, file f) -> (7-f, 7-r)), applied in that order.

    Returns:
        The transformed square index.

    Raises:
        PositionError: If ``transform`` is not in 0..7.
        MoveIndexError: If ``square`` is not in 0..63.
    """
    _check_transform(transform)
    if not 0 <= square < 64:
        raise MoveIndexError(f"square must be in 0..63, got {square!r}")
    return int(_transform_table()[transform, square])


@functools.cache
def _real_board_table(turn: bool, transform: int) -> list[int]:
    """Flat list: ``(from * 64 + to) * 4 + promo`` in real-board squares -> policy index or -1.

    A plain list, because the per-move lookup in ``legal_moves_and_indices`` is a Python loop
    anyway and list indexing beats any numpy call there.
    """
    squares = np.arange(64) if turn == chess.WHITE else np.arange(64) ^ 56  # rank mirror
    squares = _transform_table()[transform, squares]
    return _KEY_TABLE[squares[:, None], squares[None, :], :].ravel().tolist()


def _move_keys(board: chess.Board, moves: list[chess.Move]) -> list[int]:
    """Real-board lookup keys, with castling rewritten as king-takes-rook."""
    king = board.king(board.turn)
    own_rooks = board.rooks & board.occupied_co[board.turn]
    keys = []
    for m in moves:
        frm, to = m.from_square, m.to_square
        # A king move onto its own rook is already Chess960-style castling; a two-file king
        # move is standard-chess castling, whose rook stands on the a- or h-file.
        if frm == king and not own_rooks & chess.BB_SQUARES[to] and abs(to - frm) == 2:
            to = (to & 56) | (7 if to > frm else 0)
        code = _PROMO_CODE.get(m.promotion)
        # -1 flags a promotion lc0 cannot express (e.g. to a king in variant boards).
        keys.append(-1 if code is None else (frm * 64 + to) * 4 + code)
    return keys


def _no_entry(board: chess.Board, move: chess.Move, transform: int) -> MoveIndexError:
    return MoveIndexError(
        f"move {move.uci()} has no lc0 policy index under transform {transform} "
        f"in position {board.fen()}"
    )


def legal_moves_and_indices(
    board: chess.Board, transform: int = 0
) -> tuple[list[chess.Move], np.ndarray]:
    """Lists the legal moves of a position with their lc0 policy indices.

    Args:
        board: The position; the side to move is ``board.turn``.
        transform: The position's canonical transform (0 for non-canonical input formats).

    Returns:
        The legal moves in ``board.legal_moves`` order and an int64 array of their indices.

    Raises:
        PositionError: If ``transform`` is not in 0..7.
        MoveIndexError: If a legal move has no entry (only possible for a promotion under a
            transform lc0 never picks when pawns are on the board).
    """
    _check_transform(transform)
    moves = list(board.legal_moves)
    return moves, legal_move_indices(board, moves, transform)


def legal_move_indices(
    board: chess.Board, moves: list[chess.Move], transform: int = 0
) -> np.ndarray:
    """The lc0 policy indices of ``moves``, legal moves of ``board`` (not checked).

    What :func:`legal_moves_and_indices` returns for ``list(board.legal_moves)``; lets one
    move generation serve several transforms.

    Raises:
        PositionError: If ``transform`` is not in 0..7.
        MoveIndexError: If a move has no entry.
    """
    _check_transform(transform)
    table = _real_board_table(board.turn, int(transform))
    keys = _move_keys(board, moves)
    indices = np.array([table[k] if k >= 0 else -1 for k in keys], dtype=np.int64)
    if indices.size and indices.min() < 0:
        raise _no_entry(board, moves[int(np.argmin(indices))], transform)
    return indices


def _parse_move(board: chess.Board, move: chess.Move | str) -> chess.Move:
    try:
        parsed = board.parse_uci(move if isinstance(move, str) else move.uci())
    except (ValueError, AttributeError) as exc:
        raise MoveIndexError(f"{move!r} is not a legal move in position {board.fen()}") from exc
    # parse_uci accepts the null move "0000", which has no policy entry.
    if not parsed:
        raise MoveIndexError(f"{move!r} is not a legal move in position {board.fen()}")
    return parsed


def move_to_index(board: chess.Board, move: chess.Move | str, transform: int = 0) -> int:
    """Returns lc0's policy index of a legal move.

    Args:
        board: The position the move is played in.
        move: A ``chess.Move`` or UCI string. Castling may be given as king-to-destination
            (``e1g1``) or, on Chess960 boards, king-to-rook.
        transform: The position's canonical transform (0 for non-canonical input formats).

    Returns:
        The index into the 1858 policy entries.

    Raises:
        MoveIndexError: If the move is not legal on ``board`` or has no policy entry.
        PositionError: If ``transform`` is not in 0..7.
    """
    _check_transform(transform)
    parsed = _parse_move(board, move)
    key = _move_keys(board, [parsed])[0]
    index = _real_board_table(board.turn, int(transform))[key] if key >= 0 else -1
    if index < 0:
        raise _no_entry(board, parsed, transform)
    return index


def index_to_move(board: chess.Board, index: int, transform: int = 0) -> chess.Move:
    """Returns the legal move of ``board`` that has policy index ``index``.

    Args:
        board: The position.
        index: An index in 0..1857.
        transform: The position's canonical transform (0 for non-canonical input formats).

    Returns:
        The legal move, in python-chess conventions (castling as ``e1g1`` in standard chess).

    Raises:
        MoveIndexError: If no legal move has that index.
        PositionError: If ``transform`` is not in 0..7.
    """
    moves, indices = legal_moves_and_indices(board, transform)
    hits = np.flatnonzero(indices == index)
    if hits.size == 0:
        raise MoveIndexError(
            f"no legal move has policy index {index!r} under transform {transform} "
            f"in position {board.fen()}"
        )
    return moves[int(hits[0])]


def legal_mask(board: chess.Board, transform: int = 0) -> np.ndarray:
    """Returns a mask of the policy entries of the legal moves.

    Args:
        board: The position.
        transform: The position's canonical transform (0 for non-canonical input formats).

    Returns:
        Bool ``[1858]``, True exactly at the indices of the legal moves.
    """
    mask = np.zeros(NUM_MOVES, dtype=bool)
    mask[legal_moves_and_indices(board, transform)[1]] = True
    return mask


@functools.cache
def conv_policy_map() -> np.ndarray:
    """Returns lc0's convolution-policy map (``kConvPolicyMap``), built by rule.

    Planes 0-55 are queen moves (``7 * direction + distance - 1``, directions N, NE, E, SE, S,
    SW, W, NW), 56-63 knight jumps, 64-72 the q/r/b promotions as ``64 + 3 * (dfile + 1) +
    {r: 0, b: 1, q: 2}``. Knight promotions use the plain N/NE/NW distance-1 planes.

    Returns:
        Read-only int64 ``[73 * 64]``: flat ``plane * 64 + from`` -> policy index, or -1.
    """
    out = np.full(73 * 64, -1, dtype=np.int64)
    for frm in range(64):
        for plane, to in _plane_targets(frm):
            out[plane * 64 + frm] = MOVE_INDEX[_name(frm) + _name(to)]
    for frm in range(48, 56):  # promotions start on rank 7 only
        for df in (-1, 0, 1):
            if 0 <= frm % 8 + df < 8:
                for p, piece in enumerate(_CONV_PROMO_ORDER):
                    move = _name(frm) + _name(frm + 8 + df) + piece
                    out[(64 + 3 * (df + 1) + p) * 64 + frm] = MOVE_INDEX[move]
    return _readonly(out)


@functools.cache
def attention_policy_map() -> np.ndarray:
    """Returns lc0's attention-policy map (``kAttnPolicyMap``), built by rule.

    Returns:
        Read-only int64 ``[4288]``: ``from * 64 + to`` -> index of that queen/knight move, and
        ``4096 + 24 * from_file + 3 * to_file + p`` (p: q=0, r=1, b=2) -> index of that
        rank-7 to rank-8 promotion; -1 where lc0 has no such move.
    """
    out = np.full(4096 + 192, -1, dtype=np.int64)
    plain = _KEY_TABLE[:, :, 0]
    out[:4096] = plain.ravel()
    # Rank-7 to rank-8 promotions; the from/to ranks are implied, so only files index them.
    promos = _KEY_TABLE[48:56, 56:64, 1:4]  # [from_file, to_file, q/r/b]
    out[4096:] = promos.ravel()
    return _readonly(out)


def _invert(mapping: np.ndarray) -> np.ndarray:
    gather = np.full(NUM_MOVES, -1, dtype=np.int64)
    positions = np.flatnonzero(mapping >= 0)
    gather[mapping[positions]] = positions
    return _readonly(gather)


@functools.cache
def conv_policy_gather_index() -> np.ndarray:
    """Returns where each policy index sits in the flattened convolution-policy output.

    ``logits = conv_out.reshape(batch, -1)[:, conv_policy_gather_index()]`` turns the
    ``(batch, 80, 8, 8)`` channel-major head output into the 1858 lc0 logits (planes 73-79 are
    never gathered).

    Returns:
        Read-only int64 ``[1858]`` of positions ``plane * 64 + from``.
    """
    return _invert(conv_policy_map())


@functools.cache
def attention_policy_gather_index() -> np.ndarray:
    """Returns where each policy index sits in the 4288-long attention-policy vector.

    Returns:
        Read-only int64 ``[1858]`` of positions (``from * 64 + to`` or ``4096 + ...``, see
        :func:`attention_policy_map`).
    """
    return _invert(attention_policy_map())

"""Board -> lc0 input planes (112 x 8 x 8), bit-identical to lc0 v0.31's encoder.

Frames: plane ``p``, square ``s`` lives at ``tensor[p, s // 8, s % 8]`` with ``s = 8 * rank +
file`` in the *side-to-move frame*: when black is to move every board is mirrored vertically
(rank r -> 7 - r) and colours are swapped, so planes 0-5 always hold the mover's pieces.
Canonical formats (>= 3) then apply the board symmetry returned by :func:`choose_transform`.

History modes:

* ``"lc0"``: what lc0 (and its Python bindings, ``HistoryFill=fen_only``) encodes for
  ``position fen <board.root()> moves <board.move_stack>``.
* ``"none"``: slot 0 (with its repetition plane) and the auxiliary planes; slots 1-7 zero.
* ``"repeat"``: what lc0 encodes from the current position's FEN alone with
  ``HistoryFill=always``. That FEN is ``board.fen(en_passant="xfen")`` for a board reached by
  moves (lc0 keeps the ep flag only if a pawn can pseudo-legally capture), or the root FEN
  itself for a board without moves. The repetition plane is therefore always 0.

lc0 v0.31 never terminates for the V2 formats (5, 133) when the walk back reaches synthesised
copies of a root whose rule-50 count is above 0: copies are never repeats, so it skips them
forever. We stop there and return the slots written so far (the limit of lc0's loop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import chess
import numpy as np

from leelalab.errors import PositionError
from leelalab.lc0.policy_map import FLIP, MIRROR, TRANSPOSE
from leelalab.lc0.weights.enums import InputFormat

__all__ = [
    "FLIP",
    "MIRROR",
    "TRANSPOSE",
    "HistoryMode",
    "LineEncoder",
    "board_from_fen_and_moves",
    "board_transforms",
    "choose_transform",
    "encode_board",
    "encode_boards",
    "rows_to_planes",
]

HistoryMode = Literal["lc0", "none", "repeat"]

NUM_PLANES = 112
_HISTORY_SLOTS = 8
_PLANES_PER_SLOT = 13
_AUX = 104
_ALL = (1 << 64) - 1
_FILES_A_TO_D = 0x0F0F0F0F0F0F0F0F
_RANKS_5_TO_8 = 0xFFFFFFFF00000000
_ABOVE_ANTIDIAGONAL = 0xE0C08000  # h2, g3, h3, f4, g4, h4
_ON_ANTIDIAGONAL = 0x10204080  # h1, g2, f3, e4
# Anti-diagonal transpose (r, f) -> (7 - f, 7 - r) as three block swaps: 4x4 blocks, then 2x2,
# then single squares; each swaps a block's lower-left quarter with its upper-right quarter.
_TRANSPOSE_STEPS = (
    (36, 0x000000000F0F0F0F, 0xF0F0F0F000000000),
    (18, 0x0000333300003333, 0xCCCC0000CCCC0000),
    (9, 0x0055005500550055, 0xAA00AA00AA00AA00),
)
_REVERSED_BYTE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))
_REVERSED_BYTE_NP = np.frombuffer(_REVERSED_BYTE, dtype=np.uint8)
_HISTORY_MODES = ("lc0", "none", "repeat")


# --- 64-bit board transforms on Python ints ---------------------------------------------------


def _mirror_int(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")


def _flip_int(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little").translate(_REVERSED_BYTE), "little")


def _transpose_int(v: int) -> int:
    for shift, low, high in _TRANSPOSE_STEPS:
        v = (v & ~(low | high) & _ALL) | ((v & low) << shift) | ((v & high) >> shift)
    return v


# --- parsing -----------------------------------------------------------------------------------


def board_from_fen_and_moves(fen: str, moves: Sequence[str] = ()) -> chess.Board:
    """Parses a FEN (or ``"startpos"``) and plays UCI moves on it.

    Chess960 FENs (Shredder-FEN or X-FEN castling fields) are recognised: if the position is
    only valid with Chess960 castling rules, the board is created in Chess960 mode.

    Args:
        fen: A FEN string, or ``"startpos"``.
        moves: UCI moves (``"e2e4"``, ``"e7e8q"``); castling as ``e1g1`` or king-takes-rook.

    Returns:
        The board; ``board.root()`` is the FEN position and ``board.move_stack`` the moves.

    Raises:
        PositionError: The FEN is malformed or describes an invalid position, or a move is
            malformed, a null move, or illegal.
    """
    text = chess.STARTING_FEN if fen.strip() == "startpos" else fen.strip()
    board = None
    status = chess.Status.VALID
    for chess960 in (False, True):
        try:
            candidate = chess.Board(text, chess960=chess960)
        except ValueError as exc:
            raise PositionError(f"invalid FEN {fen!r}: {exc}") from None
        status = candidate.status()
        if status == chess.Status.VALID:
            board = candidate
            break
    if board is None:
        problems = ", ".join(
            str(f.name).lower().replace("_", " ") for f in chess.Status if f & status
        )
        raise PositionError(f"invalid position {fen!r}: {problems}")
    for index, uci in enumerate(moves):
        try:
            move = board.parse_uci(uci)
        except chess.IllegalMoveError:
            problem = "is illegal"
        except ValueError:
            problem = "is not a UCI move"
        else:
            problem = "is a null move, which lc0 cannot encode" if not move else ""
        if problem:
            raise PositionError(f"move {index} ({uci!r}) {problem} in {board.fen()} (root {text})")
        board.push(move)
    return board


# --- canonical transform -----------------------------------------------------------------------


def choose_transform(board: chess.Board) -> int:
    """lc0's ``ChooseTransform``: the symmetry canonical input formats apply to the board.

    Computed on the current position in the side-to-move frame. Only meaningful for canonical
    formats (>= 3); :func:`board_transforms` returns 0 for the others.

    Args:
        board: The position.

    Returns:
        A combination of ``FLIP`` (files), ``MIRROR`` (ranks) and ``TRANSPOSE`` (anti-diagonal),
        applied to a bitboard in that order.
    """
    # Castling is not symmetric under any of the transforms.
    if board.clean_castling_rights():
        return 0
    black = board.turn == chess.BLACK

    def stm(v: int) -> int:
        return _mirror_int(v) if black else v

    king = stm(board.kings & board.occupied_co[board.turn])
    transform = 0
    if king & _FILES_A_TO_D:
        transform |= FLIP
        king = _flip_int(king)
    # Pawns only move up the board: any vertical or diagonal symmetry would change the game.
    if board.pawns:
        return transform
    if king & _RANKS_5_TO_8:
        transform |= MIRROR
        king = _mirror_int(king)
    if king & _ABOVE_ANTIDIAGONAL:
        return transform | TRANSPOSE
    if king & _ON_ANTIDIAGONAL:
        # King on the symmetry axis: transpose iff that makes the first asymmetric bitboard (in
        # lc0's order) numerically smaller.
        tie_breakers = (
            board.occupied,
            board.occupied_co[board.turn],
            board.kings,
            board.queens,
            board.rooks,
            board.knights,
            board.bishops,
        )
        for bitboard in tie_breakers:
            value = stm(bitboard)
            if transform & FLIP:
                value = _flip_int(value)
            if transform & MIRROR:
                value = _mirror_int(value)
            transposed = _transpose_int(value)
            if value != transposed:
                return transform | TRANSPOSE if value > transposed else transform
    return transform


# --- positions and history ---------------------------------------------------------------------


@dataclass(slots=True)
class _Position:
    """One position as lc0's ``Position`` sees it, in the real (white-at-bottom) frame.

    ``pieces`` holds 12 bitboards (white P N B R Q K, black P N B R Q K). ``ep_flag`` is lc0's
    en-passant flag: a bit at (rank 8 if the ep square is on rank 6, else rank 1, file of the
    ep square), or 0. ``key`` is what lc0's ``ChessBoard ==`` compares.
    """

    pieces: tuple[int, ...]
    white: bool
    castling: int
    ep_flag: int
    rule50: int
    key: tuple[object, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.pieces, self.white, self.castling, self.ep_flag)


def _position(board: chess.Board, is_root: bool) -> _Position:
    black, white = board.occupied_co  # indexed by colour: BLACK = 0
    kinds = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    pieces = tuple(k & white for k in kinds) + tuple(k & black for k in kinds)
    ep, ep_flag = board.ep_square, 0
    # lc0 v0.31 trusts a FEN's ep square (ranks 3/6) but after a move keeps the flag only if a
    # pawn of the side to move attacks the square, ignoring pins.
    if ep is not None and (
        chess.square_rank(ep) in (2, 5) if is_root else board.has_pseudo_legal_en_passant()
    ):
        ep_flag = 1 << (chess.square_file(ep) + (56 if chess.square_rank(ep) == 5 else 0))
    return _Position(
        pieces, board.turn, board.clean_castling_rights(), ep_flag, board.halfmove_clock
    )


_STARTPOS_KEY = _position(chess.Board(), True).key


def _window(board: chess.Board, slots: int) -> tuple[list[_Position], bool]:
    """Positions oldest -> current covering ``slots`` slots and their repetition scans.

    lc0's repetition scan never looks past a position with rule50 = 0, so we walk back until we
    hold ``slots`` positions and the oldest one has rule50 = 0, or until the root.

    Returns:
        The positions, and whether the first of them is the game root.
    """
    total = len(board.move_stack)
    # A bounded first guess keeps long games cheap; the second pass (everything) always ends.
    for limit in (min(total, max(board.halfmove_clock, slots) + 32), total):
        copy = board.copy(stack=limit)
        out = [_position(copy, total == 0)]
        popped = 0
        while popped < limit and (len(out) < slots or out[-1].rule50 != 0):
            copy.pop()
            popped += 1
            out.append(_position(copy, popped == total))
        if (len(out) >= slots and out[-1].rule50 == 0) or popped == total:
            break
    out.reverse()
    return out, popped == total


def _repetitions(history: list[_Position]) -> list[int]:
    """lc0 ``ComputeLastMoveRepetitions`` for every position of ``history`` (oldest first)."""
    reps = [0] * len(history)
    for j, pos in enumerate(history):
        if pos.rule50 < 4:
            continue
        for k in range(j - 2, -1, -2):
            if history[k].key == pos.key:
                reps[j] = 1 + reps[k]
                break
            if history[k].rule50 < 2:
                break
    return reps


def _undo_ep(slot: list[int], ep_flag: int, black: bool) -> None:
    """Moves the double-pushed pawn back, in place, with lc0's wrapping 64-bit arithmetic."""
    # lc0 adds a constant in the drawn (side-to-move) frame; done there so that even boards
    # with an impossible ep square come out bit-identical.
    flag = _mirror_int(ep_flag) if black else ep_flag
    idx = flag.bit_length() - 1
    plane, delta = (
        (0, (1 << (idx + 8)) - (1 << (idx + 24)))
        if idx < 8
        else (6, (1 << (idx - 8)) - (1 << (idx - 24)))
    )
    drawn = _mirror_int(slot[plane]) if black else slot[plane]
    drawn = (drawn + delta) & _ALL
    slot[plane] = _mirror_int(drawn) if black else drawn


def _history_planes(
    board: chess.Board, fmt: InputFormat, mode: HistoryMode
) -> tuple[list[int], _Position]:
    """Masks of planes 0-103 (real frame, ours = current mover) and the current position."""
    if mode == "repeat":
        history, has_root = [_position(board, not board.move_stack)], True
    else:
        history, has_root = _window(board, _HISTORY_SLOTS if mode == "lc0" else 1)
    return _planes_from_window(history, has_root, fmt, mode)


def _planes_from_window(
    history: list[_Position], has_root: bool, fmt: InputFormat, mode: HistoryMode
) -> tuple[list[int], _Position]:
    """:func:`_history_planes` from the window of positions (oldest first) it walks."""
    reps = [0] if mode == "repeat" else _repetitions(history)
    current = history[-1]
    black = not current.white
    max_slots = 1 if mode == "none" else _HISTORY_SLOTS
    stop_at_startpos = mode == "lc0" and has_root and history[0].key == _STARTPOS_KEY
    masks = [0] * _AUX
    slot_index, idx = 0, len(history) - 1
    while slot_index < max_slots:
        # idx < 0 (a synthesised copy of the root) is only reached when history[0] is the root:
        # otherwise the window ends at a rule50 = 0 position or holds all 8 slots.
        pos, rep = (history[idx], reps[idx]) if idx >= 0 else (history[0], reps[0])
        synthesised = idx < 0
        if fmt.is_canonical:
            # Castling and pawn pushes cannot be undone; the transform may not hold past them.
            if pos.castling != current.castling:
                break
            if slot_index > 0 and pos.ep_flag:
                break
        if synthesised and stop_at_startpos:
            break
        if fmt.is_v2 and slot_index > 0 and rep == 0:
            if pos.rule50 == 0 or synthesised:
                break  # synthesised copies never repeat: lc0 0.31 would loop forever here
            idx -= 1
            continue
        ours, theirs = (
            (pos.pieces[6:], pos.pieces[:6]) if black else (pos.pieces[:6], pos.pieces[6:])
        )
        slot = [*ours, *theirs, _ALL if rep >= 1 else 0]
        if synthesised and pos.ep_flag:
            _undo_ep(slot, pos.ep_flag, black)
        base = slot_index * _PLANES_PER_SLOT
        masks[base : base + _PLANES_PER_SLOT] = slot
        if fmt.is_canonical and pos.rule50 == 0:
            break
        slot_index += 1
        idx -= 1
    return masks, current


def _aux_planes(board: chess.Board, current: _Position, fmt: InputFormat) -> list[int]:
    """Masks of planes 104-111 in the real frame (plane 109's value is set separately)."""
    black = not current.white
    sides = []
    for color, backrank in ((chess.WHITE, chess.BB_RANK_1), (chess.BLACK, chess.BB_RANK_8)):
        rooks = current.castling & backrank
        king = board.kings & board.occupied_co[color] & backrank
        # Chess960 included: the queenside rook is the one on the a-side of the king.
        queenside = rooks & (king - 1) if king else 0
        sides.append((queenside, rooks ^ queenside))
    (white_q, white_k), (black_q, black_k) = sides
    if fmt.has_castling_planes:
        aux = [white_q | black_q, white_k | black_k, 0, 0]
    else:
        (our_q, our_k), (their_q, their_k) = sides[::-1] if black else sides
        aux = [_ALL if x else 0 for x in (our_q, our_k, their_q, their_k)]
    plane_108 = current.ep_flag if fmt.is_canonical else _ALL if black else 0
    aux += [plane_108, _ALL, _ALL if fmt.is_armageddon and black else 0, _ALL]
    return aux


# --- batched encoding --------------------------------------------------------------------------


def _input_format(input_format: int) -> InputFormat:
    try:
        fmt = InputFormat(int(input_format))
    except ValueError:
        fmt = InputFormat.UNKNOWN
    if fmt == InputFormat.UNKNOWN:
        known = ", ".join(str(int(f)) for f in InputFormat if f)
        raise ValueError(f"unsupported lc0 input format {input_format!r}; known: {known}")
    return fmt


def _np_transpose(v: np.ndarray) -> np.ndarray:
    for shift, low, high in _TRANSPOSE_STEPS:
        s, lo, hi = np.uint64(shift), np.uint64(low), np.uint64(high)
        v = (v & np.uint64(~(low | high) & _ALL)) | ((v & lo) << s) | ((v & hi) >> s)
    return v


_NP_TRANSFORMS: tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...] = (
    (FLIP, lambda m: _REVERSED_BYTE_NP[m.view(np.uint8)].view(np.uint64)),
    (MIRROR, lambda m: m.byteswap()),
    (TRANSPOSE, _np_transpose),
)


def board_transforms(boards: Sequence[chess.Board], input_format: int) -> np.ndarray:
    """The canonical transform of each board (all 0 for non-canonical formats).

    Args:
        boards: B positions.
        input_format: lc0 input format number.

    Returns:
        int64 [B] of ``FLIP | MIRROR | TRANSPOSE`` combinations.
    """
    fmt = _input_format(input_format)
    if not fmt.is_canonical:
        return np.zeros(len(boards), dtype=np.int64)
    return np.array([choose_transform(b) for b in boards], dtype=np.int64).reshape(len(boards))


def encode_boards(
    boards: Sequence[chess.Board],
    input_format: int = 1,
    history: HistoryMode = "lc0",
    *,
    transforms: np.ndarray | None = None,
) -> np.ndarray:
    """Encodes a batch of positions (with their move stacks) as lc0 input planes.

    Args:
        boards: B positions; history comes from ``board.root()`` and ``board.move_stack``.
        input_format: lc0 input format (1, 2, 3, 4, 5, 132 or 133).
        history: ``"lc0"``, ``"none"`` or ``"repeat"`` (see the module docstring).
        transforms: the boards' :func:`board_transforms`, when the caller has them already
            (canonical formats only read them; computed here when ``None``).

    Returns:
        float32 [B, 112, 8, 8], indexed [board, plane, rank, file] in the side-to-move frame
        (canonical formats: after the board's transform).

    Raises:
        ValueError: Unknown input format or history mode.
    """
    fmt = _input_format(input_format)
    if history not in _HISTORY_MODES:
        raise ValueError(f"unknown history mode {history!r}; expected one of {_HISTORY_MODES}")
    rows = []
    for board in boards:
        masks, current = _history_planes(board, fmt, history)
        rows.append((masks + _aux_planes(board, current, fmt), current.rule50, not current.white))
    if not fmt.is_canonical:
        transforms = None
    elif transforms is None:
        transforms = board_transforms(boards, fmt)
    return _rows_to_planes(rows, transforms, fmt)


def _rows_to_planes(
    rows: Sequence[tuple[list[int], int, bool]], transforms: np.ndarray | None, fmt: InputFormat
) -> np.ndarray:
    """Planes from per-board ``(112 real-frame masks, rule50, black to move)`` rows and, for
    canonical formats, the boards' transforms."""
    count = len(rows)
    masks_np = np.array([row[0] for row in rows], dtype=np.uint64).reshape(count, NUM_PLANES)
    rule50 = np.array([row[1] for row in rows], dtype=np.float32).reshape(count)
    black = np.array([row[2] for row in rows], dtype=bool).reshape(count)
    # Real frame -> side-to-move frame: a vertical mirror is a byte swap.
    masks_np[black] = masks_np[black].byteswap()
    if fmt.is_canonical:
        assert transforms is not None
        body = masks_np[:, : _AUX + 5]  # planes 109-111 are constant
        for bit, apply in _NP_TRANSFORMS:  # lc0's order: flip, mirror, transpose
            sel = (transforms & bit) != 0
            if sel.any():
                body[sel] = apply(body[sel])
    as_bytes = masks_np.astype("<u8", copy=False).view(np.uint8).reshape(count, NUM_PLANES, 8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")
    planes = bits.reshape(count, NUM_PLANES, 8, 8).astype(np.float32)
    if fmt.is_hectoplies:
        rule50 /= np.float32(100)  # lc0: float(plies) / 100.0f
    planes[:, _AUX + 5] *= rule50[:, None, None]
    return planes


class LineEncoder:
    """:func:`encode_boards` for the successive positions of one game, move by move.

    Every position is read off the board once, when it is reached, instead of being
    rebuilt from the move stack for each encoded board (what :func:`encode_boards` does).
    The planes are identical to ``encode_boards`` on a copy of :attr:`board` at each step.

    Args:
        board: the game's root position; it must have no moves (the encoder owns it from
            now on and pushes the moves given to :meth:`push`).
    """

    def __init__(self, board: chess.Board) -> None:
        if board.move_stack:
            raise ValueError("LineEncoder needs a board without moves (the game root)")
        self.board = board
        self._positions = [_position(board, True)]

    def push(self, move: chess.Move) -> None:
        """Plays ``move`` (not checked for legality) on :attr:`board`."""
        self.board.push(move)
        self._positions.append(_position(self.board, False))

    def row(self, input_format: int, history: HistoryMode = "lc0") -> tuple[list[int], int, bool]:
        """The current position's encoding before the planes are unpacked; see
        :func:`rows_to_planes`."""
        fmt = _input_format(input_format)
        positions = self._positions
        last = len(positions) - 1
        if history == "repeat":
            window, has_root = positions[last:], True
        elif history in ("lc0", "none"):
            # _window's walk back: ``slots`` positions and the oldest one with rule50 = 0, or
            # the root.
            slots = _HISTORY_SLOTS if history == "lc0" else 1
            first = last
            while first > 0 and (last - first + 1 < slots or positions[first].rule50 != 0):
                first -= 1
            window, has_root = positions[first:], first == 0
        else:
            raise ValueError(f"unknown history mode {history!r}; expected one of {_HISTORY_MODES}")
        masks, current = _planes_from_window(window, has_root, fmt, history)
        return masks + _aux_planes(self.board, current, fmt), current.rule50, not current.white


def rows_to_planes(
    rows: Sequence[tuple[list[int], int, bool]],
    input_format: int = 1,
    transforms: np.ndarray | None = None,
) -> np.ndarray:
    """The planes of :meth:`LineEncoder.row` rows (float32 ``[B, 112, 8, 8]``).

    Args:
        rows: rows of one input format.
        input_format: that format.
        transforms: the boards' canonical transforms (:func:`board_transforms`), required
            for canonical formats.
    """
    fmt = _input_format(input_format)
    if fmt.is_canonical and transforms is None:
        raise ValueError(f"input format {int(fmt)} is canonical: pass the boards' transforms")
    return _rows_to_planes(rows, transforms, fmt)


def encode_board(
    board: chess.Board, input_format: int = 1, history: HistoryMode = "lc0"
) -> np.ndarray:
    """Encodes one position; see :func:`encode_boards`.

    Returns:
        float32 [112, 8, 8], indexed [plane, rank, file] in the side-to-move frame.
    """
    return encode_boards([board], input_format, history)[0]

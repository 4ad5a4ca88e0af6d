"""Cost of the residual-patching sweep against the naive sweep, measured in one run.

The naive sweep runs one full forward per (layer, square) for a batch of puzzles, patching
through the hook point (the look-ahead paper's code). leelalab's sweep caches both runs,
packs many (puzzle, square) patches into one batch and restarts each patched forward at the
patched layer. Both produce the same effects (checked here); the ratio of their wall times
is the figure to report (goal <= 0.6).

Usage::

    python scripts/bench_patching.py [--net maia-1900] [--dataset runs/sample] [--puzzles 16]
    python scripts/bench_patching.py --net synthetic:small-transformer

Without ``--dataset`` (or when it has no corruptions) the puzzles are shipped puzzles with a
random valid edit: the cost does not depend on how good the corruption is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from leelalab.inference.networks import load_network
from leelalab.patching.pairs import prepare_pairs
from leelalab.patching.residual import patch_residual_batch, patch_residual_naive
from leelalab.puzzles.dataset import load_dataset, random_edit_pairs
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path


def network_for(name: str):
    if name.startswith("synthetic:"):
        from leelalab.lc0.weights import save_weights
        from leelalab.lc0.weights.synthetic import TRANSFORMER_SHAPES, random_transformer_weights

        shape = TRANSFORMER_SHAPES[name.split(":", 1)[1]]
        path = Path(tempfile.mkdtemp()) / "net.pb.gz"
        save_weights(random_transformer_weights(seed=0, **shape), path)
        return load_network(path)
    return load_network(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--dataset", default="runs/sample")
    parser.add_argument("--puzzles", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    network = network_for(args.net)
    dataset = Path(args.dataset)
    source = "dataset"
    try:
        puzzles = load_dataset(dataset, corrupted_only=True, limit=args.puzzles)
    except Exception:
        puzzles = []
    if len(puzzles) < args.puzzles:
        source = "shipped puzzles + random edits"
        puzzles = random_edit_pairs(iter_puzzles(shipped_puzzles_path()), args.puzzles)
    pairs = prepare_pairs(network, puzzles)
    layers = list(range(network.n_layers))

    fast_times, naive_times = [], []
    fast = naive = None
    for _ in range(args.rounds):  # interleaved, so drifts in machine load hit both alike
        start = time.perf_counter()
        fast = patch_residual_batch(network, pairs, layers)
        fast_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        naive = patch_residual_naive(network, pairs, layers)
        naive_times.append(time.perf_counter() - start)
    assert fast is not None and naive is not None
    difference = float(np.abs(fast.effects["log_odds"] - naive).max())
    fast_s, naive_s = statistics.median(fast_times), statistics.median(naive_times)
    locations = len(puzzles) * len(layers) * 64
    print(
        f"{args.net}: {network.n_layers} layers, {len(puzzles)} puzzles ({source}), "
        f"{locations} (puzzle, layer, square) patches"
    )
    print(f"naive sweep     {naive_s:8.2f} s  ({locations / naive_s:8.0f} patches/s)")
    print(f"leelalab sweep  {fast_s:8.2f} s  ({locations / fast_s:8.0f} patches/s)")
    print(f"cost ratio leelalab / naive: {fast_s / naive_s:.2f} (goal <= 0.6)")
    print(
        f"patched forwards run: {fast.forwards} of {locations} "
        f"({locations - fast.forwards} identical patches skipped); "
        f"body layers run: {fast.layer_rows} of {locations * network.n_layers} naive"
    )
    print(f"max |effect difference| vs naive: {difference:.2e}")


if __name__ == "__main__":
    main()

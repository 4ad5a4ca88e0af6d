"""Speed of lc0's MCTS through leelalab's UCI driver against ``lc0 backendbench``.

For each node budget, a fresh lc0 process (cold NN cache) with
:data:`leelalab.engines.LC0_OPTIONS` searches the first solver position of
``--positions`` distinct shipped puzzles (no shared subtrees). The reference is
``lc0 backendbench`` at batch size 1 on one thread, measured right before and right after
each budget in the same run; the ratio is search nodes/s over that reference (1.0 = the
search costs nothing beyond the network evaluations; below 1 = UCI, tree and start-up
overhead). Repeats alternate, so slow drifts of a shared machine hit every budget alike.

    python scripts/bench_search.py [--net maia-1900] [--positions 12] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from leelalab.analyses.scoring import solver_positions
from leelalab.engines import Lc0Engine, find_lc0
from leelalab.engines.lc0 import backendbench
from leelalab.inference.networks import resolve_network
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--positions", type=int, default=12)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 32, 128, 512])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100, help="backendbench batches")
    args = parser.parse_args()
    binary = find_lc0()
    weights = str(resolve_network(args.net))
    boards = []
    for puzzle in iter_puzzles(shipped_puzzles_path()):
        boards.append(solver_positions(puzzle)[0])
        if len(boards) == args.positions:
            break
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.nodes}
    for _ in range(args.repeats):
        for nodes in args.nodes:
            before = backendbench(binary, weights, batches=args.batches)
            with Lc0Engine(weights, binary=binary) as engine:
                engine.best_move(boards[0], 1)  # load the network outside the timing
                started = time.perf_counter()
                for board in boards:
                    engine.best_move(board, nodes)
                seconds = time.perf_counter() - started
            after = backendbench(binary, weights, batches=args.batches)
            results[nodes].append((len(boards) / seconds, (before + after) / 2))
    print(f"{args.net}: {len(boards)} positions, {args.repeats} repeats (median), lc0 {binary}")
    print("nodes  positions/s  nodes/s  backendbench nps  ratio")
    for nodes, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        bench = statistics.median(b for _, b in runs)
        ratio = statistics.median(r * nodes / b for r, b in runs)
        print(f"{nodes:5d}  {rate:11.2f}  {rate * nodes:7.1f}  {bench:16.1f}  {ratio:5.2f}")


if __name__ == "__main__":
    main()

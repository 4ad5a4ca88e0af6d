"""Puzzle-filter throughput and memory on the shipped sample, against pure forward passes.

Prints, in one run:
- the full ``filter_puzzles`` pipeline (reading, line positions, both networks, filters,
  chunked writing): puzzles/s and positions/s;
- the pure forward throughput of the same two networks on the same number of positions
  (planes precomputed), and the pipeline/forward ratio (goal >= 0.8);
- peak RSS of the pipeline for growing row counts, each in a fresh subprocess (goal: flat).

``--threads 1`` on a 2-core machine leaves one core to the pipeline's Python side (reading,
boards, encoding, move generation), as a machine with more cores than torch threads would.

Usage: ``python scripts/bench_puzzles.py [--strong maia-1900] [--weak weak-maia-1900]
[--threads N]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import torch

from leelalab.inference.networks import load_network
from leelalab.lc0 import encoding
from leelalab.puzzles.filter import filter_puzzles, line_boards
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path

CHILD = """
import json, resource, sys, tempfile
from leelalab.inference.networks import load_network
from leelalab.puzzles.filter import filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path
strong, weak, limit = load_network(sys.argv[1]), load_network(sys.argv[2]), int(sys.argv[3])
out = tempfile.mkdtemp()
filter_puzzles(strong, weak, shipped_puzzles_path(), out, limit=limit, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": limit, "peak_rss_mb": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strong", default="maia-1900")
    parser.add_argument("--weak", default="weak-maia-1900")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for both measurements (default: torch's, = cores)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    strong, weak = load_network(args.strong), load_network(args.weak)
    source = shipped_puzzles_path()

    start = time.perf_counter()
    run = filter_puzzles(strong, weak, source, tempfile.mkdtemp(), progress=False)
    pipeline_seconds = time.perf_counter() - start
    puzzles = list(iter_puzzles(source))
    boards = [board for puzzle in puzzles for board in line_boards(puzzle)]
    positions = len(boards)

    planes = torch.from_numpy(encoding.encode_boards(boards, 1, "lc0"))
    start = time.perf_counter()
    with torch.no_grad():
        for network in (strong, weak):
            for i in range(0, positions, 256):
                network(planes[i : i + 256].contiguous(memory_format=torch.channels_last))
    forward_seconds = time.perf_counter() - start

    print(
        f"shipped sample: {run.counts['puzzles']} puzzles, {positions} line positions, 2 networks"
    )
    print(
        f"pipeline        {run.counts['puzzles'] / pipeline_seconds:8.0f} puzzles/s  "
        f"{2 * positions / pipeline_seconds:8.0f} network positions/s  ({pipeline_seconds:.1f} s)"
    )
    print(
        f"pure forward    {'':8s}             {2 * positions / forward_seconds:8.0f} network "
        f"positions/s  ({forward_seconds:.1f} s)"
    )
    print(f"pipeline / forward: {forward_seconds / pipeline_seconds:.2f}x (goal >= 0.8)\n")
    print("peak RSS of the pipeline, fresh process per row count:")
    for rows in (500, 2000, 4935):
        result = subprocess.run(
            [sys.executable, "-c", CHILD, args.strong, args.weak, str(rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        record = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"  {record['rows']:5d} rows: {record['peak_rss_mb']:7.0f} MB")


if __name__ == "__main__":
    main()

"""Speed and memory of anomaly detection as the number of positions grows.

Each row runs in a fresh process on N positions (2,000 distinct random-game positions with
their history, cycled to N: speed does not depend on which positions they are):

- feature extraction (every residual hook, float16, logit lens on unless ``--no-lens``) in
  positions/s, against a plain forward of the same positions read the same way (replayed
  from the task file, encoded, run through the network at the same batch size) measured in
  the same process just before and just after; the goal is a ratio of at least 0.7;
- fit and score times of Mahalanobis and QUE (trusted = the first 60%, pool = the next 10%,
  scored = the last 30%), streamed from disk;
- peak RSS of the process (goal: < 2 GB and flat in N). The ``0`` row only loads the network.

Usage: ``python scripts/bench_anomaly.py [--net maia-1900] [--sizes 0 10000 50000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[4]))
from leelalab.inference.networks import load_network
from leelalab.lc0 import encoding
from leelalab.models.evaluation import run_network
net_name, n, lens = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
network = load_network(net_name)
record = {"positions": n, "lens": lens}
if n > 0:
    import random
    import chess
    from leelalab.anomaly.detectors import make_detector
    from leelalab.anomaly.features import (
        FeatureSettings,
        FeatureStore,
        FeatureView,
        extract_features,
    )
    from leelalab.anomaly.positions import load_task, position_of, write_task
    rng = random.Random(0)
    boards = []
    while len(boards) < 2000:
        board = chess.Board()
        for _ in range(rng.randrange(4, 60)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if not board.is_game_over():
            boards.append(board)
    directory = Path(tempfile.mkdtemp())
    def split(i):
        return "trusted" if i < 0.6 * n else "pool" if i < 0.7 * n else "test"
    positions = [
        position_of(boards[i % len(boards)], split=split(i), anomalous=False, kind="random",
                    group=str(i))
        for i in range(n)
    ]
    write_task(directory / "task", positions, {"task": "bench", "network_sha256": network.sha256})
    task = load_task(directory / "task")

    def plain(count):
        # The same positions read the same way (replayed from the task), encoded, forwarded.
        start = time.perf_counter()
        for first in range(0, count, 128):
            chunk = task.boards(range(first, min(first + 128, count)))
            run_network(network, encoding.encode_boards(chunk, 1, "lc0"))
        return count / (time.perf_counter() - start)

    reference = [plain(min(n, 4096))]
    start = time.perf_counter()
    path = extract_features(network, task, FeatureSettings(lens=lens), progress=False)
    extraction = n / (time.perf_counter() - start)
    reference.append(plain(min(n, 4096)))
    record["plain_forward_pos_s"] = float(np.mean(reference))
    record["extraction_pos_s"] = extraction
    record["ratio"] = extraction / record["plain_forward_pos_s"]
    record["features_gb"] = path.stat().st_size / 2**30
    record["extract_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = FeatureStore(path)
    trusted = FeatureView(store, task.indices("trusted"))
    pool = FeatureView(store, task.indices("pool"))
    scored = FeatureView(store, task.indices("test"))
    for name in ("mahalanobis", "que"):
        detector = make_detector(name)
        start = time.perf_counter()
        detector.fit(trusted, pool)
        record[f"{name}_fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        detector.score(scored)
        record[f"{name}_score_s"] = time.perf_counter() - start
    import shutil
    shutil.rmtree(directory)
record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(record))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 50_000])
    parser.add_argument("--no-lens", action="store_true", help="extract without the logit lens")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    args = parser.parse_args()
    lens = "0" if args.no_lens else "1"
    print(f"{args.net}: all residual hooks (float16), logit lens {'off' if args.no_lens else 'on'}")
    header = ["positions", "plain pos/s", "extract pos/s", "ratio", "features GB",
              "Mahalanobis fit/score s", "QUE fit/score s", "peak RSS MB"]  # fmt: skip
    rows = [header]
    for size in args.sizes:
        output = subprocess.run(
            [sys.executable, "-c", CHILD, args.net, str(size), lens, str(args.threads)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        record = json.loads(output.strip().splitlines()[-1])
        if size == 0:
            rows.append(
                ["0 (network only)", "", "", "", "", "", "", f"{record['peak_rss_mb']:.0f}"]
            )
            continue
        rows.append(
            [
                str(size),
                f"{record['plain_forward_pos_s']:.0f}",
                f"{record['extraction_pos_s']:.0f}",
                f"{record['ratio']:.2f}",
                f"{record['features_gb']:.2f}",
                f"{record['mahalanobis_fit_s']:.1f} / {record['mahalanobis_score_s']:.1f}",
                f"{record['que_fit_s']:.1f} / {record['que_score_s']:.1f}",
                f"{record['peak_rss_mb']:.0f}",
            ]
        )
        print(json.dumps(record), file=sys.stderr)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()

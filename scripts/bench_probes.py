"""Memory and time of caching activations and training probes, as the dataset grows.

Each row runs in a fresh process: cache ``blocks.*.hook_resid_post`` of the network on the
first N puzzles of a filtered dataset (float16), then train the bilinear move3_target probe
(query: move1_target, 1 seed, no control) on every layer. Prints seconds for each stage and
the peak RSS of the process; the goal is a flat RSS (< 2 GB) as N grows. The baseline
``import`` row is the RSS of a process that only loads the network.

Usage: ``python scripts/bench_probes.py [--dataset runs/sample] [--net maia-1900]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from leelalab.inference.networks import load_network
dataset, net_name, limit, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
network = load_network(net_name)
record = {"puzzles": limit}
if limit > 0:
    from leelalab.probing.store import cache_activations
    from leelalab.probing.probes import ProbeConfig, train_probes
    out = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    store = cache_activations(network, dataset, ["blocks.*.hook_resid_post"], out / "acts.h5",
                              limit=limit, progress=False)
    record["cache_s"] = time.perf_counter() - start
    record["store_mb"] = store.stat().st_size / 2**20
    record["cache_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    config = ProbeConfig(seeds=[0], control=False, memory_budget_mb=budget)
    train_probes(store, out / "probe", config, progress=False)
    record["train_s"] = time.perf_counter() - start
record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(record))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="runs/sample")
    parser.add_argument("--net", default="maia-1900")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 500, 2000, 4935])
    parser.add_argument("--memory-budget", type=int, nargs="+", default=[256, 8], metavar="MB")
    args = parser.parse_args()
    if not (Path(args.dataset) / "dataset.jsonl").is_file():
        sys.exit(f"{args.dataset}: run `leelalab puzzles filter --output {args.dataset}` first")
    print(f"{args.net} on {args.dataset}: cache all layers (float16), bilinear probe per layer")
    header = [
        "budget MB",
        "puzzles",
        "cache s",
        "train s",
        "store MB",
        "RSS after cache",
        "peak RSS",
    ]
    print("  ".join(f"{h:>15}" for h in header))
    for budget in args.memory_budget:
        for size in args.sizes:
            result = subprocess.run(
                [sys.executable, "-c", CHILD, args.dataset, args.net, str(size), str(budget)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            cells = [
                str(budget),
                "import only" if size == 0 else str(size),
                f"{r.get('cache_s', 0):.1f}",
                f"{r.get('train_s', 0):.1f}",
                f"{r.get('store_mb', 0):.1f}",
                f"{r.get('cache_rss_mb', r['peak_rss_mb']):.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            print("  ".join(f"{c:>15}" for c in cells))


if __name__ == "__main__":
    main()

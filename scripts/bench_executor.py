"""Ray executor versus local on the same long jobs, in one run.

Jobs on maia-1900 (and the shipped weak net):
- ``puzzles filter`` on the first N shipped puzzles (both networks along every line);
- the same on 16 puzzles (one chunk): the fixed per-run cost of starting Ray workers;
- ``patch residual`` on M puzzles paired with random one-piece edits (6 layers × 64 squares).

Runners, each on a fresh output directory, timed end to end (reading, computing, writing,
merging), Ray's start excluded (``ray.init`` once, timed apart):
- local: this process, torch's default threads;
- ray ×1: one worker with the driver's thread count (outputs identical to local);
- ray ×2: two workers, one thread each (uses both cores without oversubscribing);
- ray ×2, driver threads: two workers with the driver's thread count each (identical outputs,
  oversubscribed on 2 cores).
Each runner's outputs are compared byte for byte with the local run's.

    python scripts/bench_executor.py [--puzzles 4935] [--pairs 91] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from leelalab.inference.networks import load_network
from leelalab.patching.residual import run_residual_patching
from leelalab.patching.settings import ResidualPatchingSettings
from leelalab.puzzles.dataset import random_edit_pairs, write_pairs_dataset
from leelalab.puzzles.filter import filter_puzzles
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path
from leelalab.runs.executor import Executor


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puzzles", type=int, default=4935, help="puzzles filtered")
    parser.add_argument("--pairs", type=int, default=91, help="puzzles patched")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per runner")
    args = parser.parse_args()

    import ray

    strong, weak = load_network("maia-1900"), load_network("weak-maia-1900")
    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    dataset = work / "pairs"
    write_pairs_dataset(
        dataset, random_edit_pairs(iter_puzzles(shipped_puzzles_path()), args.pairs, seed=0)
    )

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    cpus = int(ray.cluster_resources().get("CPU", 1))

    runners = {
        "local": Executor(),
        "ray ×1": Executor(kind="ray", workers=1),
        "ray ×2, 1 thread": Executor(kind="ray", workers=2, threads_per_worker=1),
        f"ray ×2, {threads} threads": Executor(kind="ray", workers=2),
    }

    def filtering(limit: int, chunk_size: int) -> Callable[[Executor, Path], Path]:
        def run(executor: Executor, out: Path) -> Path:
            result = filter_puzzles(
                strong,
                weak,
                shipped_puzzles_path(),
                out,
                limit=limit,
                chunk_size=chunk_size,
                progress=False,
                executor=executor,
            )
            return result.output / "dataset.jsonl"

        return run

    jobs: dict[str, Callable[[Executor, Path], Path]] = {
        "puzzles filter": filtering(args.puzzles, 128),
        # One 16-puzzle chunk: almost all of a Ray run's time is then the per-run start
        # (worker processes, imports, network loading), which longer jobs amortise.
        "start-up (filter, 16 puzzles)": filtering(16, 16),
        "patch residual": lambda executor, out: run_residual_patching(
            strong,
            dataset,
            out,
            ResidualPatchingSettings(chunk_size=8),
            progress=False,
            executor=executor,
        ),
    }
    results: dict[str, dict[str, list[float]]] = {job: {r: [] for r in runners} for job in jobs}
    identical: dict[str, dict[str, bool]] = {job: {} for job in jobs}
    for round_number in range(args.rounds):
        for job, run in jobs.items():
            reference = None
            for name, executor in runners.items():
                out = work / f"{job.replace(' ', '-')}-{round_number}-{len(results[job][name])}"
                out = out.with_name(out.name + name.replace(" ", "").replace("×", "x"))
                began = time.perf_counter()
                path = run(executor, out)
                results[job][name].append(time.perf_counter() - began)
                if name == "local":
                    reference = digest(path)
                else:
                    identical[job][name] = identical[job].get(name, True) and (
                        digest(path) == reference
                    )
                shutil.rmtree(out, ignore_errors=True)
    ray.shutdown()

    print(f"ray.init: {ray_start:.1f} s; CPUs Ray sees: {cpus}; driver torch threads: {threads}")
    print(f"filter: {args.puzzles} puzzles; patching: {args.pairs} pairs; {args.rounds} rounds\n")
    print("| job | runner | median s | vs local | identical to local |")
    print("|---|---|---:|---:|---|")
    for job, by_runner in results.items():
        local = statistics.median(by_runner["local"])
        for name, times in by_runner.items():
            median = statistics.median(times)
            same = "—" if name == "local" else ("yes" if identical[job][name] else "NO")
            print(f"| {job} | {name} | {median:.1f} | {median / local:.2f}× | {same} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

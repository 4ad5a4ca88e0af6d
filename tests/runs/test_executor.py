"""The executor seam: local and Ray runs give the same results, dead workers are retried,
bad chunks are reported once with their rows."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from leelalab.errors import LeelaLabError
from leelalab.runs.executor import FAULT_VARIABLE, ChunkJob, Executor, ExecutorError, map_chunks


class Squares(ChunkJob):
    """A job whose setup is expensive and must run once per worker."""

    def __init__(self, log: str) -> None:
        self.log = log

    def setup(self) -> dict:
        with open(self.log, "a") as handle:
            handle.write(f"setup {os.getpid()}\n")
        return {"offset": 1000}

    def compute(self, state: dict, payload: list[int]) -> list[int]:
        with open(self.log, "a") as handle:
            handle.write(f"compute {payload[0]}\n")
        if -1 in payload:
            raise LeelaLabError("row -1 is malformed")
        return [state["offset"] + value * value for value in payload]

    def describe_chunk(self, number: int, payload: list[int]) -> str:
        return f"chunk {number} (rows {payload[0]}–{payload[-1]})"


def chunks(n: int = 12, size: int = 3) -> list[tuple[int, list[int]]]:
    return [(i, list(range(i * size, (i + 1) * size))) for i in range(n)]


def collect(job: ChunkJob, executor: Executor, items=None) -> dict[int, list[int]]:
    results: dict[int, list[int]] = {}

    def write(number: int, result: list[int]) -> None:
        assert number not in results, "a chunk was written twice"
        results[number] = result

    map_chunks(job, items if items is not None else chunks(), write, executor)
    return results


def test_local_runs_every_chunk_in_order_with_one_setup(tmp_path: Path) -> None:
    log = tmp_path / "log"
    results = collect(Squares(str(log)), Executor())
    assert list(results) == list(range(12))
    assert results[2] == [1036, 1049, 1064]
    assert log.read_text().count("setup") == 1


def test_bad_chunk_is_reported_with_its_rows(tmp_path: Path) -> None:
    items = chunks(3) + [(3, [9, -1, 11])]
    with pytest.raises(LeelaLabError, match=r"chunk 3 \(rows 9–11\): row -1 is malformed"):
        collect(Squares(str(tmp_path / "log")), Executor(), items)


def test_executor_settings_are_checked() -> None:
    with pytest.raises(ExecutorError, match="unknown executor"):
        Executor(kind="dask")  # type: ignore[arg-type]
    with pytest.raises(ExecutorError, match="at least 1"):
        Executor(kind="ray", workers=0)


@pytest.mark.parametrize(
    ("cpus", "threads", "asked", "workers", "reserved"),
    [
        (2, 2, None, 1, 2),  # driver's 2 threads: one worker, not two fighting for 2 cores
        (2, 1, None, 2, 1),
        (32, 4, None, 8, 4),
        (2, 2, 2, 2, 1),  # more workers than fit: asked for, so reserve 1 CPU (never hang)
        (1, 4, None, 1, 1),
    ],
)
def test_ray_workers_fill_the_cores_without_oversubscribing(
    cpus: int, threads: int, asked: int | None, workers: int, reserved: int
) -> None:
    from leelalab.runs.executor import _cpus_per_worker, _worker_count

    count = _worker_count(Executor(kind="ray", workers=asked), cpus, threads)
    assert count == workers
    assert _cpus_per_worker(cpus, count, threads) == reserved


def test_missing_ray_is_one_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ExecutorError, match=r'pip install "leelalab\[ray\]"'):
        collect(Squares(str(tmp_path / "log")), Executor(kind="ray"))


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    # Test-module classes travel by value: Ray workers cannot import this module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_results_with_one_setup_per_worker(ray_instance, tmp_path) -> None:
    local = collect(Squares(str(tmp_path / "local")), Executor())
    log = tmp_path / "ray"
    assert collect(Squares(str(log)), Executor(kind="ray", workers=2)) == local
    assert log.read_text().count("setup") == 2
    assert log.read_text().count("compute") == 12


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_chunk_retried(
    ray_instance, tmp_path, monkeypatch
) -> None:
    local = collect(Squares(str(tmp_path / "local")), Executor())
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_VARIABLE, f"5:{marker}")
    log = tmp_path / "ray"
    assert collect(Squares(str(log)), Executor(kind="ray", workers=2)) == local
    assert marker.exists(), "the fault was not injected"
    # The worker died as chunk 5 reached it (before the job ran); Ray restarted it, which
    # set the job up again, and the retried chunk ran there once and was written once.
    lines = log.read_text().splitlines()
    assert lines.count("compute 15") == 1
    assert sum(line.startswith("setup") for line in lines) == 3
    assert lines.index("compute 15") > [i for i, x in enumerate(lines) if "setup" in x][-1]


@pytest.mark.slow
def test_a_bad_chunk_on_ray_is_not_retried(ray_instance, tmp_path) -> None:
    log = tmp_path / "ray"
    items = chunks(3) + [(3, [9, -1, 11])]
    with pytest.raises(LeelaLabError, match=r"chunk 3 \(rows 9–11\): row -1 is malformed"):
        collect(Squares(str(log)), Executor(kind="ray", workers=2), items)
    assert log.read_text().count("compute 9\n") == 1

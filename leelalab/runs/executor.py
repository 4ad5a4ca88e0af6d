"""The one seam through which long jobs run their chunks: in this process, or on Ray.

A long job (puzzle filtering, corruption search, patching sweeps, activation caching, …)
is cut into fixed, numbered chunks that are pure functions of their inputs. It describes
its work as a :class:`ChunkJob`: ``setup()`` runs once per worker (load the networks),
``compute(state, payload)`` turns one chunk's payload into its result. :func:`map_chunks`
sends the chunks that are not done yet to the executor and hands every result back to the
driver, which writes it atomically under the chunk's number. Hence:

- **the same outputs** whatever the executor and the number of workers: chunk boundaries
  do not depend on them, and the merged output is assembled in chunk order;
- **one copy of each result**: only the driver writes, once per chunk number, so a chunk
  computed twice (a worker died after finishing it) is still written once, and workers
  need no shared disk with the driver;
- **resumable**: an interrupted run, local or Ray, leaves only whole chunk files; the rerun
  skips them;
- **failures**: a worker process that dies is restarted and its chunk retried (Ray actor
  restarts and task retries); an error raised by the chunk itself (bad data) is not
  retried — it is reported with the chunk's number and rows.

Ray is optional (``pip install "leelalab[ray]"``). ``ray`` with no address starts a local
Ray instance; ``address`` (or ``$RAY_ADDRESS``) joins a running cluster.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from leelalab.errors import LeelaLabError

ExecutorKind = Literal["local", "ray"]


class ExecutorError(LeelaLabError):
    """An executor could not start, or a chunk failed."""


@dataclass(frozen=True)
class Executor:
    """Where chunks run.

    Attributes:
        kind: ``"local"`` (this process; the default) or ``"ray"``.
        address: a Ray cluster to join (``ray start --head`` prints it); ``None`` uses
            ``$RAY_ADDRESS`` if set, else starts a local Ray instance.
        workers: Ray workers (actors), each loading the networks once; ``None``: as many
            as the CPUs Ray sees hold at ``threads_per_worker`` each.
        gpus_per_worker: GPUs Ray reserves per worker (fractions share a GPU).
        max_retries: how often a chunk whose worker died is retried.
        threads_per_worker: torch threads in each Ray worker (``None``: the driver's, which
            keeps outputs identical to a local run; fewer may be faster when workers share
            cores, at the price of last-bit differences for some batch shapes).
    """

    kind: ExecutorKind = "local"
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    max_retries: int = 3
    threads_per_worker: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise ExecutorError(f"unknown executor {self.kind!r}; choose local or ray")
        if self.workers is not None and self.workers < 1:
            raise ExecutorError("--workers must be at least 1")
        if self.gpus_per_worker < 0:
            raise ExecutorError("--gpus-per-worker must not be negative")

    def check_available(self) -> None:
        """Fail now, before any work, when the executor cannot run here (Ray missing)."""
        if self.kind == "ray":
            require_ray()

    def describe(self) -> dict[str, Any]:
        """What ``run.json`` records (informational: results do not depend on it)."""
        return {
            "kind": self.kind,
            "address": self.address,
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "threads_per_worker": self.threads_per_worker,
        }


LOCAL = Executor()


class ChunkJob(ABC):
    """The work of one long job, described so that any worker can redo any chunk.

    Subclasses hold only what a worker needs to rebuild its state (file paths, settings),
    never loaded networks: they are pickled to Ray workers.
    """

    @abstractmethod
    def setup(self) -> Any:
        """Once per worker: load networks and anything else every chunk needs."""

    @abstractmethod
    def compute(self, state: Any, payload: Any) -> Any:
        """One chunk's result from its payload; a pure function of them."""

    def describe_chunk(self, number: int, payload: Any) -> str:
        """How an error names the chunk (override to name its rows or puzzles)."""
        return f"chunk {number}"

    def portable(self) -> str | None:
        """Why this job cannot run on other processes, or ``None`` if it can."""
        return None


class FunctionJob(ChunkJob):
    """A plain function of a chunk, for jobs that only ever run in this process."""

    def __init__(self, compute: Callable[[Any], Any], why_local: str) -> None:
        self.function = compute
        self.why_local = why_local

    def setup(self) -> None:
        return None

    def compute(self, state: Any, payload: Any) -> Any:
        return self.function(payload)

    def portable(self) -> str | None:
        return self.why_local


def map_chunks(
    job: ChunkJob,
    chunks: Iterable[tuple[int, Any]],
    on_result: Callable[[int, Any], None],
    executor: Executor = LOCAL,
) -> None:
    """Compute every ``(number, payload)`` chunk and pass each result to ``on_result``.

    Results arrive in chunk order locally and in completion order on Ray; ``on_result``
    must therefore write by chunk number (as every job here does). ``chunks`` is consumed
    lazily, with a bounded number in flight, so long inputs stream.
    """
    if executor.kind == "local":
        state = job.setup()
        for number, payload in chunks:
            on_result(number, _compute_named(job, state, number, payload))
        return
    reason = job.portable()
    if reason is not None:
        raise ExecutorError(f"this job cannot run on Ray: {reason}")
    _map_on_ray(job, chunks, on_result, executor)


def _compute_named(job: ChunkJob, state: Any, number: int, payload: Any) -> Any:
    try:
        return job.compute(state, payload)
    except LeelaLabError as error:
        raise type(error)(f"{job.describe_chunk(number, payload)}: {error}") from None


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            'the ray executor needs the ray extra: pip install "leelalab[ray]"'
        ) from None
    return ray


def _start_ray(executor: Executor) -> Any:
    ray = require_ray()
    if not ray.is_initialized():
        address = executor.address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                ignore_reinit_error=True,
            )
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError…
            where = address or "a local Ray instance"
            raise ExecutorError(f"could not start or join {where}: {error}") from None
    return ray


def _worker_count(executor: Executor, cpus: int, threads: int) -> int:
    if executor.workers is not None:
        return executor.workers
    # As many workers as the cluster's CPUs hold at `threads` each: more would only
    # oversubscribe the cores (two 2-thread workers on 2 cores run 2-3x slower).
    return max(1, cpus // threads)


def _cpus_per_worker(cpus: int, count: int, threads: int) -> int:
    """Ray CPUs each worker reserves: its threads, so that Ray spreads workers over nodes
    by real cores; 1 when the user asked for more workers than the cluster holds that way
    (a reservation that cannot be met would leave workers waiting forever)."""
    return threads if count * threads <= cpus else 1


class _Worker:
    """A Ray actor: sets the job up once, then computes chunks."""

    def __init__(self, job: ChunkJob, threads: int | None, fault: str | None = None) -> None:
        self.fault = fault
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.job = job
        self.setup_error: LeelaLabError | None = None
        try:
            self.state = job.setup()
        except LeelaLabError as error:
            # Bad input (a network file this worker cannot read): report it with the first
            # chunk rather than let Ray restart the worker again and again.
            self.setup_error = error

    def compute(self, number: int, payload: Any) -> tuple[int, Any]:
        if self.fault:
            _inject_fault(self.fault, number)
        if self.setup_error is not None:
            raise self.setup_error
        return number, _compute_named(self.job, self.state, number, payload)

    def pid(self) -> int:
        return os.getpid()


def _driver_threads() -> int | None:
    """The driver's torch thread count: workers use it too, because some kernels (small
    batches on oneDNN) round differently with another thread count, and the outputs must
    not depend on the executor."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


FAULT_VARIABLE = "LEELALAB_FAULT_KILL_CHUNK"


def _inject_fault(spec: str, number: int) -> None:
    """Fault injection for tests: ``$LEELALAB_FAULT_KILL_CHUNK=N:MARKER`` in the driver's
    environment makes the worker that first starts chunk N kill its own process (once:
    MARKER records that it did)."""
    chunk, _, marker = spec.partition(":")
    if int(chunk) != number or not marker:
        return
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _map_on_ray(
    job: ChunkJob,
    chunks: Iterable[tuple[int, Any]],
    on_result: Callable[[int, Any], None],
    executor: Executor,
) -> None:
    ray = _start_ray(executor)
    threads = executor.threads_per_worker or _driver_threads()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = _worker_count(executor, cpus, threads or 1)
    actor = ray.remote(
        num_cpus=_cpus_per_worker(cpus, count, threads or 1),
        num_gpus=executor.gpus_per_worker,
        max_restarts=executor.max_retries,
        max_task_retries=executor.max_retries,
    )(_Worker)
    fault = os.environ.get(FAULT_VARIABLE)
    workers = [actor.remote(job, threads, fault) for _ in range(count)]
    pending: dict[Any, tuple[int, Any, int]] = {}
    idle = deque(range(count))
    iterator: Iterator[tuple[int, Any]] = iter(chunks)
    exhausted = False
    try:
        while True:
            while idle and not exhausted:
                try:
                    number, payload = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                slot = idle.popleft()
                pending[workers[slot].compute.remote(number, payload)] = (number, payload, slot)
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            number, payload, slot = pending.pop(done[0])
            idle.append(slot)
            try:
                result_number, result = ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if hasattr(error, "cause") else None
                if isinstance(cause, LeelaLabError):
                    raise type(cause)(str(cause)) from None
                raise ExecutorError(
                    f"{job.describe_chunk(number, payload)} failed on a Ray worker: "
                    f"{type(cause).__name__ if cause else 'error'}: {cause or error}"
                ) from None
            except ray.exceptions.RayActorError as error:
                raise ExecutorError(
                    f"{job.describe_chunk(number, payload)}: its Ray worker died more than "
                    f"{executor.max_retries} times ({error})"
                ) from None
            on_result(result_number, result)
    finally:
        for handle in workers:
            ray.kill(handle)

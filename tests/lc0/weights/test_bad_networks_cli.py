"""Damaged network files through the real command line: one clear line, exit status 1.

``python -m leelalab.cli info FILE`` and ``eval FILE --fen ...`` run as subprocesses (so an
escaping exception would print its traceback exactly as a user would see it) on fuzz cases
of the shipped weak network: the first rejected case of a few families, and one that loads
but overflows at evaluation (``NonFiniteOutputError``). Each run starts Python and torch, so
the sample is small; ``test_fuzz.py`` checks the same errors in-process on hundreds of files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from leelalab.errors import LeelaLabError, NonFiniteOutputError
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import load_weights
from leelalab.lc0.weights.mutations import FAMILIES, Original, mutation
from leelalab.models.evaluation import evaluate

WEAK_NETWORK = Path(__file__).resolve().parents[3] / "leelalab" / "data" / "weak-maia-1900.pb.gz"
FEN = "r3k2r/pppq1ppp/2np1n2/2b1p1B1/2B1P1b1/2NP1N2/PPPQ1PPP/R3K2R b KQkq - 4 8"
QUICK_FAMILIES = ("layer_encoding", "header_enum", "delete_submessage", "gzip_bomb")


@cache
def _original() -> Original:
    return Original(WEAK_NETWORK.read_bytes())


def _first_rejected(family: str, directory: Path, loader: Callable[[Path], object]) -> Path | None:
    """The first case of ``family`` that ``loader`` rejects, written to a file."""
    for index in range(FAMILIES.index(family), 40 * len(FAMILIES), len(FAMILIES)):
        case = mutation(_original(), index)
        path = directory / f"{family}-{index}{case.suffix}"
        if path.exists():
            return path  # found for the other loader already
        path.write_bytes(case.data)
        try:
            loader(path)
        except LeelaLabError:
            return path
        path.unlink()
    return None


def _runs(family: str, directory: Path) -> list[tuple[Path, list[str]]]:
    """``info`` on the first case ``load_weights`` rejects (what ``info`` reads), and ``eval``
    on that and on the first case ``load_network`` rejects (missing sub-messages, sizes)."""
    runs = []
    rejected = _first_rejected(family, directory, load_weights)
    if rejected is not None:
        runs.append((rejected, ["info", str(rejected)]))
        runs.append((rejected, ["eval", str(rejected), "--fen", FEN]))
    unbuildable = _first_rejected(family, directory, load_network)
    if unbuildable is not None and unbuildable != rejected:
        runs.append((unbuildable, ["eval", str(unbuildable), "--fen", FEN]))
    return runs


def _overflowing_case(directory: Path) -> Path:
    """The first layer_range case that loads but evaluates to NaN/inf."""
    import chess

    for index in range(FAMILIES.index("layer_range"), 200 * len(FAMILIES), len(FAMILIES)):
        case = mutation(_original(), index)
        path = directory / f"overflow-{index}{case.suffix}"
        path.write_bytes(case.data)
        try:
            evaluate(load_network(path), [chess.Board(FEN)])
        except NonFiniteOutputError:
            return path
        except LeelaLabError:
            pass
        path.unlink()
    raise AssertionError("no overflowing layer_range case in 200 tries")


def _run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "leelalab.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def _check_runs(runs: list[tuple[Path, list[str]]]) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(_run, [arguments for _, arguments in runs]))
    for (path, arguments), result in zip(runs, results, strict=True):
        command = f"leelalab {' '.join(arguments)}"
        assert "Traceback" not in result.stderr, f"{command}:\n{result.stderr}"
        assert result.returncode == 1, f"{command}: exit {result.returncode}\n{result.stderr}"
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"{command}:\n{result.stderr}"
        assert lines[0].startswith("leelalab: error: "), lines[0]
        assert str(path) in lines[0], lines[0]
        assert result.stdout == "", f"{command} printed {result.stdout!r}"


def test_bad_files_through_the_cli(tmp_path: Path) -> None:
    runs = [run for family in QUICK_FAMILIES for run in _runs(family, tmp_path)]
    overflow = _overflowing_case(tmp_path)
    runs.append((overflow, ["eval", str(overflow), "--fen", FEN]))
    assert {path.name.split("-")[0] for path, _ in runs} == {*QUICK_FAMILIES, "overflow"}
    assert sum(arguments[0] == "info" for _, arguments in runs) >= 3
    _check_runs(runs)

"""Fuzzing the network loader: damaged files load and evaluate finitely, or fail cleanly.

Every case is a deterministic mutation (:mod:`leelalab.lc0.weights.mutations`) of the
shipped weak network or of a small synthetic transformer, stored as a file and taken through
what ``leelalab info`` (``load_weights(...).describe()``) and ``leelalab eval``
(``load_network`` + ``evaluate``) do. The properties:

- only :mod:`leelalab.errors` errors escape, and their messages name the file;
- the build's catch-all ("please report a bug") never fires: the explicit checks cover it;
- a file that loads describes itself without UNKNOWN and evaluates to finite numbers (or
  raises ``NonFiniteOutputError``): never silent NaN/inf;
- each case takes under 2 s of CPU time (gzip bombs of 200 MB included).

``scripts/fuzz_weights.py`` runs the same checks on thousands of cases of maia-1900 too.
"""

from __future__ import annotations

import gzip
import math
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import chess
import pytest
import torch

from leelalab.errors import CorruptWeightsError, LeelaLabError, NonFiniteOutputError
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import encode_weights, load_weights
from leelalab.lc0.weights.mutations import FAMILIES, Original, mutation
from leelalab.lc0.weights.synthetic import random_transformer_weights
from leelalab.models.evaluation import evaluate

WEAK_NETWORK = Path(__file__).resolve().parents[3] / "leelalab" / "data" / "weak-maia-1900.pb.gz"
WEAK_CASES = 20 * len(FAMILIES)
TRANSFORMER_CASES = 4 * len(FAMILIES)
SECONDS_PER_CASE = 2.0
FENS = (
    chess.STARTING_FEN,
    "r3k2r/pppq1ppp/2np1n2/2b1p1B1/2B1P1b1/2NP1N2/PPPQ1PPP/R3K2R b KQkq - 4 8",
    "8/1P4k1/8/3pP3/8/8/6p1/4K3 w - d6 0 1",  # en passant, promotions both ways
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Hundreds of tiny forwards: a second thread only adds synchronisation (on a busy
    # machine, ~0.4 s per forward instead of 2 ms).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def weak_original() -> Original:
    return Original(WEAK_NETWORK.read_bytes())


@cache
def transformer_original() -> Original:
    weights = random_transformer_weights(seed=3, layers=2, d_model=32, heads=4)
    return Original(gzip.compress(encode_weights(weights), mtime=0))


def check_file(path: Path) -> str:
    """Take ``path`` through info and eval; return the outcome, asserting the properties."""
    name = str(path)
    try:
        description = str(load_weights(path).describe())
    except LeelaLabError as error:
        assert name in str(error), f"the error does not name the file: {error}"
    else:
        assert "UNKNOWN" not in description, description
    try:
        network = load_network(path)
        evaluations = evaluate(network, [chess.Board(fen) for fen in FENS])
    except NonFiniteOutputError as error:
        assert name in str(error), f"the error does not name the file: {error}"
        return "non-finite guarded"
    except LeelaLabError as error:
        assert name in str(error), f"the error does not name the file: {error}"
        assert "please report a bug" not in str(error), str(error)
        return "clean error"
    for evaluation in evaluations:
        numbers = [*evaluation.policy.values(), *evaluation.wdl]
        if evaluation.moves_left is not None:
            numbers.append(evaluation.moves_left)
        assert all(math.isfinite(number) for number in numbers), "silent NaN/inf outputs"
    return "loaded fine"


def _run_case(original: Original, index: int, tmp_path: Path) -> str:
    case = mutation(original, index, seed=0)
    path = tmp_path / f"case-{index}-{case.family}{case.suffix}"
    path.write_bytes(case.data)
    start = time.process_time()  # CPU time: what the case costs, whatever the machine's load
    outcome = check_file(path)
    seconds = time.process_time() - start
    assert seconds < SECONDS_PER_CASE, f"{case.family} ({case.detail}) took {seconds:.1f} s"
    return outcome


@pytest.mark.parametrize("index", range(WEAK_CASES))
def test_mutated_weak_network(index: int, tmp_path: Path) -> None:
    _run_case(weak_original(), index, tmp_path)


@pytest.mark.parametrize("index", range(TRANSFORMER_CASES))
def test_mutated_synthetic_transformer(index: int, tmp_path: Path) -> None:
    _run_case(transformer_original(), index, tmp_path)


def test_the_cases_cover_every_outcome(tmp_path: Path) -> None:
    # The fuzz cases must exercise the guards, not only bounce off the gzip check: among the
    # weak network's field-level cases some load, some fail, some overflow.
    families = ("layer_range", "header_enum", "bit_flip")
    outcomes = {
        _run_case(weak_original(), index, tmp_path)
        for index in range(len(FAMILIES) * 8)
        if FAMILIES[index % len(FAMILIES)] in families
    }
    assert outcomes == {"loaded fine", "clean error", "non-finite guarded"}


def test_a_gzip_bomb_of_zeros_fails_fast_and_small(tmp_path: Path) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    bomb = b"".join(compressor.compress(block) for _ in range(200)) + compressor.flush()
    path = tmp_path / "bomb.pb.gz"
    path.write_bytes(bomb)
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(CorruptWeightsError, match="field number 0") as caught:
            load_weights(path)
        seconds = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value)
    assert seconds < SECONDS_PER_CASE
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB allocated for a 200 MB bomb"

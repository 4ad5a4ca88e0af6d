"""Fuzz the network loader with thousands of damaged copies of real networks.

Each case (see :mod:`leelalab.lc0.weights.mutations`) is written to a file, then loaded
the way users load networks (``load_network``, which is what ``leelalab eval`` does, and
``load_weights(...).describe()``, which is what ``leelalab info`` does) and, if it loads,
evaluated on a few positions. Every case gets one outcome:

- ``loaded fine``: loads and evaluates to finite numbers (the damage was harmless, e.g. a
  flipped low bit of a weight, or a header relabelled to another valid value);
- ``clean error``: a :mod:`leelalab.errors` error whose message names the file;
- ``non-finite guarded``: loads, but the outputs overflow: ``NonFiniteOutputError``
  naming the file;
- ``raw exception``: anything else escaped (a bug);
- ``unnamed error``: a leelalab error whose message does not name the file (a bug);
- ``silent non-finite``: NaN/inf outputs came back without an error (a bug);
- ``UNKNOWN in info``: ``describe()`` printed UNKNOWN for a file that loads (a bug);
- ``safety net``: the catch-all of ``build_network`` fired (a gap in the explicit checks);

and ``slow`` counts the cases (of any outcome) that took more than 2 s of CPU time (CPU
rather than wall time: on a shared machine the neighbours' load would dominate wall time).

Usage: ``python scripts/fuzz_weights.py [--cases 3000] [--seed 0] [--net maia-1900 ...]``
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import chess
import torch

from leelalab.errors import LeelaLabError, NonFiniteOutputError
from leelalab.inference.networks import load_network, resolve_network
from leelalab.lc0.weights import load_weights
from leelalab.lc0.weights.mutations import FAMILIES, mutations
from leelalab.models.evaluation import evaluate

OUTCOMES = (
    "loaded fine",
    "clean error",
    "non-finite guarded",
    "raw exception",
    "unnamed error",
    "silent non-finite",
    "UNKNOWN in info",
    "safety net",
)
BAD_OUTCOMES = OUTCOMES[3:]
SLOW_SECONDS = 2.0
# White and black to move, castling rights, an en-passant square and promotions.
FENS = (
    chess.STARTING_FEN,
    "r3k2r/pppq1ppp/2np1n2/2b1p1B1/2B1P1b1/2NP1N2/PPPQ1PPP/R3K2R b KQkq - 4 8",
    "8/1P4k1/8/3pP3/8/8/6p1/4K3 w - d6 0 1",
)


def check_file(path: Path) -> tuple[str, str]:
    """``(outcome, message)`` for one file (see the module docstring)."""
    name = str(path)
    try:
        try:
            description = str(load_weights(path).describe())
        except LeelaLabError:
            description = ""
        network = load_network(path)
        evaluations = evaluate(network, [chess.Board(fen) for fen in FENS])
    except NonFiniteOutputError as error:
        return ("non-finite guarded" if name in str(error) else "unnamed error"), str(error)
    except LeelaLabError as error:
        if "please report a bug" in str(error):
            return "safety net", str(error)
        return ("clean error" if name in str(error) else "unnamed error"), str(error)
    except Exception as error:  # noqa: BLE001 - counting what escapes is the point
        return "raw exception", "".join(traceback.format_exception_only(error)).strip()
    numbers = [value for e in evaluations for value in (*e.policy.values(), *e.wdl)]
    numbers += [e.moves_left for e in evaluations if e.moves_left is not None]
    if not all(math.isfinite(value) for value in numbers):
        return "silent non-finite", "NaN/inf outputs"
    if "UNKNOWN" in description:
        return "UNKNOWN in info", description
    return "loaded fine", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000, help="cases per network")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--net", nargs="+", default=["maia-1900", "weak-maia-1900"])
    parser.add_argument("--bomb-mb", type=int, default=200, help="size of the gzip bombs")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--show", type=int, default=5, help="examples of each bad outcome")
    args = parser.parse_args()
    torch.set_num_threads(1)

    counts: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    slow: collections.Counter[tuple[str, str]] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    slowest: list[tuple[float, float, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leelalab-fuzz-") as tmp:
        for net in args.net:
            source = resolve_network(net).read_bytes()
            cases = mutations(
                source,
                args.cases,
                seed=args.seed,
                families=args.families,
                bomb_megabytes=args.bomb_mb,
            )
            for index, case in enumerate(cases):
                path = Path(tmp) / f"{net}-{index:05d}-{case.family}{case.suffix}"
                path.write_bytes(case.data)
                start, wall_start = time.process_time(), time.perf_counter()
                outcome, message = check_file(path)
                seconds = time.process_time() - start
                wall = time.perf_counter() - wall_start
                path.unlink()
                counts[(net, case.family)][outcome] += 1
                label = f"{net} #{index} {case.family}: {case.detail}"
                slowest.append((seconds, wall, label))
                if seconds > SLOW_SECONDS:
                    slow[(net, case.family)] += 1
                if outcome in BAD_OUTCOMES and len(examples[outcome]) < args.show:
                    examples[outcome].append(f"{label}\n      -> {message}")
                if (index + 1) % 500 == 0:
                    print(f"{net}: {index + 1} cases", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    header = ["network", "family", "cases", *OUTCOMES, "slow"]
    rows = []
    totals: collections.Counter[str] = collections.Counter()
    for (net, family), counter in sorted(
        counts.items(), key=lambda item: (item[0][0], FAMILIES.index(item[0][1]))
    ):
        total = sum(counter.values())
        totals.update(counter)
        totals["cases"] += total
        totals["slow"] += slow[(net, family)]
        rows.append(
            [
                net,
                family,
                str(total),
                *(str(counter[o]) for o in OUTCOMES),
                str(slow[(net, family)]),
            ]
        )
    rows.append(
        ["all", "", str(totals["cases"]), *(str(totals[o]) for o in OUTCOMES), str(totals["slow"])]
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    slowest.sort(reverse=True)
    print(f"\n{totals['cases']} cases in {elapsed:.0f} s; slowest cases (CPU s, wall s):")
    for seconds, wall, label in slowest[:5]:
        print(f"  {seconds:6.2f}  {wall:6.2f}  {label}")
    for outcome, lines in examples.items():
        print(f"\n{outcome}:")
        for line in lines:
            print(f"  {line}")
    bad = sum(totals[o] for o in BAD_OUTCOMES) + totals["slow"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

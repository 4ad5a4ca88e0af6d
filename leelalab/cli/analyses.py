"""CLI commands for the search-versus-pattern-recognition analyses (``leelalab analyze …``,
``leelalab plot analyses``): thin wrappers over :mod:`leelalab.analyses` and
:mod:`leelalab.plots.analyses`.

Each command maps its options one to one onto the experiment's settings (generated from the
settings class with :func:`~leelalab.runs.experiment.add_settings_options`), validates its
inputs, and only then opens its ``--output`` directory
(:class:`~leelalab.runs.results.RunDirectory`).

Other modules add their own subcommands to the same group through :func:`analyze_commands`
(the ``analyze`` group is created once, by whichever module asks first).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_group,
    add_no_progress,
    add_output,
    add_overwrite,
    note,
    print_table,
)
from leelalab.cli.figures import add_figure_overwrite, write_figures

_GROUP_ATTRIBUTE = "_leelalab_analyze_commands"


def analyze_commands(commands: Any) -> Any:
    """The subparsers of ``leelalab analyze`` (created on first use)."""
    existing = getattr(commands, _GROUP_ATTRIBUTE, None)
    if existing is None:
        _, existing = add_group(
            commands,
            "analyze",
            "search versus pattern recognition: behaviour and inside the network "
            "(figures: `leelalab plot analyses`)",
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
    from leelalab.errors import LeelaLabError
    from leelalab.puzzles.dataset import dataset_network

    recorded = (Path(args.directory) / "settings.json").is_file()
    paths = {}
    for name in ("strong", "weak"):
        given = args.net if name == "strong" else args.weak
        paths[name] = given or (dataset_network(args.directory, name) if recorded else None)
        if paths[name] is None:
            option = "--net" if name == "strong" else "--weak"
            raise LeelaLabError(
                f"{args.directory}: no {option} given and no filter settings.json to take it from"
            )
    return paths


def _dataset_record(directory: str) -> dict[str, Any]:
    """The dataset a derived table was computed from, for its run directory's settings."""
    from leelalab.runs.records import sha256_file

    path = Path(directory)
    return {"dataset": str(path.resolve()), "dataset_sha256": sha256_file(path / "dataset.jsonl")}


# ----------------------------------------------------------------------------- commands


def cmd_strata_patching(args: argparse.Namespace) -> int:
    from leelalab.analyses.effects import StrataPatchingSettings, run_strata_patching
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(StrataPatchingSettings, args)
    strong, weak = _strong_and_weak(args)
    results = run_strata_patching(
        settings,
        args.directory,
        args.output,
        strong,
        weak,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    counts = results.corruptions
    print(
        f"{counts['corrupted']} of {counts['selected']} puzzles (paper stratum + unfiltered "
        f"sample) have a corruption; patched {Path(args.output) / results.patching}"
    )
    return 0


def cmd_predictions(args: argparse.Namespace) -> int:
    from leelalab.analyses.predictions import PredictionSettings, run_predictions
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(PredictionSettings, args)
    results = run_predictions(settings, args.directory, args.patching)
    _print_predictions(results.rows)
    if args.output:
        from leelalab.runs.records import write_text_atomically
        from leelalab.runs.results import RunDirectory

        record = {
            "experiment": "predictions",
            **settings.to_json(),
            **_dataset_record(args.directory),
            "patching": None if args.patching is None else str(Path(args.patching).resolve()),
        }
        run = RunDirectory(args.output, record, overwrite=args.overwrite, what="predictions table")
        with run:
            path = results.save(run.path)
            write_text_atomically(run.path / "predictions.md", results.markdown())
            run.write_record(format=results.FORMAT)
        note(f"wrote {path} and {run.path / 'predictions.md'}")
    return 0


def _print_predictions(rows: list[Any]) -> None:
    from leelalab.analyses.search import describe_estimate
    from leelalab.analyses.strata import STRATA

    table = [["#", "statistic", *STRATA, "comparison", "verdict"]]
    for row in rows:
        values = [describe_estimate(row.values[name]) for name in STRATA]
        if row.key == "4b":
            values = ["all: " + describe_estimate(row.values["structural"]), "", ""]
        comparison = f"{row.comparison_label} {_estimate(row.comparison)}" if row.comparison else ""
        # The README's numbering: the square group is named in the statistic.
        table.append([row.key.split(" ")[0], row.statistic[:48], *values, comparison, row.verdict])
    print_table(table, align="llllllll")


def cmd_coupling(args: argparse.Namespace) -> int:
    from leelalab.analyses.coupling import (
        CouplingResults,
        CouplingSettings,
        coupling_tables,
        run_coupling,
    )
    from leelalab.cli.common import network_from_dataset
    from leelalab.runs.experiment import settings_from_args
    from leelalab.runs.records import amend_run_record

    settings = settings_from_args(CouplingSettings, args)
    network = network_from_dataset(args)
    path = run_coupling(
        settings,
        args.directory,
        args.output,
        network,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    tables = coupling_tables(args.directory, path, threshold=settings.threshold, seed=settings.seed)
    results = CouplingResults(settings.threshold, tables)
    results.save(args.output)
    amend_run_record(args.output, refresh_outputs=True, tables_format=results.FORMAT)
    _print_coupling(tables)
    note(f"wrote {path}, {results.FILE} and run.json")
    return 0


def _print_coupling(tables: list[Any]) -> None:
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


def cmd_search(args: argparse.Namespace) -> int:
    from leelalab.analyses.search import BudgetResults, SearchSettings, run_search_budgets
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(SearchSettings, args)
    path = run_search_budgets(
        settings,
        args.directory,
        args.output,
        _network_paths(args),
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    results = BudgetResults.load(path)
    _print_search(results)
    note(f"wrote {path} and run.json (benchmark inside)")
    return 0


def _print_search(results: Any) -> None:
    from leelalab.analyses.predictions import MINIMUM_N
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
        if results.size < MINIMUM_N:
            print(f"weak + MCTS against strong alone: too few puzzles (n={results.size})")
            return
        match = results.matching_budget("weak", ("strong", 1))
        found = match["matching_nodes"]
        print(
            "weak + MCTS matches strong alone at: "
            + (f"{found} nodes" if found else f"not within {results.nodes[-1]} nodes")
        )


def cmd_themes(args: argparse.Namespace) -> int:
    from leelalab.analyses.themes import ThemeSettings, run_themes
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(ThemeSettings, args)
    results = run_themes(settings, args.directory)
    _print_themes(results.analyses)
    if args.output:
        from leelalab.runs.results import RunDirectory

        record = {"experiment": "themes", **settings.to_json(), **_dataset_record(args.directory)}
        run = RunDirectory(args.output, record, overwrite=args.overwrite, what="themes table")
        with run:
            path = results.save(run.path)
            run.write_record(format=results.FORMAT)
        note(f"wrote {path}")
    return 0


def _print_themes(analyses: list[Any]) -> None:
    for analysis in analyses:
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


# ----------------------------------------------------------------------------- figures


def cmd_plot_analyses(args: argparse.Namespace) -> int:
    from leelalab.errors import LeelaLabError
    from leelalab.plots.boards import save_figure

    network = args.title or "maia-1900 (strong) vs weak-maia-1900 (weak)"
    # Every input is read (and every figure drawn) before the output folder is touched.
    figures: list[tuple[str, Any]] = []
    if args.dataset:
        figures += _dataset_figures(args, network)
    if args.search:
        figures += _search_figures(args.search, network)
    if args.stratum_search:
        figures += _stratum_search_figures(args.stratum_search, args.search, network)
    if not figures:
        raise LeelaLabError("nothing to plot: give --dataset, --search or --stratum-search")

    def draw(folder: Path) -> list[Path]:
        written: list[Path] = []
        for name, figure in figures:
            written += save_figure(figure, folder / f"{name}.pdf")
        return written

    # Existing figures are refused (unless --overwrite) before the folder is touched.
    for path in write_figures(args.output, args.overwrite, draw):
        note(f"wrote {path}")
    return 0


def _dataset_figures(args: argparse.Namespace, network: str) -> list[tuple[str, Any]]:
    """Predictions, strata patching, coupling, move lift and themes of one filter run."""
    from leelalab.analyses.effects import patching_results_file
    from leelalab.analyses.predictions import PuzzleTable, four_predictions, later_move_lift
    from leelalab.analyses.themes import ThemeSettings, run_themes
    from leelalab.plots import analyses as plots

    table = PuzzleTable.from_dataset(args.dataset)
    patching = patching_results_file(args.patching) if args.patching else None
    rows = four_predictions(args.dataset, patching, seed=args.seed)
    figures = [("predictions", plots.prediction_panel(rows, title=f"Four predictions — {network}"))]
    if patching is not None:
        from leelalab.analyses.predictions import unfiltered_sample
        from leelalab.patching.residual import PatchingResults

        figure = plots.strata_patching_curves(
            PatchingResults.load(patching),
            table,
            title=f"Residual patching per stratum — {network}",
            sample=unfiltered_sample(patching),
        )
        figures.append(("strata_patching", figure))
    if args.coupling:
        from leelalab.analyses.coupling import coupling_tables

        tables = coupling_tables(args.dataset, args.coupling, threshold=args.threshold)
        figure = plots.coupling_bars(
            tables, title=f"Policy–value coupling — {network}", threshold=args.threshold
        )
        figures.append(("coupling", figure))
    figure = plots.move_lift_figure(
        later_move_lift(table, seed=args.seed),
        title=f"Does the 1st move's correctness predict move k? — {network}",
    )
    figures.append(("move_lift", figure))
    # The figure's themes use the default seed and minimum, whatever --seed says.
    analyses = run_themes(ThemeSettings(frequencies=args.frequencies), args.dataset, table)
    for analysis in analyses.analyses:
        if args.frequencies:
            analysis.frequency_source = Path(args.frequencies).name
    figure = plots.theme_scatter(analyses.analyses, title=f"Accuracy by theme — {network}")
    figures.append(("themes", figure))
    return figures


def _search_figures(search: str, network: str) -> list[tuple[str, Any]]:
    from leelalab.analyses.search import BudgetResults
    from leelalab.plots import analyses as plots

    results = BudgetResults.load(search)
    figures = []
    for by in ("depth", "rating"):
        figure = plots.accuracy_curves(
            results,
            by=by,
            title=f"Puzzle accuracy by {'line length' if by == 'depth' else 'rating'} per "
            f"node budget — {network}, n={results.size} sampled puzzles",
        )
        figures.append((f"accuracy_by_{by}", figure))
    figure = plots.search_gain_figure(results, title=f"Search gain — {network}")
    figures.append(("search_gain", figure))
    return figures


def _stratum_search_figures(
    directories: list[str], search: str | None, network: str
) -> list[tuple[str, Any]]:
    from leelalab.analyses.search import BudgetResults
    from leelalab.errors import LeelaLabError
    from leelalab.plots import analyses as plots
    from leelalab.runs.records import read_json

    runs = {}
    for directory in directories:
        settings_file = Path(directory) / "settings.json"
        if not settings_file.is_file():
            raise LeelaLabError(f"{directory}: not an `analyze search` output directory")
        stratum = read_json(settings_file, what="settings file").get("stratum")
        if not stratum:
            raise LeelaLabError(f"{directory}: not an `analyze search --stratum` run")
        runs[stratum] = BudgetResults.load(directory)
    whole = BudgetResults.load(search) if search else None
    figure = plots.stratum_budget_figure(
        runs, whole=whole, title=f"Search budgets per stratum — {network}"
    )
    return [("search_by_stratum", figure)]


# ----------------------------------------------------------------------------- parsers


def _settings_options(parser: argparse.ArgumentParser, settings: Any, **defaults: Any) -> None:
    """The experiment's settings as options (``chunk_size`` is not a command-line choice)."""
    from leelalab.runs.experiment import add_settings_options

    add_settings_options(
        parser, settings, exclude=("chunk_size", "benchmark"), defaults=defaults or None
    )


_ANALYSES = (
    # name, help, --output help, settings class, networks it loads, command
    (
        "strata-patching",
        "corrupt and patch the paper stratum and an unfiltered sample (prediction 1)",
        "results directory (resumable; the corruptions are kept inside)",
        "StrataPatchingSettings",
        ("--net", "--weak"),
        cmd_strata_patching,
    ),
    (
        "predictions",
        "the four predictions per stratum, with CIs and verdicts",
        "directory for the table (predictions.json, predictions.md, run.json)",
        "PredictionSettings",
        (),
        cmd_predictions,
    ),
    (
        "coupling",
        "policy–value coupling along the lines, against Stockfish",
        "results directory (resumable; Stockfish cache inside)",
        "CouplingSettings",
        ("--net",),
        cmd_coupling,
    ),
    (
        "search",
        "puzzle accuracy with lc0's MCTS at several node budgets",
        "results directory (resumable; lc0 search cache inside)",
        "SearchSettings",
        ("--net", "--weak"),
        cmd_search,
    ),
    (
        "themes",
        "accuracy by Lichess theme against its frequency (network alone)",
        "directory for the table (themes.json, run.json)",
        "ThemeSettings",
        (),
        cmd_themes,
    ),
)
"""The ``analyze`` commands of this module. Those that load networks are the long,
resumable runs: their ``--output`` is required and they show progress; the others print
a table and write it only when given ``--output``."""


def _register_analyses(group: Any) -> None:
    from leelalab.analyses import settings as classes

    for name, help, output, settings, networks, run in _ANALYSES:
        parser = add_command(group, name, help)
        parser.add_argument("directory", help="a `leelalab puzzles filter` output directory")
        add_output(parser, output, required=bool(networks))
        add_overwrite(parser)
        if "--net" in networks:
            parser.add_argument(
                "--net", "--strong", dest="net", help="strong network (default: the filter's)"
            )
        if "--weak" in networks:
            parser.add_argument("--weak", help="weak network (default: the filter's)")
        if name == "predictions":
            parser.add_argument(
                "--patching",
                help="`analyze strata-patching` output (prediction 1; else not measured)",
            )
        defaults: dict[str, Any] = {}
        if name == "search":
            defaults = {"nodes": list(classes.DEFAULT_NODES), "workers": os.cpu_count() or 1}
        _settings_options(parser, getattr(classes, settings), **defaults)
        if networks:
            add_no_progress(parser)
        parser.set_defaults(run=run)


def _register_plot(plot_commands: Any) -> None:
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
    add_figure_overwrite(plot)
    plot.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    plot.set_defaults(run=cmd_plot_analyses)


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``analyze predictions|strata-patching|coupling|search|themes`` and
    ``plot analyses``."""
    _register_analyses(analyze_commands(commands))
    _register_plot(plot_commands)

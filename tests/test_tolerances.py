"""Float comparisons in the tests hold on every CPU: no absolute-only tolerance tighter than
float32 rounding on values that are not tiny.

float32 results computed by different kernels (AVX2 vs AVX-512, other batch shapes) differ by
a few ulps of the values' scale: 1.2e-7 at 1.0. A tolerance of ``atol=1e-7, rtol=0`` passed
on one CPU and failed on another (issue 26). Exact comparisons (``atol=0, rtol=0``, used
where equality holds by construction) and comparisons with a literal zero are fine.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Absolute tolerances below this need a relative one beside them.
SMALL_ATOL = 1e-5
MIN_RTOL = 1e-6
# Call name -> (absolute keyword, relative keyword, default relative tolerance).
CALLS = {
    "assert_close": ("atol", "rtol", MIN_RTOL),  # torch: 1.3e-6 for float32
    "assert_allclose": ("atol", "rtol", 1e-7),  # numpy: below float32 resolution
    "allclose": ("atol", "rtol", 1e-5),
    "isclose": ("atol", "rtol", 1e-5),
    "approx": ("abs", "rel", MIN_RTOL),
}


def _number(node: ast.expr | None) -> float | None:
    try:
        value = ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None
    return float(value) if isinstance(value, int | float) else None


def _tight_comparisons(source: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name not in CALLS:
            continue
        absolute, relative, default = CALLS[name]
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if name == "assert_allclose" and not {absolute, relative} & set(keywords):
            # numpy's defaults (rtol 1e-7, atol 0) are below float32 rounding: say what is
            # meant (a tolerance, or assert_array_equal where equal by construction).
            yield node.lineno, ast.unparse(node)[:120]
            continue
        atol = _number(keywords.get(absolute))
        rtol = _number(keywords[relative]) if relative in keywords else default
        if atol is None or rtol is None or atol == 0 or atol >= SMALL_ATOL:
            continue
        if rtol >= MIN_RTOL:
            continue
        # Against a literal zero only the absolute tolerance means anything.
        if any(_number(arg) == 0 for arg in node.args[1:2]) or (
            name == "approx" and node.args and _number(node.args[0]) == 0
        ):
            continue
        yield node.lineno, ast.unparse(node)[:120]


def test_the_checker_finds_the_tolerance_that_failed_on_avx512() -> None:
    failing = "torch.testing.assert_close(tuned.wdl, logit.wdl, rtol=0, atol=1e-7)"
    assert [line for line, _ in _tight_comparisons(failing)] == [1]
    assert list(_tight_comparisons("np.testing.assert_allclose(a, b, atol=1e-6)"))
    assert list(_tight_comparisons("np.testing.assert_allclose(a, b)"))  # rtol 1e-7
    assert not list(_tight_comparisons("torch.testing.assert_close(a, b, rtol=0, atol=0)"))
    assert not list(_tight_comparisons("torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)"))
    assert not list(_tight_comparisons("np.testing.assert_allclose(s, 0.0, atol=1e-6)"))
    assert not list(_tight_comparisons("assert x == pytest.approx(y, abs=1e-7)"))


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(TESTS).as_posix() for p in TESTS.rglob("test_*.py"))
)
def test_no_absolute_only_tolerance_below_float32_rounding(path: str) -> None:
    tight = list(_tight_comparisons((TESTS / path).read_text()))
    assert tight == [], f"tests/{path}: add rtol >= {MIN_RTOL} (or compare exactly): {tight}"

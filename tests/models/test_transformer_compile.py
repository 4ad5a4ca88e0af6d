"""The torch.compile path for attention bodies gives lc0's numbers (as eager does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leelalab.lc0.weights.synthetic import random_transformer_weights
from leelalab.models import build_network
from leelalab.models.evaluation import evaluate
from positions import puzzle_line_boards


@pytest.mark.slow
@pytest.mark.parametrize("smolgen", [None, (4, 16, 8)], ids=["plain", "smolgen"])
def test_compiled_transformer_matches_eager(smolgen) -> None:
    network = build_network(random_transformer_weights(seed=3, smolgen=smolgen))
    boards = puzzle_line_boards(20, seed=7)
    eager = evaluate(network, boards, batch_size=8)
    compiled = evaluate(network, boards, batch_size=8, compile=True)  # last batch padded
    for x, y in zip(eager, compiled, strict=True):
        assert x.policy.keys() == y.policy.keys()
        assert max((abs(x.policy[m] - y.policy[m]) for m in x.policy), default=0) < 1e-5
        assert np.allclose(x.wdl, y.wdl, atol=1e-5)
        assert x.moves_left == pytest.approx(y.moves_left, rel=1e-5)
    torch._dynamo.reset()

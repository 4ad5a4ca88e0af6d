"""Network modules: one per lc0 family, built from decoded weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from leelalab.errors import (
    CorruptWeightsError,
    LeelaLabError,
    UnsupportedNetworkError,
    name_source,
)
from leelalab.lc0.weights.enums import NetworkStructure
from leelalab.lc0.weights.file import Lc0Weights
from leelalab.models.base import LeelaNetwork, NetworkOutput
from leelalab.models.resnet import ResNet, ResNetShape
from leelalab.models.transformer import TransformerNetwork

__all__ = [
    "LeelaNetwork",
    "NetworkOutput",
    "ResNet",
    "ResNetShape",
    "TransformerNetwork",
    "build_network",
    "check_network",
]


def check_network(weights: Lc0Weights) -> None:
    """Check that a decoded file builds (every layer size fits), without allocating it.

    Raises what :func:`build_network` raises, naming ``weights.source``.
    """
    with _errors_naming(weights.source), torch.device("meta"):
        _build(weights)


def build_network(weights: Lc0Weights) -> LeelaNetwork:
    """The native PyTorch module for a decoded network file (float32, CPU, eval mode).

    Raises:
        UnsupportedNetworkError: a family leelalab cannot run (yet).
        CorruptWeightsError: layers whose sizes do not fit together.

    Error messages start with ``weights.source`` when it is set.
    """
    with _errors_naming(weights.source):
        # A dry run on the meta device first: every layer size is checked against the file
        # before any memory is allocated, so a corrupt size cannot ask for terabytes.
        check_network(weights)
        return _build(weights)


@contextmanager
def _errors_naming(source: str | None) -> Iterator[None]:
    """Errors out of building a network as one line that starts with ``source`` when set."""
    try:
        yield
    except LeelaLabError as error:
        if source:
            raise name_source(error, source) from None
        raise
    except (ArithmeticError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as error:
        # Not expected for any file (the fuzz tests look for these): still one clear line.
        raise CorruptWeightsError(
            f"{source or 'network'}: the layers do not fit together "
            f"({type(error).__name__}: {error}); if lc0 runs this file, please report a bug"
        ) from error


def _build(weights: Lc0Weights) -> LeelaNetwork:
    structure = weights.format.network
    if weights.onnx_model is not None or structure == NetworkStructure.ONNX:
        raise UnsupportedNetworkError(
            "this file embeds an ONNX model (NETWORK_ONNX); loading ONNX-in-pb files is not "
            "supported yet"
        )
    if structure in (
        NetworkStructure.CLASSICAL_WITH_HEADFORMAT,
        NetworkStructure.SE_WITH_HEADFORMAT,
    ):
        return ResNet.from_lc0(weights).eval()
    if structure in (
        NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT,
        NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT,
    ):
        return TransformerNetwork.from_lc0(weights).eval()
    raise UnsupportedNetworkError(f"network structure {structure.name} is not supported")

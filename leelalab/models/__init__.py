"""Network modules: one per lc0 family, built from decoded weights."""

from __future__ import annotations

from leelalab.errors import UnsupportedNetworkError
from leelalab.lc0.weights.enums import NetworkStructure
from leelalab.lc0.weights.file import Lc0Weights
from leelalab.models.base import LeelaNetwork, NetworkOutput
from leelalab.models.resnet import ResNet
from leelalab.models.transformer import TransformerNetwork

__all__ = ["LeelaNetwork", "NetworkOutput", "ResNet", "TransformerNetwork", "build_network"]


def build_network(weights: Lc0Weights) -> LeelaNetwork:
    """The native PyTorch module for a decoded network file (float32, CPU, eval mode).

    Raises:
        UnsupportedNetworkError: a family leelalab cannot run (yet).
        CorruptWeightsError: layers whose sizes do not fit together.
    """
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

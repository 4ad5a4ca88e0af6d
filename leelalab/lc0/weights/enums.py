"""Enumerations of lc0's network file format (``proto/net.proto``, lc0 v0.31+).

Values are the numbers stored in files. Absent optional enums read as 0.
"""

from __future__ import annotations

from enum import IntEnum


class Encoding(IntEnum):
    """How a ``Weights.Layer`` stores its numbers."""

    UNKNOWN = 0
    LINEAR16 = 1
    FLOAT16 = 2
    BFLOAT16 = 3
    FLOAT32 = 4


class InputFormat(IntEnum):
    """The input-plane encoding the network expects."""

    UNKNOWN = 0
    CLASSICAL_112_PLANE = 1
    PLANE_112_WITH_CASTLING_PLANE = 2
    PLANE_112_WITH_CANONICALIZATION = 3
    PLANE_112_WITH_CANONICALIZATION_HECTOPLIES = 4
    PLANE_112_WITH_CANONICALIZATION_V2 = 5
    PLANE_112_WITH_CANONICALIZATION_HECTOPLIES_ARMAGEDDON = 132
    PLANE_112_WITH_CANONICALIZATION_V2_ARMAGEDDON = 133

    # lc0 tests these predicates by numeric comparison, so 132/133 count as ">=".
    @property
    def has_castling_planes(self) -> bool:
        """Planes 104/105 hold castling-rook squares instead of all-ones flags."""
        return self >= 2

    @property
    def is_canonical(self) -> bool:
        """The board is canonicalised by a flip/mirror/transpose symmetry."""
        return self >= 3

    @property
    def is_hectoplies(self) -> bool:
        """The rule-50 plane holds plies / 100 instead of the raw ply count."""
        return self >= 4

    @property
    def is_armageddon(self) -> bool:
        """Plane 110 is all ones when black is to move."""
        return self in (132, 133)

    @property
    def is_v2(self) -> bool:
        """History slots are written only for repeated positions (canonical V2 formats)."""
        return self in (5, 133)


class OutputFormat(IntEnum):
    UNKNOWN = 0
    CLASSICAL = 1
    WDL = 2


class NetworkStructure(IntEnum):
    UNKNOWN = 0
    CLASSICAL = 1
    SE = 2
    CLASSICAL_WITH_HEADFORMAT = 3
    SE_WITH_HEADFORMAT = 4
    ONNX = 5
    ATTENTIONBODY_WITH_HEADFORMAT = 6
    ATTENTIONBODY_WITH_MULTIHEADFORMAT = 7
    AB_LEGACY_WITH_MULTIHEADFORMAT = 134


class PolicyFormat(IntEnum):
    UNKNOWN = 0
    CLASSICAL = 1
    CONVOLUTION = 2
    ATTENTION = 3


class ValueFormat(IntEnum):
    UNKNOWN = 0
    CLASSICAL = 1
    WDL = 2
    PARAM = 3


class MovesLeftFormat(IntEnum):
    NONE = 0
    V1 = 1


class DefaultActivation(IntEnum):
    RELU = 0
    MISH = 1


class Activation(IntEnum):
    DEFAULT = 0
    MISH = 1
    RELU = 2
    NONE = 3
    TANH = 4
    SIGMOID = 5
    SELU = 6
    SWISH = 7
    RELU_2 = 8
    SOFTMAX = 9


class InputEmbedding(IntEnum):
    NONE = 0
    PE_MAP = 1
    PE_DENSE = 2


class OnnxDataType(IntEnum):
    UNKNOWN = 0
    FLOAT = 1
    FLOAT16 = 10
    BFLOAT16 = 16

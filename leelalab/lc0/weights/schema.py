"""The ``pblczero.Net`` message layout (lc0 ``proto/net.proto``, v0.31 and later).

Field numbers are those of lc0's schema; names are lc0's, so a decoded file reads like the
``.proto``. Fields reserved for int8 quantisation (MHA 13–22, FFN 5–10) are deliberately
absent: no released network uses them and lc0 itself ignores them.
"""

from __future__ import annotations

from leelalab.lc0.weights.protobuf import Field, Schema


def _layers(*names: str, start: int = 1) -> dict[int, Field]:
    return {start + i: Field(name, "message", LAYER) for i, name in enumerate(names)}


ENGINE_VERSION: Schema = {
    1: Field("major", "uint32"),
    2: Field("minor", "uint32"),
    3: Field("patch", "uint32"),
}

LAYER: Schema = {
    1: Field("min_val", "float"),
    2: Field("max_val", "float"),
    3: Field("params", "bytes"),
    4: Field("encoding", "enum"),
    5: Field("dims", "uint32", repeated=True),
}

CONV_BLOCK: Schema = _layers("weights", "biases", "bn_means", "bn_stddivs", "bn_gammas", "bn_betas")

SE_UNIT: Schema = _layers("w1", "b1", "w2", "b2")

RESIDUAL: Schema = {
    1: Field("conv1", "message", CONV_BLOCK),
    2: Field("conv2", "message", CONV_BLOCK),
    3: Field("se", "message", SE_UNIT),
}

SMOLGEN: Schema = _layers(
    "compress",
    "dense1_w",
    "dense1_b",
    "ln1_gammas",
    "ln1_betas",
    "dense2_w",
    "dense2_b",
    "ln2_gammas",
    "ln2_betas",
)

MHA: Schema = {
    **_layers("q_w", "q_b", "k_w", "k_b", "v_w", "v_b", "dense_w", "dense_b"),
    9: Field("smolgen", "message", SMOLGEN),
    **_layers("rpe_q", "rpe_k", "rpe_v", start=10),
}

FFN: Schema = _layers("dense1_w", "dense1_b", "dense2_w", "dense2_b")

ENCODER_LAYER: Schema = {
    1: Field("mha", "message", MHA),
    2: Field("ln1_gammas", "message", LAYER),
    3: Field("ln1_betas", "message", LAYER),
    4: Field("ffn", "message", FFN),
    5: Field("ln2_gammas", "message", LAYER),
    6: Field("ln2_betas", "message", LAYER),
}

POLICY_HEAD: Schema = {
    **_layers("ip_pol_w", "ip_pol_b", "ip2_pol_w", "ip2_pol_b", "ip3_pol_w", "ip3_pol_b"),
    7: Field("ip4_pol_w", "message", LAYER),
    8: Field("pol_encoder", "message", ENCODER_LAYER, repeated=True),
    9: Field("pol_headcount", "uint32"),
    10: Field("policy1", "message", CONV_BLOCK),
    11: Field("policy", "message", CONV_BLOCK),
}

VALUE_HEAD: Schema = {
    **_layers(
        "ip_val_w",
        "ip_val_b",
        "ip1_val_w",
        "ip1_val_b",
        "ip2_val_w",
        "ip2_val_b",
        "ip_val_err_w",
        "ip_val_err_b",
        "ip_val_cat_w",
        "ip_val_cat_b",
    ),
    11: Field("value", "message", CONV_BLOCK),
}

POLICY_HEAD_MAP: Schema = {1: Field("key", "string"), 2: Field("value", "message", POLICY_HEAD)}
VALUE_HEAD_MAP: Schema = {1: Field("key", "string"), 2: Field("value", "message", VALUE_HEAD)}

POLICY_HEADS: Schema = {
    1: Field("ip_pol_w", "message", LAYER),
    2: Field("ip_pol_b", "message", LAYER),
    3: Field("vanilla", "message", POLICY_HEAD),
    4: Field("optimistic_st", "message", POLICY_HEAD),
    5: Field("soft", "message", POLICY_HEAD),
    6: Field("opponent", "message", POLICY_HEAD),
    7: Field("policy_head_map", "message", POLICY_HEAD_MAP, repeated=True),
}

VALUE_HEADS: Schema = {
    1: Field("winner", "message", VALUE_HEAD),
    2: Field("q", "message", VALUE_HEAD),
    3: Field("st", "message", VALUE_HEAD),
    4: Field("value_head_map", "message", VALUE_HEAD_MAP, repeated=True),
}

WEIGHTS: Schema = {
    1: Field("input", "message", CONV_BLOCK),
    2: Field("residual", "message", RESIDUAL, repeated=True),
    3: Field("policy", "message", CONV_BLOCK),
    4: Field("ip_pol_w", "message", LAYER),
    5: Field("ip_pol_b", "message", LAYER),
    6: Field("value", "message", CONV_BLOCK),
    7: Field("ip1_val_w", "message", LAYER),
    8: Field("ip1_val_b", "message", LAYER),
    9: Field("ip2_val_w", "message", LAYER),
    10: Field("ip2_val_b", "message", LAYER),
    11: Field("policy1", "message", CONV_BLOCK),
    12: Field("moves_left", "message", CONV_BLOCK),
    **_layers(
        "ip1_mov_w",
        "ip1_mov_b",
        "ip2_mov_w",
        "ip2_mov_b",
        "ip2_pol_w",
        "ip2_pol_b",
        "ip3_pol_w",
        "ip3_pol_b",
        start=13,
    ),
    21: Field("pol_encoder", "message", ENCODER_LAYER, repeated=True),
    22: Field("ip4_pol_w", "message", LAYER),
    24: Field("pol_headcount", "uint32"),
    25: Field("ip_emb_w", "message", LAYER),
    26: Field("ip_emb_b", "message", LAYER),
    27: Field("encoder", "message", ENCODER_LAYER, repeated=True),
    28: Field("headcount", "uint32"),
    **_layers(
        "ip_val_w",
        "ip_val_b",
        "ip_mov_w",
        "ip_mov_b",
        "ip_mult_gate",
        "ip_add_gate",
        "smolgen_w",
        "smolgen_b",
        "ip_emb_preproc_w",
        "ip_emb_preproc_b",
        "ip_emb_ln_gammas",
        "ip_emb_ln_betas",
        start=29,
    ),
    41: Field("ip_emb_ffn", "message", FFN),
    42: Field("ip_emb_ffn_ln_gammas", "message", LAYER),
    43: Field("ip_emb_ffn_ln_betas", "message", LAYER),
    44: Field("value_heads", "message", VALUE_HEADS),
    45: Field("policy_heads", "message", POLICY_HEADS),
}

NETWORK_FORMAT: Schema = {
    1: Field("input", "enum"),
    2: Field("output", "enum"),
    3: Field("network", "enum"),
    4: Field("policy", "enum"),
    5: Field("value", "enum"),
    6: Field("moves_left", "enum"),
    7: Field("default_activation", "enum"),
    8: Field("smolgen_activation", "enum"),
    9: Field("ffn_activation", "enum"),
    10: Field("input_embedding", "enum"),
}

FORMAT: Schema = {
    1: Field("weights_encoding", "enum"),
    2: Field("network_format", "message", NETWORK_FORMAT),
}

TRAINING_PARAMS: Schema = {
    1: Field("training_steps", "uint32"),
    2: Field("learning_rate", "float"),
    3: Field("mse_loss", "float"),
    4: Field("policy_loss", "float"),
    5: Field("accuracy", "float"),
    6: Field("lc0_params", "string"),
}

ONNX_MODEL: Schema = {
    1: Field("model", "bytes"),
    2: Field("data_type", "enum"),
    3: Field("input_planes", "string"),
    4: Field("output_value", "string"),
    5: Field("output_wdl", "string"),
    6: Field("output_policy", "string"),
    7: Field("output_mlh", "string"),
}

NET: Schema = {
    1: Field("magic", "fixed32"),
    2: Field("license", "string"),
    3: Field("min_version", "message", ENGINE_VERSION),
    4: Field("format", "message", FORMAT),
    5: Field("training_params", "message", TRAINING_PARAMS),
    10: Field("weights", "message", WEIGHTS),
    11: Field("onnx_model", "message", ONNX_MODEL),
}

MAGIC = 0x1C0

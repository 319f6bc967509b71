"""RELU and RELU6 (int8), TFLite Micro's activations_common.cc:
RELU requantizes (input scale / output scale) and clamps at the output zero point
(kernel tc_requant_s8); RELU6 does NOT requantize in TFLite Micro: it clamps the raw input
to [input zero point, quantized 6.0 in the input's scale] (kernel tc_clamp_s8).
One module: both are the ReLU family of activations_common.cc and share checks and emission."""
from __future__ import annotations

import numpy as np

from ..quantize import multiply_by_quantized_multiplier, quantize_multiplier
from ._common import (emit_call, f32, i32_fields, input_expr, int8_tensor, numel, op_error, round_half_away_f32,
                      same_shape)
from .base import OpHandler, register

REQUANT_FIELDS = i32_fields(["size", "input_offset", "output_offset", "multiplier", "shift", "act_min", "act_max"])
CLAMP_FIELDS = i32_fields(["size", "act_min", "act_max"])


def float_to_quantized_int8(value: float, scale, zero_point: int) -> int:
    """TFLite Micro FloatToQuantizedType<int8_t>: round(value / scale) + zero_point, clamped
    (float32 division, std::round)."""
    r = float(round_half_away_f32(np.float32(value) / np.float32(scale)))
    return int(min(127, max(-128, r + zero_point)))


def requant_reference(p, x):
    x = np.asarray(x).astype(np.int64) + p["input_offset"]
    v = multiply_by_quantized_multiplier(x, p["multiplier"], p["shift"]) + p["output_offset"]
    return np.clip(v, p["act_min"], p["act_max"]).astype(np.int8)


@register("RELU", "RELU6")
class ReluHandler(OpHandler):
    inplace = "elementwise"

    def resolve(self, node, graph):
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        same_shape(node, graph, x, y)
        n = numel(x.shape)
        if node.op == "RELU":
            m, s = quantize_multiplier(f32(sx) / f32(sy))
            node.params = dict(kind="requant", size=n, input_offset=-zx, output_offset=zy, multiplier=m, shift=s,
                               act_min=max(-128, zy), act_max=127)
        else:
            if abs(6.0 / f32(sx)) >= 2 ** 31:
                raise op_error(node, graph, f"input scale {f32(sx):.3g} is too small to represent 6.0")
            node.params = dict(kind="clamp", size=n, act_min=zx, act_max=float_to_quantized_int8(6.0, sx, zx))

    def emit(self, node, ctx):
        args = [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])]
        if node.params["kind"] == "requant":
            return emit_call(ctx, node, "tc_requant_params", REQUANT_FIELDS, node.params, "tc_requant_s8", args)
        return emit_call(ctx, node, "tc_clamp_params", CLAMP_FIELDS, node.params, "tc_clamp_s8", args)

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        if p["kind"] == "requant":
            v = requant_reference(p, inputs[0])
        else:
            v = np.clip(np.asarray(inputs[0]).astype(np.int64), p["act_min"], p["act_max"]).astype(np.int8)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

"""QUANTIZE: int8 -> int8 is a requantize (TFLite Micro's quantize_common.cc
PrepareQuantizeReference + reference_ops::Requantize; kernel tc_requant_s8);
float32 -> int8 at a model input is TFLite's AffineQuantize (kernel tc_quantize_f32_s8)."""
from __future__ import annotations

import numpy as np

from ..quantize import quantize_multiplier
from ._common import emit_call, f32, input_expr, int8_tensor, numel, op_error, round_half_away_f32, same_shape, tensor
from .base import OpHandler, register
from .relu import REQUANT_FIELDS, requant_reference

FLOAT_FIELDS = [("size", "int32_t"), ("zero_point", "int32_t"), ("scale_bits", "uint32_t")]


def float_bits(x) -> int:
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


@register("QUANTIZE")
class QuantizeHandler(OpHandler):
    inplace = "elementwise"  # int8 -> int8 only (the planner also requires equal byte sizes)

    def resolve(self, node, graph):
        x = tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        n = numel(y.shape)
        same_shape(node, graph, x, y)
        if x.dtype == "float32":
            node.params = dict(kind="float", size=n, zero_point=zy, scale_bits=float_bits(sy))
            return
        if x.dtype != "int8":
            raise op_error(node, graph, f"QUANTIZE from {x.dtype} to int8 is not supported (int8 or float32 input)")
        _, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        m, s = quantize_multiplier(f32(sx) / f32(sy))
        node.params = dict(kind="requant", size=n, input_offset=-zx, output_offset=zy, multiplier=m, shift=s,
                           act_min=-128, act_max=127)

    def emit(self, node, ctx):
        p = node.params
        if p["kind"] == "float":
            src = ctx.tensor(node.inputs[0])
            return emit_call(ctx, node, "tc_quantize_params", FLOAT_FIELDS, p, "tc_quantize_f32_s8",
                             [f"(const float *)(const void *){src}", ctx.tensor(node.outputs[0])])
        return emit_call(ctx, node, "tc_requant_params", REQUANT_FIELDS, p, "tc_requant_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        shape = graph.tensors[node.outputs[0]].shape
        if p["kind"] == "requant":
            return [requant_reference(p, inputs[0]).reshape(shape)]
        scale = np.array([p["scale_bits"]], dtype=np.uint32).view(np.float32)[0]
        with np.errstate(all="ignore"):
            q = np.asarray(inputs[0], dtype=np.float32).reshape(-1) / scale  # float32 division
        with np.errstate(all="ignore"):
            r = round_half_away_f32(q)
        r = np.nan_to_num(r.astype(np.float64), nan=0.0, posinf=2.0 ** 31, neginf=-(2.0 ** 31))
        v = np.clip(np.clip(r, -(2.0 ** 31), 2.0 ** 31 - 1) + p["zero_point"], -128, 127)
        return [v.astype(np.int8).reshape(shape)]

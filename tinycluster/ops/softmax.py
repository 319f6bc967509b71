"""SOFTMAX (int8 -> int8 over the last dimension): TFLite Micro's softmax_common.cc
CalculateSoftmaxParams (PreprocessSoftmaxScaling, CalculateInputRadius) and the reference
gemmlowp Softmax. Kernel: runtime_c/src/tc_softmax_s8.c."""
from __future__ import annotations

import math

import numpy as np

from ..quantize import quantize_multiplier
from . import _fixedpoint as fp
from ._common import emit_call, f32, i32_fields, input_expr, int8_tensor, numel, op_error, same_shape
from .base import OpHandler, register

SCALED_DIFF_INTEGER_BITS = 5
ACCUM_INTEGER_BITS = 12
FIELDS = i32_fields(["outer", "depth", "input_multiplier", "input_left_shift", "diff_min"])


def input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite CalculateInputRadius."""
    v = 1.0 * ((1 << integer_bits) - 1) * (1 << (total_signed_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(v))


@register("SOFTMAX")
class SoftmaxHandler(OpHandler):
    inplace = "elementwise"

    def parse(self, raw, graph):
        o = raw.options
        # no options: TFLite Micro runs with beta 0 (refused in resolve); the importer refuses it first
        return {"beta": f32(o.Beta()) if o is not None else 0.0}

    def resolve(self, node, graph):
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        if zy != -128 or sy != np.float32(1.0 / 256):
            raise op_error(node, graph, f"int8 output must have scale 1/256 and zero point -128 (TFLite Micro "
                                        f"requires it), got scale {float(sy):.6g}, zero point {zy}")
        if len(x.shape) < 1 or numel(x.shape) != numel(y.shape):
            raise op_error(node, graph, f"input {list(x.shape)} and output {list(y.shape)} shapes differ")
        beta = float(node.attrs.get("beta", 1.0))
        real = min(beta * f32(sx) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
        if not real > 1.0:
            raise op_error(node, graph, f"beta * input scale = {beta * f32(sx):.3g} is too small: TFLite needs "
                                        "beta * scale * 2^26 > 1 (TFLite Micro aborts on this model)")
        # QuantizeMultiplierGreaterThanOne: real <= 2^31 - 1 by construction, so a shift of 31 is
        # possible (then only the maximum contributes: the input radius is 0)
        m, s = quantize_multiplier(real, max_shift=31)
        if s < 0:
            raise op_error(node, graph, "input multiplier has a negative shift (unsupported)")
        depth = int(x.shape[-1])
        node.params = dict(outer=numel(x.shape) // depth, depth=depth, input_multiplier=m, input_left_shift=s,
                           diff_min=-input_radius(SCALED_DIFF_INTEGER_BITS, s))

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_softmax_params", FIELDS, node.params, "tc_softmax_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).astype(np.int64).reshape(p["outer"], p["depth"])
        diff = x - np.maximum(x.max(axis=1, keepdims=True), -128)
        ok = diff >= p["diff_min"]
        resc = fp.srdhm(fp.wrap32(diff << p["input_left_shift"]), p["input_multiplier"])
        e = fp.exp_on_negative_values(resc, SCALED_DIFF_INTEGER_BITS)
        total = fp.wrap32(np.where(ok, fp.mul_pot(e, -ACCUM_INTEGER_BITS), 0).sum(axis=1, keepdims=True))
        recip, nbou = fp.get_reciprocal(total, ACCUM_INTEGER_BITS)
        v = fp.rdbpot(fp.srdhm(recip, e), nbou + 31 - 8) - 128
        v = np.where(ok, np.clip(v, -128, 127), -128).astype(np.int8)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

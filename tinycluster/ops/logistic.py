"""LOGISTIC (int8 -> int8, output scale 1/256 and zero point -128): TFLite Micro's
logistic_common.cc Prepare and reference_integer_ops::Logistic (gemmlowp logistic).
Kernel: runtime_c/src/tc_logistic_s8.c."""
from __future__ import annotations

import numpy as np

from ..quantize import multiply_by_quantized_multiplier
from . import _fixedpoint as fp
from ._common import emit_call, i32_fields, input_expr, int8_tensor, numel, op_error, same_shape
from ._sigmoid import INPUT_INTEGER_BITS, sigmoid_params
from .base import OpHandler, register

FIELDS = i32_fields(["size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift"])


def sigmoid_reference(p, x, fn, out_bits: int, out_zp: int):
    x = np.asarray(x).astype(np.int64) - p["input_zero_point"]
    r = p["input_range_radius"]
    q4 = multiply_by_quantized_multiplier(np.clip(x, -r, r), p["input_multiplier"], p["input_left_shift"])
    v = np.clip(fp.rdbpot(fn(q4, INPUT_INTEGER_BITS), 31 - out_bits) + out_zp, -128, 127)
    v = np.where(x <= -r, -128, np.where(x >= r, 127, v))
    return v.astype(np.int8)


@register("LOGISTIC")
class LogisticHandler(OpHandler):
    inplace = "elementwise"

    def resolve(self, node, graph):
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        if zy != -128:
            raise op_error(node, graph, f"int8 output zero point must be -128 (TFLite Micro requires it), got {zy}")
        same_shape(node, graph, x, y)
        node.params = sigmoid_params(node, graph, numel(x.shape), sx, zx)

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_logistic_params", FIELDS, node.params, "tc_logistic_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        v = sigmoid_reference(node.params, inputs[0], fp.logistic, 8, -128)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

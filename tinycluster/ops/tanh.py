"""TANH (int8 -> int8, output scale 1/128 and zero point 0 implied, as in TFLite Micro):
tanh.cc Prepare and reference_integer_ops::Tanh (gemmlowp tanh).
Kernel: runtime_c/src/tc_tanh_s8.c."""
from __future__ import annotations

from . import _fixedpoint as fp
from ._common import emit_call, i32_fields, input_expr, int8_tensor, numel, same_shape
from ._sigmoid import sigmoid_params
from .base import OpHandler, register
from .logistic import sigmoid_reference

FIELDS = i32_fields(["size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift"])


@register("TANH")
class TanhHandler(OpHandler):
    inplace = "elementwise"

    def resolve(self, node, graph):
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        same_shape(node, graph, x, y)
        node.params = sigmoid_params(node, graph, numel(x.shape), sx, zx)

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_tanh_params", FIELDS, node.params, "tc_tanh_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        v = sigmoid_reference(node.params, inputs[0], fp.tanh, 7, 0)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

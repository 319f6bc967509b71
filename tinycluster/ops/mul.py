"""MUL (int8, broadcasting up to 4-D, fused activation): TFLite Micro's mul_common.cc Prepare
and reference_integer_ops::Mul / BroadcastMul. Kernel: runtime_c/src/tc_mul_s8.c."""
from __future__ import annotations

import numpy as np

from ..quantize import activation_range, multiply_by_quantized_multiplier, quantize_multiplier
from ._common import emit_call, f32, input_expr, numel, op_error
from ._elementwise import BCAST_FIELDS, DIM_FIELDS, BinaryElementwise, broadcast_view
from .base import OpHandler, register

FIELDS = DIM_FIELDS + [("output_multiplier", "int32_t"), ("input1_offset", "int16_t"), ("input2_offset", "int16_t"),
                      ("output_offset", "int8_t"), ("output_shift", "int8_t"), ("act_min", "int8_t"),
                      ("act_max", "int8_t")] + BCAST_FIELDS


@register("MUL")
class MulHandler(BinaryElementwise, OpHandler):
    n_inputs = (2, 2)
    def resolve(self, node, graph):
        (a, sa, za), (b, sb, zb), (o, so, zo), act, p = self.operands(node, graph)
        m, s = quantize_multiplier(f32(sa) * f32(sb) / f32(so))
        lo, hi = activation_range(act, so, zo)
        if lo > hi:
            raise op_error(node, graph, f"empty activation range [{lo}, {hi}] for {act}")
        p.update(input1_offset=-za, input2_offset=-zb, output_offset=zo, output_multiplier=m, output_shift=s,
                 act_min=lo, act_max=hi)
        node.params = p

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_mul_params", FIELDS, node.params, "tc_mul_s8",
                         [input_expr(ctx, node, 0), input_expr(ctx, node, 1), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        x1, x2 = broadcast_view(p, inputs[0], inputs[1])
        prod = (x1.astype(np.int64) + p["input1_offset"]) * (x2.astype(np.int64) + p["input2_offset"])
        v = multiply_by_quantized_multiplier(prod, p["output_multiplier"], p["output_shift"]) + p["output_offset"]
        v = np.clip(v, p["act_min"], p["act_max"]).astype(np.int8)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

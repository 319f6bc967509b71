"""ADD (int8, broadcasting up to 4-D, fused activation): TFLite Micro's add_common.cc Prepare
and reference_integer_ops::Add / BroadcastAdd. Kernel: runtime_c/src/tc_add_s8.c."""
from __future__ import annotations

import numpy as np

from ..quantize import activation_range, multiply_by_quantized_multiplier, quantize_multiplier
from ._common import (emit_call, f32, i32_fields, input_expr, numel, op_error)
from ._elementwise import BCAST_FIELDS, DIM_FIELDS, BinaryElementwise, broadcast_view
from .base import OpHandler, register

LEFT_SHIFT = 20  # int8 (TFLite uses 15 for int16)

FIELDS = DIM_FIELDS + i32_fields(["input1_multiplier", "input2_multiplier", "output_multiplier"]) + [
    ("input1_offset", "int16_t"), ("input2_offset", "int16_t"), ("output_offset", "int8_t"),
    ("left_shift", "int8_t"), ("input1_shift", "int8_t"), ("input2_shift", "int8_t"), ("output_shift", "int8_t"),
    ("act_min", "int8_t"), ("act_max", "int8_t")] + BCAST_FIELDS


def _smaller_than_one(node, graph, real: float, what: str):
    """QuantizeMultiplierSmallerThanOneExp (TFLM aborts when the multiplier is not < 1)."""
    if not 0.0 < real < 1.0:
        raise op_error(node, graph, f"{what} multiplier {real:.6g} is not in (0, 1) (TFLite's int8 ADD requires "
                                    "output scale > 2 * max(input scales) / 2^20); requantize the model")
    m, s = quantize_multiplier(real)
    if s > 0:
        raise op_error(node, graph, f"{what} multiplier {real:.6g} rounds to 1.0 (unsupported by TFLite's int8 ADD)")
    return m, s


@register("ADD")
class AddHandler(BinaryElementwise, OpHandler):
    n_inputs = (2, 2)
    def resolve(self, node, graph):
        (a, sa, za), (b, sb, zb), (o, so, zo), act, p = self.operands(node, graph)
        twice_max = 2.0 * max(f32(sa), f32(sb))
        m1, s1 = _smaller_than_one(node, graph, f32(sa) / twice_max, "input 1")
        m2, s2 = _smaller_than_one(node, graph, f32(sb) / twice_max, "input 2")
        mo, so_ = _smaller_than_one(node, graph, twice_max / ((1 << LEFT_SHIFT) * f32(so)), "output")
        lo, hi = activation_range(act, so, zo)
        if lo > hi:
            raise op_error(node, graph, f"empty activation range [{lo}, {hi}] for {act}")
        p.update(input1_offset=-za, input2_offset=-zb, output_offset=zo, left_shift=LEFT_SHIFT,
                 input1_multiplier=m1, input1_shift=s1, input2_multiplier=m2, input2_shift=s2,
                 output_multiplier=mo, output_shift=so_, act_min=lo, act_max=hi)
        node.params = p

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_add_params", FIELDS, node.params, "tc_add_s8",
                         [input_expr(ctx, node, 0), input_expr(ctx, node, 1), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        x1, x2 = broadcast_view(p, inputs[0], inputs[1])
        a = (x1.astype(np.int64) + p["input1_offset"]) << p["left_shift"]
        b = (x2.astype(np.int64) + p["input2_offset"]) << p["left_shift"]
        sa = multiply_by_quantized_multiplier(a, p["input1_multiplier"], p["input1_shift"])
        sb = multiply_by_quantized_multiplier(b, p["input2_multiplier"], p["input2_shift"])
        v = multiply_by_quantized_multiplier(sa + sb, p["output_multiplier"], p["output_shift"]) + p["output_offset"]
        v = np.clip(v, p["act_min"], p["act_max"]).astype(np.int8)
        return [v.reshape(graph.tensors[node.outputs[0]].shape)]

"""DEQUANTIZE int8 -> float32 (model outputs): TFLite Micro's dequantize_common.cc and
reference_ops::Dequantize, out = float(scale * (q - zero_point)). The one op with float data.
Kernel: runtime_c/src/tc_dequantize_s8_f32.c."""
from __future__ import annotations

import numpy as np

from ._common import emit_call, input_expr, int8_tensor, numel, op_error, same_shape, tensor
from .base import OpHandler, register
from .quantize import FLOAT_FIELDS, float_bits


@register("DEQUANTIZE")
class DequantizeHandler(OpHandler):
    def resolve(self, node, graph):
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y = tensor(graph, node, node.outputs[0], "output")
        if y.dtype != "float32":
            raise op_error(node, graph, f"DEQUANTIZE to {y.dtype} is not supported (int8 -> float32 only)")
        same_shape(node, graph, x, y)
        node.params = dict(size=numel(x.shape), zero_point=zx, scale_bits=float_bits(sx))

    def emit(self, node, ctx):
        out = ctx.tensor(node.outputs[0])
        return emit_call(ctx, node, "tc_dequantize_params", FLOAT_FIELDS, node.params, "tc_dequantize_s8_f32",
                         [input_expr(ctx, node, 0), f"(float *)(void *){out}"])

    def macs(self, node, graph):
        return numel(graph.tensors[node.outputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        scale = np.array([p["scale_bits"]], dtype=np.uint32).view(np.float32)[0]
        d = (np.asarray(inputs[0]).astype(np.int32) - p["zero_point"]).astype(np.float32)
        return [(scale * d).astype(np.float32).reshape(graph.tensors[node.outputs[0]].shape)]

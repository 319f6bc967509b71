"""MEAN (int8, any axes of an up to 4-D input, keep_dims or not): TFLite Micro's
reduce_common.cc + reference_ops::QuantizedMeanOrSum: int32 sum, 1/count folded into the
requantization multiplier (integer only). The installed TFLite Micro takes this path for int8
even when input and output quantization are equal (checked against it in
tests/test_kernels_ops.py; some TFLM versions divide by count instead in that case).
Kernel: runtime_c/src/tc_mean_s8.c."""
from __future__ import annotations

import numpy as np

from ..quantize import multiply_by_quantized_multiplier, quantize_multiplier
from ._common import const_ints, emit_call, extend4, f32, i32_fields, input_expr, int8_tensor, numel, op_error
from .base import OpHandler, register

FIELDS = i32_fields(["d0", "d1", "d2", "d3", "r0", "r1", "r2", "r3", "count", "input_zero_point",
                     "output_zero_point", "multiplier", "shift"])


def fold_count(mult: int, shift: int, count: int):
    """QuantizedMeanOrSum: fold 1/count into (multiplier, shift), integer arithmetic as TFLM."""
    s = count.bit_length() - 1  # 63 - CountLeadingZeros(uint64 count)
    s = min(s, 32)
    s = min(s, 31 + shift)
    return int((mult << s) // count), shift - s


@register("MEAN")
class MeanHandler(OpHandler):
    n_inputs = (2, 2)
    def parse(self, raw, graph):
        o = raw.options
        return {"keep_dims": bool(o.KeepDims()) if o is not None else False}

    def resolve(self, node, graph):
        if len(node.inputs) != 2:
            raise op_error(node, graph, f"expects 2 inputs (data, axis), got {len(node.inputs)}")
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        axes = const_ints(graph, node, node.inputs[1], "axis")
        if graph.tensors[node.inputs[1]].dtype != "int32":
            raise op_error(node, graph, f"axis tensor is {graph.tensors[node.inputs[1]].dtype}; TFLite Micro "
                                        "requires int32")
        rank = len(x.shape)
        if rank > 4 or rank < 1:
            raise op_error(node, graph, f"rank-{rank} input is not supported (1 to 4 dimensions)")
        if not 1 <= axes.size <= 4:
            raise op_error(node, graph, f"{axes.size} axes given; MEAN takes 1 to 4 (TFLite Micro's limit)")
        red = set()
        for a in axes:
            a = int(a) + rank if a < 0 else int(a)
            if not 0 <= a < rank:
                raise op_error(node, graph, f"axis {int(a)} is not a dimension of the rank-{rank} input")
            if a in red:
                raise op_error(node, graph, f"axis {a} is given twice")
            red.add(a)
        keep = bool(node.attrs.get("keep_dims", False))
        expect = [1 if k in red else int(d) for k, d in enumerate(x.shape) if keep or k not in red]
        if [int(d) for d in y.shape] != expect:
            raise op_error(node, graph, f"output shape {list(y.shape)} is not the reduced shape {expect} "
                                        f"(keep_dims {keep})")
        d4 = extend4(x.shape, node, graph, "input")
        r4 = [0] * (4 - rank) + [1 if k in red else 0 for k in range(rank)]
        count = numel([d for d, r in zip(d4, r4) if r])
        if count > 1 << 23:
            raise op_error(node, graph, f"reduces {count} elements; at most 2^23 are supported")
        p = {f"d{k}": d4[k] for k in range(4)}
        p.update({f"r{k}": r4[k] for k in range(4)})
        p.update(count=count, input_zero_point=zx, output_zero_point=zy)
        m, s = quantize_multiplier(f32(sx) / f32(sy))
        m, s = fold_count(m, s, count)
        p.update(multiplier=m, shift=s)
        node.params = p

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_mean_params", FIELDS, node.params, "tc_mean_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def macs(self, node, graph):
        return numel(graph.tensors[node.inputs[0]].shape)

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).astype(np.int64).reshape([p[f"d{k}"] for k in range(4)])
        axes = tuple(k for k in range(4) if p[f"r{k}"])
        s = x.sum(axis=axes) if axes else x
        v = multiply_by_quantized_multiplier(s - p["input_zero_point"] * p["count"], p["multiplier"], p["shift"])
        v = np.clip(v + p["output_zero_point"], -128, 127)
        return [np.asarray(v).astype(np.int8).reshape(graph.tensors[node.outputs[0]].shape)]

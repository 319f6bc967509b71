"""PAD (int8, constant padding with the output zero point, up to 4-D): TFLite Micro's pad.cc
(raw byte copy, no requantization). Kernel: runtime_c/src/tc_pad_s8.c."""
from __future__ import annotations

import numpy as np

from ._common import const_ints, emit_call, extend4, i32_fields, input_expr, int8_tensor, op_error
from .base import OpHandler, register

FIELDS = i32_fields(["in_d0", "in_d1", "in_d2", "in_d3", "pad_b0", "pad_b1", "pad_b2", "pad_b3",
                     "pad_a0", "pad_a1", "pad_a2", "pad_a3", "pad_value"])


@register("PAD")
class PadHandler(OpHandler):
    n_inputs = (2, 2)
    def resolve(self, node, graph):
        if len(node.inputs) != 2:
            raise op_error(node, graph, f"expects 2 inputs (data, paddings), got {len(node.inputs)}")
        x, sx, zx = int8_tensor(graph, node, node.inputs[0], "input")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        pads = const_ints(graph, node, node.inputs[1], "paddings")
        if graph.tensors[node.inputs[1]].dtype != "int32":
            raise op_error(node, graph, f"paddings tensor is {graph.tensors[node.inputs[1]].dtype}; int32 expected")
        rank = len(x.shape)
        if pads.size != 2 * rank:
            raise op_error(node, graph, f"paddings hold {pads.size} values for a rank-{rank} input (need {2 * rank})")
        pads = pads.reshape(rank, 2)
        if (pads < 0).any():
            raise op_error(node, graph, f"negative paddings {pads.tolist()} are not supported")
        expect = [int(d) + int(b) + int(a) for d, (b, a) in zip(x.shape, pads)]
        if [int(d) for d in y.shape] != expect:
            raise op_error(node, graph, f"output shape {list(y.shape)} does not match input + paddings = {expect}")
        while rank > 4 and x.shape[len(x.shape) - rank] == 1 and pads[0].sum() == 0:
            pads = pads[1:]
            rank -= 1
        if rank > 4:
            raise op_error(node, graph, f"rank {len(x.shape)} is not supported (at most 4 dimensions)")
        d4 = extend4(x.shape[len(x.shape) - rank:], node, graph, "input")
        p4 = [[0, 0]] * (4 - rank) + pads.tolist()
        p = {f"in_d{k}": d4[k] for k in range(4)}
        p.update({f"pad_b{k}": int(p4[k][0]) for k in range(4)})
        p.update({f"pad_a{k}": int(p4[k][1]) for k in range(4)})
        p["pad_value"] = zy
        node.params = p

    def emit(self, node, ctx):
        return emit_call(ctx, node, "tc_pad_params", FIELDS, node.params, "tc_pad_s8",
                         [input_expr(ctx, node, 0), ctx.tensor(node.outputs[0])])

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).astype(np.int8).reshape([p[f"in_d{k}"] for k in range(4)])
        y = np.pad(x, [(p[f"pad_b{k}"], p[f"pad_a{k}"]) for k in range(4)], constant_values=p["pad_value"])
        return [y.astype(np.int8).reshape(graph.tensors[node.outputs[0]].shape)]

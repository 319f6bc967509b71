"""CONCATENATION (int8, up to 4-D, any axis): TFLite Micro's concatenation.cc copies raw int8
values (no requantization), so it requires every input's scale and zero point to equal the
output's, and the fused activation to be NONE. Kernel: runtime_c/src/tc_concat_s8.c,
called once per input."""
from __future__ import annotations

import numpy as np

from ._common import act_name, emit_call, i32_fields, input_expr, int8_tensor, numel, op_error
from .base import OpHandler, register

FIELDS = i32_fields(["outer", "in_inner", "out_inner", "offset"])


@register("CONCATENATION")
class ConcatenationHandler(OpHandler):
    n_inputs = (1, 10)  # TFLite Micro: kMaxInputNum
    def parse(self, raw, graph):
        o = raw.options
        if o is None:
            return {"axis": 0, "activation": "NONE"}
        return {"axis": int(o.Axis()), "activation": act_name(o.FusedActivationFunction())}

    def resolve(self, node, graph):
        if node.attrs.get("activation", "NONE") != "NONE":
            raise op_error(node, graph, f"fused activation {node.attrs['activation']} is not supported "
                                        "(TFLite Micro requires NONE)")
        y, sy, zy = int8_tensor(graph, node, node.outputs[0], "output")
        rank = len(y.shape)
        if rank > 4:
            raise op_error(node, graph, f"rank {rank} is not supported (at most 4 dimensions, as TFLite Micro)")
        axis = int(node.attrs.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise op_error(node, graph, f"axis {node.attrs.get('axis')} is not a dimension of the rank-{rank} output")
        outer = numel(y.shape[:axis])
        inner = numel(y.shape[axis + 1:])
        parts, off = [], 0
        for k, tid in enumerate(node.inputs):
            x, sx, zx = int8_tensor(graph, node, tid, f"input {k}")
            if sx != sy or zx != zy:
                raise op_error(node, graph, f"input {k} quantization (scale {float(sx):.6g}, zero point {zx}) differs "
                                            f"from the output's (scale {float(sy):.6g}, zero point {zy}); int8 "
                                            "concatenation needs them equal (as TFLite Micro)")
            if len(x.shape) != rank or any(int(a) != int(b) for j, (a, b) in enumerate(zip(x.shape, y.shape))
                                           if j != axis):
                raise op_error(node, graph, f"input {k} shape {list(x.shape)} does not fit output {list(y.shape)} "
                                            f"on axis {axis}")
            n = int(x.shape[axis]) * inner
            parts.append(dict(outer=outer, in_inner=n, out_inner=int(y.shape[axis]) * inner, offset=off))
            off += n
        if off != int(y.shape[axis]) * inner:
            raise op_error(node, graph, f"inputs add up to {off // max(inner, 1)} along axis {axis}, "
                                        f"output has {y.shape[axis]}")
        node.params = dict(axis=axis, parts=parts)

    def emit(self, node, ctx):
        lines = []
        for k, part in enumerate(node.params["parts"]):
            lines += emit_call(ctx, node, "tc_concat_params", FIELDS, part, "tc_concat_s8",
                               [input_expr(ctx, node, k), ctx.tensor(node.outputs[0])])
        return lines

    def reference(self, node, graph, inputs):
        y = np.concatenate([np.asarray(x).astype(np.int8) for x in inputs], axis=node.params["axis"])
        return [y.reshape(graph.tensors[node.outputs[0]].shape)]

"""RESHAPE: no arithmetic (TFLite Micro copies the bytes). The planner aliases the output to
the input (inplace = "alias") and nothing is emitted; otherwise (e.g. a constant input) the
bytes are copied with tc_copy_s8."""
from __future__ import annotations

import numpy as np

from ._common import input_expr, numel, op_error, tensor
from .base import OpHandler, register


@register("RESHAPE")
class ReshapeHandler(OpHandler):
    n_inputs, optional_inputs = (1, 2), (1,)
    inplace = "alias"

    def resolve(self, node, graph):
        x = tensor(graph, node, node.inputs[0], "input")
        y = tensor(graph, node, node.outputs[0], "output")
        if x.dtype != y.dtype:
            raise op_error(node, graph, f"input type {x.dtype} differs from output type {y.dtype}")
        if numel(x.shape) != numel(y.shape):
            raise op_error(node, graph, f"input {list(x.shape)} and output {list(y.shape)} sizes differ")
        node.params = dict(size=numel(x.shape) * np.dtype(x.dtype).itemsize)

    def emit(self, node, ctx):
        src = input_expr(ctx, node, 0)
        dst = ctx.tensor(node.outputs[0])
        if src == dst:
            return []
        return [f"tc_copy_s8({node.params['size']}, {src}, {dst});"]

    def reference(self, node, graph, inputs):
        return [np.asarray(inputs[0]).reshape(graph.tensors[node.outputs[0]].shape).copy()]

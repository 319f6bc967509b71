"""Numpy graph executor: runs a resolved graph with each op handler's bit-exact ``reference``.

A debugging and verification aid (not the product): when the generated C and TFLite Micro
disagree, running the same input here and comparing every intermediate tensor
(``run_graph(..., return_all=True)``) shows the first op where the numbers part ways.

Constant inputs are passed as their effective values: a clustered weight tensor as
``clustering.values()`` (the codebook lookup), every other constant as its data. Absent
optional inputs (id -1) are passed as ``None``.
"""
from __future__ import annotations

import numpy as np

from .errors import TinyClusterError
from .ops import get_handler


def effective_value(t):
    """The value a constant tensor stands for at run time (clustered weights looked up)."""
    if t.clustering is not None:
        return t.clustering.values()
    return t.data


def _as_input(graph, tid, arr):
    t = graph.tensors[tid]
    a = np.asarray(arr)
    if a.size != t.size:
        raise TinyClusterError(f"input '{t.name}' needs {t.size} values of shape {list(t.shape)}, got {a.size}")
    if a.dtype != np.dtype(t.dtype):
        if np.issubdtype(a.dtype, np.integer) and np.issubdtype(np.dtype(t.dtype), np.integer):
            info = np.iinfo(np.dtype(t.dtype))
            if a.min(initial=0) < info.min or a.max(initial=0) > info.max:
                raise TinyClusterError(f"input '{t.name}' values out of {t.dtype} range")
        a = a.astype(t.dtype)
    return a.reshape(t.shape)


def run_graph(graph, inputs, return_all: bool = False):
    """Run ``graph`` (already resolved: ``resolve_graph``) on ``inputs``.

    inputs: one array for a single-input model, or a list with one array per graph input
    (any shape with the right number of elements; integer arrays are range-checked and cast
    to the input tensor's dtype).
    Returns the output array (a list of arrays for several outputs); with ``return_all``,
    a dict tensor id -> array of every tensor computed (inputs and activations included).
    """
    if len(graph.inputs) == 1 and not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != len(graph.inputs):
        raise TinyClusterError(f"{graph.name}: expects {len(graph.inputs)} inputs, got {len(inputs)}")
    values = {}
    for tid, arr in zip(graph.inputs, inputs):
        values[tid] = _as_input(graph, tid, arr)
    for n in graph.nodes:
        args = []
        for tid in n.inputs:
            if tid < 0:
                args.append(None)
            elif tid in values:
                args.append(values[tid])
            else:
                t = graph.tensors[tid]
                if not t.is_const:
                    raise TinyClusterError(f"{graph.name}: {n.name} reads tensor '{t.name}' before it is computed")
                args.append(effective_value(t))
        outs = get_handler(n.op).reference(n, graph, args)
        if len(outs) != len(n.outputs):
            raise TinyClusterError(f"internal: {n.name} reference returned {len(outs)} outputs, "
                                   f"expected {len(n.outputs)}")
        for tid, o in zip(n.outputs, outs):
            t = graph.tensors[tid]
            o = np.asarray(o)
            if o.size != t.size:
                raise TinyClusterError(f"internal: {n.name} reference produced {o.size} values for "
                                       f"'{t.name}' of shape {list(t.shape)}")
            values[tid] = o.reshape(t.shape)
    if return_all:
        return values
    outs = [values[tid] for tid in graph.outputs]
    return outs[0] if len(outs) == 1 else outs

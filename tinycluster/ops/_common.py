"""Helpers shared by the non-weighted op handlers (pooling, elementwise, activations,
softmax, shape ops). Private module (leading underscore: not an op, not registered)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TinyClusterError

# tflite.ActivationFunctionType / tflite.Padding values (schema.fbs)
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}


def act_name(code) -> str:
    return _ACTIVATIONS.get(int(code), f"activation {int(code)}")


def padding_name(code) -> str:
    return _PADDINGS.get(int(code), f"padding {int(code)}")


def op_error(node, graph, msg: str) -> TinyClusterError:
    """One-line error naming the model file (when known), the operator index and the op."""
    where = f"operator {node.index} ({node.op})"
    src = getattr(graph, "source", "") or ""
    if src:
        where = f"{Path(src).name}: {where}"
    return TinyClusterError(f"{where}: {msg}")


def tensor(graph, node, tid, what: str):
    if tid is None or tid < 0 or tid >= len(graph.tensors):
        raise op_error(node, graph, f"{what} is missing")
    return graph.tensors[tid]


def int8_tensor(graph, node, tid, what: str):
    """An int8 tensor with per-tensor quantization; returns (tensor, scale(float32), zero_point)."""
    t = tensor(graph, node, tid, what)
    if t.dtype != "int8":
        raise op_error(node, graph, f"{what} '{t.name}' is {t.dtype}; only int8 is supported")
    if t.quant is None or t.quant.scale.size == 0:
        raise op_error(node, graph, f"{what} '{t.name}' has no quantization parameters (int8 tensors need a "
                                    "scale and zero point)")
    if t.quant.scale.size > 1 and not (np.all(t.quant.scale == t.quant.scale[0])
                                        and np.all(t.quant.zero_point == t.quant.zero_point[0])):
        raise op_error(node, graph, f"{what} '{t.name}' is quantized per channel; this op needs per-tensor "
                                    "quantization")
    scale = np.float32(t.quant.scale[0])
    zp = int(t.quant.zero_point[0])
    if not (np.isfinite(scale) and scale > 0):
        raise op_error(node, graph, f"{what} '{t.name}' has an invalid scale {float(scale)}")
    if not -128 <= zp <= 127:
        raise op_error(node, graph, f"{what} '{t.name}' has zero point {zp} outside [-128, 127]")
    return t, scale, zp


def const_ints(graph, node, tid, what: str) -> np.ndarray:
    t = tensor(graph, node, tid, what)
    if t.data is None:
        raise op_error(node, graph, f"{what} '{t.name}' must be a constant tensor (computed at run time "
                                    "in this model)")
    return np.asarray(t.data).astype(np.int64).reshape(-1)


def extend4(shape, node=None, graph=None, what="tensor"):
    """TFLite's RuntimeShape::ExtendedShape(4, shape); leading 1s beyond rank 4 are dropped."""
    shape = [int(d) for d in shape]
    while len(shape) > 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) > 4:
        raise op_error(node, graph, f"{what} has rank {len(shape)}; at most 4 dimensions are supported")
    return [1] * (4 - len(shape)) + shape


def same_shape(node, graph, x, y):
    """Element-wise ops: TFLite gives the output the input's shape (and TFLite Micro computes
    garbage when the model declares another one, even of the same size)."""
    if [int(d) for d in x.shape] != [int(d) for d in y.shape]:
        raise op_error(node, graph, f"output shape {list(y.shape)} is not the input's shape {list(x.shape)}")


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def f32(x) -> float:
    """A float32 value as the exact double C++ sees after static_cast<double>."""
    return float(np.float32(x))


def emit_call(ctx, node, ctype: str, fields, params: dict, fn: str, args) -> list:
    """Declare the params struct (fields: [(name, c_type)]) and return the kernel call."""
    ident = ctx.const_struct(f"n{node.index}_{node.op.lower()}", ctype,
                             [(n, t, int(params[n])) for n, t in fields])
    return [f"{fn}(&{ident}, {', '.join(args)});"]


def input_expr(ctx, node, k: int) -> str:
    """C expression for input k: an arena buffer, or a flash array for a constant tensor."""
    graph = ctx.graph
    tid = node.inputs[k]
    t = graph.tensors[tid]
    if t.is_const:
        return ctx.const_array(f"n{node.index}_in{k}", "int8_t", np.asarray(t.data).astype(np.int8).reshape(-1))
    return ctx.tensor(tid)


def i32_fields(names):
    return [(n, "int32_t") for n in names]


def round_half_away_f32(q):
    """std::round on float32 values (exact: the fraction q - trunc(q) is exact in float32)."""
    q = np.asarray(q, dtype=np.float32)
    t = np.trunc(q)
    frac = q - t
    return t + np.where(frac >= 0.5, 1, 0).astype(np.float32) - np.where(frac <= -0.5, 1, 0).astype(np.float32)

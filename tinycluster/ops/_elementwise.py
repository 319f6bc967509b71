"""Broadcast geometry shared by ADD and MUL (TFLite's NdArrayDescsForElementwiseBroadcast,
restricted to 4-D)."""
from __future__ import annotations

import numpy as np

from ._common import extend4, op_error

# the geometry fields of tc_add_params / tc_mul_params: output dims, then (after the
# op's own fields) one broadcast mask per input
DIM_FIELDS = [("d0", "int32_t"), ("d1", "int32_t"), ("d2", "int32_t"), ("d3", "int32_t")]
BCAST_FIELDS = [("a_bcast", "uint8_t"), ("b_bcast", "uint8_t")]


def _bcast_mask(shape4, out4) -> int:
    """Bit k set where the input has size 1 and the output does not (broadcast along dim k)."""
    return sum(1 << k for k in range(4) if shape4[k] != out4[k])


def bcast_strides(d4, mask: int):
    """Mirror of tc_bcast_strides() (tc_common.h): element strides of an input over the
    output dims, 0 along broadcast dims."""
    strides, acc = [0] * 4, 1
    for k in range(3, -1, -1):
        if not (mask >> k) & 1:
            strides[k] = acc
            acc *= int(d4[k])
    return strides


def broadcast_params(node, graph, sa, sb, so) -> dict:
    """Geometry of TFLite Micro's element-wise loop (up to 4-D). TFLite Micro walks the output's
    shape and indexes each input through its broadcast strides, so the output must be exactly
    the broadcast shape of the inputs (leading 1s aside); shapes that do not broadcast, or an
    output of the same size but another shape, make it read other elements than NumPy
    broadcasting (or past the end of an input) and are refused."""
    sa, sb, so = (tuple(int(d) for d in x) for x in (sa, sb, so))
    try:
        expected = tuple(np.broadcast_shapes(sa, sb))
    except ValueError:
        raise op_error(node, graph, f"input shapes {list(sa)} and {list(sb)} do not broadcast") from None
    if extend4(so, node, graph, "output") != extend4(expected, node, graph, "output"):
        raise op_error(node, graph, f"output shape {list(so)} is not the broadcast shape {list(expected)} of the "
                                    f"inputs {list(sa)} and {list(sb)}")
    a4 = extend4(sa, node, graph, "input 1")
    b4 = extend4(sb, node, graph, "input 2")
    o4 = extend4(expected, node, graph, "output")
    p = {f"d{k}": o4[k] for k in range(4)}
    p["a_bcast"], p["b_bcast"] = _bcast_mask(a4, o4), _bcast_mask(b4, o4)
    return p


def broadcast_view(p, x1, x2):
    """Both inputs expanded to the 4-D output shape, exactly as the kernel indexes them."""
    o4 = tuple(int(p[f"d{k}"]) for k in range(4))

    def expand(x, pre):
        x = np.asarray(x).reshape(-1)
        strides = bcast_strides(o4, int(p[f"{pre}_bcast"]))
        idx = np.zeros(o4, dtype=np.int64)
        for k in range(4):
            shape = [1, 1, 1, 1]
            shape[k] = o4[k]
            idx = idx + np.arange(o4[k]).reshape(shape) * strides[k]
        return x[idx]

    return expand(x1, "a"), expand(x2, "b")


class BinaryElementwise:
    """Parse and the common half of resolve for ADD and MUL (mixed into their handlers)."""

    inplace = "elementwise"

    def parse(self, raw, graph):
        from ._common import act_name

        o = raw.options
        return {"activation": act_name(o.FusedActivationFunction()) if o is not None else "NONE"}

    def operands(self, node, graph):
        """((a, sa, za), (b, sb, zb), (o, so, zo), activation, broadcast params) after the checks."""
        from ._common import int8_tensor

        if len(node.inputs) != 2 or len(node.outputs) != 1:
            raise op_error(node, graph, f"expects 2 inputs and 1 output, got {len(node.inputs)} and {len(node.outputs)}")
        a = int8_tensor(graph, node, node.inputs[0], "input 1")
        b = int8_tensor(graph, node, node.inputs[1], "input 2")
        o = int8_tensor(graph, node, node.outputs[0], "output")
        act = node.attrs.get("activation", "NONE")
        if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            raise op_error(node, graph, f"fused activation {act} is not supported")
        return a, b, o, act, broadcast_params(node, graph, a[0].shape, b[0].shape, o[0].shape)

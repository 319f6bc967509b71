"""DEPTHWISE_CONV_2D on packed cluster indices (runtime_c/src/tc_depthwise_conv2d_packed.c).

Semantics: TFLite Micro reference_integer_ops::DepthwiseConvPerChannel (batch 1).
"""
from __future__ import annotations

import numpy as np

from ..quantize import requantize
from . import _packed_common as pc
from .base import OpHandler, register
from .conv_2d import GEOMETRY_RANGES, U16, conv_operands, parse_conv_options, pad_input, resolve_geometry, taps


def struct_fields(p: dict, layout) -> list:
    """tc_dw_packed_params, in C declaration order."""
    return [
        ("in_h", "uint16_t", p["in_h"]), ("in_w", "uint16_t", p["in_w"]), ("in_c", "uint16_t", p["in_c"]),
        ("out_w", "uint16_t", p["out_w"]), ("out_c", "uint16_t", p["out_c"]),
        ("k_h", "uint16_t", p["k_h"]), ("k_w", "uint16_t", p["k_w"]),
        ("depth_multiplier", "uint16_t", p["depth_multiplier"]), ("codebook_stride", "uint16_t", layout.stride),
        ("input_offset", "int16_t", p["input_offset"]),
        ("stride_h", "uint8_t", p["stride_h"]), ("stride_w", "uint8_t", p["stride_w"]),
        ("dil_h", "uint8_t", p["dil_h"]), ("dil_w", "uint8_t", p["dil_w"]),
        ("pad_top", "uint8_t", p["pad_top"]), ("pad_left", "uint8_t", p["pad_left"]),
        ("output_offset", "int8_t", p["output_offset"]),
        ("act_min", "int8_t", p["act_min"]), ("act_max", "int8_t", p["act_max"]),
        ("bits", "uint8_t", layout.bits), ("requant_per_channel", "uint8_t", p["requant_per_channel"]),
        ("bias_bits", "uint8_t", p.get("bias_bits", 32)),
    ]


def scratch_size(p: dict) -> int:
    """Mirror of tc_depthwise_conv2d_packed_get_buffer_size(): alignment slack, the decoded
    filter (tc_dw_filter_bytes: int16, + a 16-lane copy for 8-channel stride-1 layers, rounded
    up to 4), the prepared requantization: a flag word and 12 bytes (tc_rq) per output channel."""
    ntaps = p["k_h"] * p["k_w"]
    pairs = p["out_c"] == 8 and p["depth_multiplier"] == 1 and p["stride_w"] == 1  # dw_pairs() in C
    filt = (2 * ntaps * p["out_c"] + (2 * ntaps * 16 if pairs else 0) + 3) // 4 * 4
    return 3 + filt + 4 + 12 * p["out_c"]


@register("DEPTHWISE_CONV_2D")
class DepthwiseConv2D(OpHandler):
    n_inputs, optional_inputs = (2, 3), (2,)
    weight_input = 1
    weight_channel_axis = 3
    inplace = "rows"

    def parse(self, raw, graph):
        o = raw.options
        return dict(parse_conv_options(raw), depth_multiplier=0 if o is None else int(o.DepthMultiplier()))

    def resolve(self, node, graph):
        (ih, iw, ic), (one, kh, kw, oc), out_shape = conv_operands(node, graph)
        if one != 1:
            pc.fail(node, graph, f"filter shape {(one, kh, kw, oc)} must be [1, kh, kw, channels]")
        # TFLite Micro's kernel loops over input channels x the option's depth_multiplier and
        # assumes (debug builds only) that it equals filter channels / input depth: check it here
        dm = int(node.attrs.get("depth_multiplier", 0))
        if dm < 1 or dm * ic != oc:
            pc.fail(node, graph, f"depth_multiplier {dm} does not match the shapes: input depth {ic} x "
                                 f"depth_multiplier must equal the filter's {oc} channels")
        if out_shape[3] != oc:
            pc.fail(node, graph, f"output depth {out_shape[3]} != filter channels {oc}")
        p = resolve_geometry(node, graph, (1, ih, iw, ic), kh, kw, out_shape)
        q = pc.resolve_requant(node, graph, oc)
        q.pop("filter_scales")
        pc.check_symmetric_weights(node, graph, node.inputs[1])
        p.update(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=kh, k_w=kw, depth_multiplier=dm, **q)
        pc.check_range(node, graph, p, dict(GEOMETRY_RANGES, depth_multiplier=U16))
        node.params = p

    def emitted_bias(self, node, graph, layout):
        """(params, bias) as emitted (no folding: depthwise layers pad); bias_bits the narrowest
        width that holds the biases."""
        p = node.params
        bid = node.inputs[2] if len(node.inputs) > 2 else -1
        bias = pc.bias_values(node, graph, bid, p["out_c"])
        return dict(p, bias_bits=pc.bias_bits_for(bias)), bias

    def _consts(self, node, ctx):
        layout, _ = pc.weight_layout_of(node, ctx.graph, self)
        p, bias = self.emitted_bias(node, ctx.graph, layout)
        return pc.emit_weight_consts(node, ctx, f"dw{node.index}", layout, bias, p["mult"], p["shift"],
                                     "tc_dw_packed_params", struct_fields(p, layout))

    def emit_rows(self, node, ctx, out_expr, oy0_expr, oy1_expr) -> list:
        """Output rows [oy0, oy1) into out_expr (which points at row oy0), for the row-by-row
        in-place loop: the filter is decoded into the node's scratch when oy0 == 0 and reused by
        the following row ranges. Contract: ranges are visited in increasing order starting at
        row 0 within one invoke, and the node's scratch is not touched in between (as
        emit.py's ring loop does)."""
        n = self._consts(node, ctx)
        scratch = ctx.scratch()
        return [f"if (({oy0_expr}) == 0) {{",
                f"    tc_depthwise_conv2d_packed_decode(&{n['params']}, {n['packed']}, {n['codebooks']}, "
                f"{n['map']}, {scratch});",
                "}",
                f"tc_depthwise_conv2d_packed_rows(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['bias']}, "
                f"{n['mult']}, {n['shift']}, {oy0_expr}, {oy1_expr}, {out_expr}, {scratch});"]

    def emit(self, node, ctx) -> list:
        """The whole output in one call (decode + rows)."""
        n = self._consts(node, ctx)
        return [f"tc_depthwise_conv2d_packed(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['packed']}, "
                f"{n['codebooks']}, {n['map']}, {n['bias']}, {n['mult']}, {n['shift']}, "
                f"0, {node.params['out_h']}, {ctx.tensor(node.outputs[0])}, {ctx.scratch()});"]

    def row_geometry(self, node, graph):
        return int(node.params["stride_h"]), int(node.params["pad_top"])

    def scratch_bytes(self, node, graph) -> int:
        return scratch_size(node.params)

    def macs(self, node, graph) -> int:
        p = node.params
        return p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"]

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).reshape(p["in_h"], p["in_w"], p["in_c"]).astype(np.int64) + p["input_offset"]
        w = np.asarray(inputs[1]).reshape(p["k_h"], p["k_w"], p["out_c"]).astype(np.int64)
        bias = inputs[2] if len(inputs) > 2 else None
        xp = pad_input(x, p)
        src = np.arange(p["out_c"]) // p["depth_multiplier"]
        acc = np.zeros((p["out_h"], p["out_w"], p["out_c"]), np.int64)
        for ky in range(p["k_h"]):
            for kx in range(p["k_w"]):
                acc += taps(xp, p, ky, kx)[:, :, src] * w[ky, kx]
        if bias is not None:
            acc += np.asarray(bias).reshape(-1).astype(np.int64)
        acc = pc.wrap_int32(acc)
        out = requantize(acc, np.asarray(p["mult"]), np.asarray(p["shift"]), p["output_offset"],
                         p["act_min"], p["act_max"])
        return [out.reshape(1, p["out_h"], p["out_w"], p["out_c"])]

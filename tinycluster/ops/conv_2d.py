"""CONV_2D on packed cluster indices (runtime_c/src/tc_conv2d_packed.c).

Semantics: TFLite Micro reference_integer_ops::ConvPerChannel (batch 1, groups allowed).
"""
from __future__ import annotations

import numpy as np

from ..quantize import requantize
from . import _packed_common as pc
from .base import OpHandler, register

U16 = (1, 65535)
U8 = (0, 255)
SHALLOW_MAX, SHALLOW_BYTES = 32, 4096  # TC_CONV_SHALLOW_* in tc_conv2d_packed.c


def struct_fields(p: dict, layout) -> list:
    """tc_conv_packed_params, in C declaration order."""
    return [
        ("in_h", "uint16_t", p["in_h"]), ("in_w", "uint16_t", p["in_w"]), ("in_c", "uint16_t", p["in_c"]),
        ("out_w", "uint16_t", p["out_w"]), ("out_c", "uint16_t", p["out_c"]),
        ("k_h", "uint16_t", p["k_h"]), ("k_w", "uint16_t", p["k_w"]),
        ("filter_in_c", "uint16_t", p["filter_in_c"]), ("codebook_stride", "uint16_t", layout.stride),
        ("input_offset", "int16_t", p["input_offset"]),
        ("stride_h", "uint8_t", p["stride_h"]), ("stride_w", "uint8_t", p["stride_w"]),
        ("dil_h", "uint8_t", p["dil_h"]), ("dil_w", "uint8_t", p["dil_w"]),
        ("pad_top", "uint8_t", p["pad_top"]), ("pad_left", "uint8_t", p["pad_left"]),
        ("output_offset", "int8_t", p["output_offset"]),
        ("act_min", "int8_t", p["act_min"]), ("act_max", "int8_t", p["act_max"]),
        ("bits", "uint8_t", layout.bits), ("requant_per_channel", "uint8_t", p["requant_per_channel"]),
        ("bias_bits", "uint8_t", p.get("bias_bits", 32)),
    ]


def shallow_mode(p: dict) -> int:
    """Mirror of tc_conv_shallow_mode() (tc_packed_internal.h): 0 deep, 1 all filters as int16
    (input-channel pairs), 2 all filters as int8; the all-filters scratch stays <= 4 KiB."""
    fic, taps = p["filter_in_c"], p["k_h"] * p["k_w"]
    if fic != p["in_c"] or fic >= SHALLOW_MAX:
        return 0
    if 2 * taps * 2 * ((fic + 1) // 2) * p["out_c"] <= SHALLOW_BYTES:
        return 1
    return 2 if taps * fic * p["out_c"] <= SHALLOW_BYTES else 0


def is_shallow(p: dict) -> bool:
    return shallow_mode(p) != 0


def scratch_size(p: dict) -> int:
    """Mirror of tc_conv2d_packed_get_buffer_size()."""
    mode = shallow_mode(p)
    flen = p["k_h"] * p["k_w"] * p["filter_in_c"]
    if mode:  # all filters at once: the largest of the portable and the Arm forms
        if mode == 1:  # transposed, int16, input channels in pairs, + one filter
            pairs = (p["filter_in_c"] + 1) // 2
            portable = 3 + 2 * p["k_h"] * p["k_w"] * 2 * pairs * p["out_c"] + flen
        else:  # transposed, int8, + one filter
            portable = 3 + flen * (p["out_c"] + 1)
        # flag + 12 B per channel (prepared requantization / channel sums), int8 filters (4-byte
        # rounded), two-position patch (tc_conv_shallow_arm_bytes)
        arm = 3 + 4 + 12 * p["out_c"] + (flen * p["out_c"] + 3) // 4 * 4 + 4 * ((flen + 3) // 4 * 4)
        return max(portable, arm)
    # deep: prefix sums of two channels + two decoded filters as int16 (the Arm pair paths)
    return 3 + 8 * p["k_h"] * (p["k_w"] + 1) + 4 * p["k_h"] * p["k_w"] * p["filter_in_c"]


def parse_conv_options(raw):
    o = raw.options
    if o is None:
        return {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1, "activation": "NONE"}
    return {
        "padding": pc.padding_name(o.Padding()),
        "stride_h": int(o.StrideH()), "stride_w": int(o.StrideW()),
        # as stored: TFLite Micro runs the values it reads (0 included), so 0 is refused in resolve
        "dil_h": int(o.DilationHFactor()), "dil_w": int(o.DilationWFactor()),
        "activation": pc.activation_name(o.FusedActivationFunction()),
        **pc.parse_bias_type(o),
    }


# value ranges of the geometry fields shared by tc_conv_packed_params and tc_dw_packed_params
GEOMETRY_RANGES = {"in_h": U16, "in_w": U16, "in_c": U16, "out_w": U16, "out_c": U16, "k_h": U16, "k_w": U16,
                   "stride_h": (1, 255), "stride_w": (1, 255), "dil_h": (1, 255), "dil_w": (1, 255),
                   "pad_top": U8, "pad_left": U8}


def conv_operands(node, graph):
    """Checks shared by CONV_2D and DEPTHWISE_CONV_2D (4-D tensors, batch 1, constant filter);
    returns ((in_h, in_w, in_c), filter shape, output shape) as ints."""
    if len(node.inputs) < 2:
        pc.fail(node, graph, "needs input and filter tensors")
    inp, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    out = graph.tensors[node.outputs[0]]
    if len(inp.shape) != 4 or len(w.shape) != 4 or len(out.shape) != 4:
        pc.fail(node, graph, f"expects 4-D input/filter/output, got {inp.shape}, {w.shape}, {out.shape}")
    if int(inp.shape[0]) != 1 or int(out.shape[0]) != 1:
        pc.fail(node, graph, f"batch {inp.shape[0]} -> {out.shape[0]} is not supported (batch 1 only)")
    if not w.is_const:
        pc.fail(node, graph, "the filter must be a constant tensor")
    return (tuple(int(d) for d in inp.shape[1:]), tuple(int(d) for d in w.shape),
            [int(d) for d in out.shape])


def resolve_geometry(node, graph, in_shape, k_h, k_w, out_shape):
    """Strides, dilation, padding and output size (TFLite ComputePaddingHeightWidth)."""
    a = node.attrs
    pc.check_bias_type(node, graph)
    if a.get("padding") not in ("SAME", "VALID"):
        pc.fail(node, graph, f"padding {a.get('padding')} is not supported (SAME or VALID)")
    sh, sw, dh, dw = int(a["stride_h"]), int(a["stride_w"]), int(a.get("dil_h", 1)), int(a.get("dil_w", 1))
    if min(sh, sw, dh, dw) < 1:
        pc.fail(node, graph, f"strides ({sh}, {sw}) and dilations ({dh}, {dw}) must be >= 1")
    _, ih, iw, _ = in_shape
    oh = pc.out_size(a["padding"], ih, k_h, sh, dh)
    ow = pc.out_size(a["padding"], iw, k_w, sw, dw)
    if oh < 1 or ow < 1:
        pc.fail(node, graph, f"the {k_h}x{k_w} kernel does not fit the {ih}x{iw} input with {a['padding']} padding")
    if tuple(out_shape[1:3]) != (oh, ow):
        pc.fail(node, graph, f"output shape {tuple(out_shape)} does not match the computed {oh}x{ow}")
    return {
        "stride_h": sh, "stride_w": sw, "dil_h": dh, "dil_w": dw,
        "pad_top": pc.pad_before(sh, dh, ih, k_h, oh), "pad_left": pc.pad_before(sw, dw, iw, k_w, ow),
        "out_h": oh, "out_w": ow,
    }


def never_pads(p: dict) -> bool:
    """True when every window of every output position lies inside the input."""
    return (p["pad_top"] == 0 and p["pad_left"] == 0
            and (p["out_h"] - 1) * p["stride_h"] + (p["k_h"] - 1) * p["dil_h"] + 1 <= p["in_h"]
            and (p["out_w"] - 1) * p["stride_w"] + (p["k_w"] - 1) * p["dil_w"] + 1 <= p["in_w"])


def fold_input_offset(p: dict, weights, bias):
    """(params, bias) as emitted for a layer that never pads: io*sum(w[c]) is folded into the
    bias (int32 wrap) and the kernel runs with input_offset 0 (no weight sums at run time)."""
    w = np.asarray(weights).reshape(p["out_c"], -1).astype(np.int64)
    b = np.zeros(p["out_c"], np.int64) if bias is None else np.asarray(bias).reshape(-1).astype(np.int64)
    return dict(p, input_offset=0), pc.wrap_int32(b + int(p["input_offset"]) * w.sum(axis=1))


def pad_input(x, p):
    """x (int64, input_offset already added) padded with zeros (= real 0) for every tap."""
    ih, iw, c = x.shape
    need_h = (p["out_h"] - 1) * p["stride_h"] + (p["k_h"] - 1) * p["dil_h"] + 1
    need_w = (p["out_w"] - 1) * p["stride_w"] + (p["k_w"] - 1) * p["dil_w"] + 1
    xp = np.zeros((max(need_h, p["pad_top"] + ih), max(need_w, p["pad_left"] + iw), c), np.int64)
    xp[p["pad_top"]:p["pad_top"] + ih, p["pad_left"]:p["pad_left"] + iw] = x
    return xp


def taps(xp, p, ky, kx):
    """Input (padded) seen by tap (ky, kx) at every output position: [out_h, out_w, C]."""
    y0, x0 = ky * p["dil_h"], kx * p["dil_w"]
    return xp[y0:y0 + (p["out_h"] - 1) * p["stride_h"] + 1:p["stride_h"],
              x0:x0 + (p["out_w"] - 1) * p["stride_w"] + 1:p["stride_w"]]


@register("CONV_2D")
class Conv2D(OpHandler):
    n_inputs, optional_inputs = (2, 3), (2,)
    weight_input = 1
    weight_channel_axis = 0
    inplace = "rows"

    def parse(self, raw, graph):
        return parse_conv_options(raw)

    def resolve(self, node, graph):
        (ih, iw, ic), (oc, kh, kw, fic), out_shape = conv_operands(node, graph)
        if fic < 1 or ic % fic != 0 or oc % (ic // fic) != 0:
            pc.fail(node, graph, f"filter depth {fic} does not divide input depth {ic} into groups of the {oc} outputs")
        if out_shape[3] != oc:
            pc.fail(node, graph, f"output depth {out_shape[3]} != filter count {oc}")
        p = resolve_geometry(node, graph, (1, ih, iw, ic), kh, kw, out_shape)
        q = pc.resolve_requant(node, graph, oc)
        q.pop("filter_scales")
        pc.check_symmetric_weights(node, graph, node.inputs[1])
        p.update(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=kh, k_w=kw, filter_in_c=fic, **q)
        pc.check_range(node, graph, p, dict(GEOMETRY_RANGES, filter_in_c=U16))
        node.params = p

    # -- emission ---------------------------------------------------------------------------
    def emitted_bias(self, node, graph, layout):
        """(params, bias) as emitted for weights stored as ``layout``: the input offset folded
        into the bias where the layer never pads; bias_bits the narrowest width that holds it."""
        p = node.params
        bid = node.inputs[2] if len(node.inputs) > 2 else -1
        bias = pc.bias_values(node, graph, bid, p["out_c"])
        if p["input_offset"] != 0 and never_pads(p):
            p, bias = fold_input_offset(p, layout.values((p["out_c"], p["k_h"], p["k_w"], p["filter_in_c"]), 0),
                                        bias)
        return dict(p, bias_bits=pc.bias_bits_for(bias)), bias

    def _consts(self, node, ctx):
        layout, _ = pc.weight_layout_of(node, ctx.graph, self)
        p, bias = self.emitted_bias(node, ctx.graph, layout)
        return pc.emit_weight_consts(node, ctx, f"conv{node.index}", layout, bias, p["mult"], p["shift"],
                                     "tc_conv_packed_params", struct_fields(p, layout))

    def _call(self, node, ctx, n, out_expr, oy0_expr, oy1_expr) -> str:
        return (f"tc_conv2d_packed(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['packed']}, "
                f"{n['codebooks']}, {n['map']}, {n['bias']}, {n['mult']}, {n['shift']}, "
                f"{oy0_expr}, {oy1_expr}, {out_expr}, {ctx.scratch()});")

    def emit_rows(self, node, ctx, out_expr, oy0_expr, oy1_expr) -> list:
        """Output rows [oy0, oy1) into out_expr (which points at row oy0). Shallow layers (all
        filters in scratch) decode when oy0 == 0 and reuse the scratch for the following row
        ranges: ranges are visited in increasing order from row 0 within one invoke, with the
        node's scratch untouched in between (as emit.py's ring loop does). Deep layers: one
        self-contained call per range."""
        n = self._consts(node, ctx)
        if not is_shallow(node.params):
            return [self._call(node, ctx, n, out_expr, oy0_expr, oy1_expr)]
        scratch = ctx.scratch()
        return [f"if (({oy0_expr}) == 0) {{",
                f"    (void)tc_conv2d_packed_decode(&{n['params']}, {n['packed']}, {n['codebooks']}, "
                f"{n['map']}, {scratch});",
                "}",
                f"tc_conv2d_packed_rows(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['bias']}, "
                f"{n['mult']}, {n['shift']}, {oy0_expr}, {oy1_expr}, {out_expr}, {scratch});"]

    def emit(self, node, ctx) -> list:
        """The whole output in one call."""
        n = self._consts(node, ctx)
        return [self._call(node, ctx, n, ctx.tensor(node.outputs[0]), "0", str(node.params["out_h"]))]

    def row_geometry(self, node, graph):
        return int(node.params["stride_h"]), int(node.params["pad_top"])

    def prefers_row_chunks(self, node, graph) -> bool:
        """Deep layers decode their filters inside every call: in-place row-by-row code should
        pass several rows per call where the arena allows (planner.plan_memory)."""
        return not is_shallow(node.params)

    def scratch_bytes(self, node, graph) -> int:
        return scratch_size(node.params)

    def macs(self, node, graph) -> int:
        p = node.params
        return p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"] * p["filter_in_c"]

    # -- numpy reference ----------------------------------------------------------------------
    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).reshape(p["in_h"], p["in_w"], p["in_c"]).astype(np.int64) + p["input_offset"]
        w = np.asarray(inputs[1]).reshape(p["out_c"], p["k_h"], p["k_w"], p["filter_in_c"]).astype(np.int64)
        bias = inputs[2] if len(inputs) > 2 else None
        xp = pad_input(x, p)
        fic, oc = p["filter_in_c"], p["out_c"]
        groups = p["in_c"] // fic
        per_group = oc // groups
        acc = np.zeros((p["out_h"], p["out_w"], oc), np.int64)
        for ky in range(p["k_h"]):
            for kx in range(p["k_w"]):
                t = taps(xp, p, ky, kx)
                for g in range(groups):
                    cs = slice(g * per_group, (g + 1) * per_group)
                    acc[:, :, cs] += t[:, :, g * fic:(g + 1) * fic] @ w[cs, ky, kx, :].T
        if bias is not None:
            acc += np.asarray(bias).reshape(-1).astype(np.int64)
        acc = pc.wrap_int32(acc)
        out = requantize(acc, np.asarray(p["mult"]), np.asarray(p["shift"]), p["output_offset"],
                         p["act_min"], p["act_max"])
        return [out.reshape(1, p["out_h"], p["out_w"], oc)]

"""FULLY_CONNECTED on packed cluster indices (runtime_c/src/tc_fully_connected_packed.c).

Semantics: TFLite Micro reference_integer_ops::FullyConnected (per-tensor weights, with the
weights offset) and FullyConnectedPerChannel (per-channel weights). Rows (batches) are
numel(input) / in_features, as in TFLite.
"""
from __future__ import annotations

import numpy as np

from ..quantize import requantize
from . import _packed_common as pc
from .base import OpHandler, register

U16 = (1, 65535)


def struct_fields(p: dict, layout) -> list:
    """tc_fc_packed_params, in C declaration order."""
    return [
        ("in_features", "uint16_t", p["in_features"]), ("out_features", "uint16_t", p["out_features"]),
        ("batches", "uint16_t", p["batches"]), ("codebook_stride", "uint16_t", layout.stride),
        ("codebook_size", "uint16_t", layout.k),
        ("input_offset", "int16_t", p["input_offset"]), ("filter_offset", "int16_t", p["filter_offset"]),
        ("output_offset", "int8_t", p["output_offset"]),
        ("act_min", "int8_t", p["act_min"]), ("act_max", "int8_t", p["act_max"]),
        ("bits", "uint8_t", layout.bits), ("requant_per_channel", "uint8_t", p["requant_per_channel"]),
        ("tables", "uint8_t", p.get("tables", TABLES_FULL)),
        ("bias_bits", "uint8_t", p.get("bias_bits", 32)),
    ]


PAIR_MAX_BITS = 5  # TC_FC_PAIR_MAX_BITS
FC_BIAS_WIDTHS = (16, 32)  # stored bias widths the generator picks for FC (the kernel reads 16/24/32)


def pair_entries(p: dict, bits: int, codebook_stride: int) -> int:
    """Mirror of fc_pair_entries() (tc_fully_connected_packed.c): entries of the run-time pair
    table (two weights per word), 0 when the layer takes no table."""
    if not 1 <= bits <= PAIR_MAX_BITS:
        return 0
    e = 1 << (2 * bits)
    if codebook_stride == 0:
        return e if p["in_features"] * p["out_features"] >= 4 * e else 0
    return e if p["in_features"] >= 2 * e else 0


TABLES_NONE, TABLES_COMPACT, TABLES_FULL = 0, 1, 2  # tc_fc_packed_params.tables


def scratch_size(p: dict, bits: int, codebook_stride: int) -> int:
    """Mirror of tc_fully_connected_packed_get_buffer_size(), for the table level p["tables"]
    (default full): full = the pair table (4 B per entry) and the input row widened to int16
    pairs once per batch row (in_features rounded up to 4), + 3 bytes of alignment slack;
    compact = two int8 tables (2 B per entry); 0 for none and for layers without a pair table."""
    e = pair_entries(p, bits, codebook_stride)
    level = min(int(p.get("tables", TABLES_FULL)), TABLES_FULL) if e else TABLES_NONE
    if level == TABLES_COMPACT and bits != 4:
        level = TABLES_NONE  # compact tables: 4-bit row kernels only (fc_level())
    if level == TABLES_FULL:
        return 4 * e + 2 * ((p["in_features"] + 3) // 4 * 4) + 3
    return 2 * e if level == TABLES_COMPACT else 0


def scratch_levels(p: dict, bits: int, codebook_stride: int, per_channel: bool = False) -> list:
    """(table level, scratch bytes) the kernel can run with, fastest first, without 'none'.
    Per-channel layers (a codebook per row) take no compact level: the kernel would rebuild it
    per row, slower than no table (it ignores it there)."""
    out = []
    for level in (TABLES_FULL,) + (() if per_channel else (TABLES_COMPACT,)):
        n = scratch_size(dict(p, tables=level), bits, codebook_stride)
        if n > 0:
            out.append((level, n))
    return out


def level_for(p: dict, bits: int, codebook_stride: int, per_channel: bool, granted: int) -> int:
    """The table level a scratch of `granted` bytes holds (what the emitted params say)."""
    for level, n in scratch_levels(p, bits, codebook_stride, per_channel):
        if n <= granted:
            return level
    return TABLES_NONE


def fold_input_offset(p: dict, weights, bias):
    """(params, bias) as emitted: the input offset is folded into the bias
    (bias + io*sum(w) + fo*io*in, int32 wrap), the kernel then runs with input_offset 0 and
    skips the per-row weight sums. Same int32 result as TFLite Micro's loop."""
    io, fo, n = int(p["input_offset"]), int(p["filter_offset"]), int(p["in_features"])
    w = np.asarray(weights).reshape(p["out_features"], n).astype(np.int64)
    folded = np.asarray(bias).reshape(-1).astype(np.int64) + io * w.sum(axis=1) + fo * io * n
    return dict(p, input_offset=0), pc.wrap_int32(folded)


@register("FULLY_CONNECTED")
class FullyConnected(OpHandler):
    n_inputs, optional_inputs = (2, 3), (2,)
    weight_input = 1
    weight_channel_axis = 0
    inplace = "none"
    scratch_optional = True  # the pair tables only speed the kernel up: NULL scratch runs table-free

    def parse(self, raw, graph):
        o = raw.options
        if o is None:
            return {"activation": "NONE", "keep_num_dims": False, "weights_format": 0}
        return {
            "activation": pc.activation_name(o.FusedActivationFunction()),
            "keep_num_dims": bool(o.KeepNumDims()),
            "weights_format": int(o.WeightsFormat()),
            **pc.parse_bias_type(o),
        }

    def resolve(self, node, graph):
        if len(node.inputs) < 2:
            pc.fail(node, graph, "needs input and weights tensors")
        if node.attrs.get("weights_format", 0) != 0:
            pc.fail(node, graph, "shuffled weights formats are not supported (DEFAULT only)")
        pc.check_bias_type(node, graph)
        inp, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
        out = graph.tensors[node.outputs[0]]
        if len(w.shape) != 2:
            pc.fail(node, graph, f"weights must be 2-D [out, in], got {w.shape}")
        if not w.is_const:
            pc.fail(node, graph, "the weights must be a constant tensor")
        n_out, n_in = (int(d) for d in w.shape)
        # TFLite's FC output shape: [rows, units] (rows = input size / weight columns), or with
        # keep_num_dims the input's shape with its last dimension replaced by the units. TFLite
        # Micro does not resize the output: it takes the rows from the output shape, so any
        # other output shape computes something else.
        in_shape, out_shape = [int(d) for d in inp.shape], [int(d) for d in out.shape]
        if node.attrs.get("keep_num_dims"):
            if not in_shape or in_shape[-1] != n_in:
                pc.fail(node, graph, f"keep_num_dims needs an input whose last dimension is the {n_in} weight "
                                     f"columns, got {in_shape}")
            want = in_shape[:-1] + [n_out]
        else:
            if inp.size % n_in != 0:
                pc.fail(node, graph, f"input of {inp.size} values is not a whole number of {n_in}-feature rows")
            want = [inp.size // n_in, n_out]
        if out_shape != want:
            pc.fail(node, graph, f"output shape {out_shape} is not the [rows, units] = {want} the input "
                                 f"{in_shape} and weights {list(w.shape)} give")
        rows = inp.size // n_in
        q = pc.resolve_requant(node, graph, n_out)
        fs = q.pop("filter_scales")
        per_channel_weights = fs.size > 1
        if not per_channel_weights:
            self._check_bias_scale(node, graph, float(fs[0]))
        f_zp = 0 if per_channel_weights else int(w.quant.zero_point[0]) if w.quant.zero_point.size else 0
        p = dict(in_features=n_in, out_features=n_out, batches=rows, filter_offset=-f_zp, **q)
        pc.check_range(node, graph, p, {"in_features": U16, "out_features": U16, "batches": U16,
                                         "filter_offset": (-127, 128)})
        node.params = p

    @staticmethod
    def _check_bias_scale(node, graph, filter_scale: float):
        """TFLite Micro's per-tensor FC Prepare (GetQuantizedConvolutionMultipler): the bias scale
        (0 without quantization) must be within 2 % of an output step of input x weight scale."""
        bid = node.inputs[2] if len(node.inputs) > 2 else -1
        if bid < 0:
            return
        b = graph.tensors[bid]
        bias_scale = float(np.float32(b.quant.scale[0])) if b.quant is not None and b.quant.scale.size else 0.0
        in_s = float(np.float32(graph.tensors[node.inputs[0]].quant.scale[0]))
        out_s = float(np.float32(graph.tensors[node.outputs[0]].quant.scale[0]))
        if not abs(in_s * filter_scale - bias_scale) / out_s <= 0.02:
            pc.fail(node, graph, f"bias tensor '{b.name}' has scale {bias_scale:.6g}, but input scale x weight scale "
                                 f"is {in_s * filter_scale:.6g} (TFLite Micro requires them within 2 % of the output "
                                 "scale)")

    def emitted_bias(self, node, graph, layout):
        """(params, bias) as emitted for weights stored as ``layout``: the input offset folded
        into the bias; bias_bits the narrowest width that holds it."""
        p = node.params
        bid = node.inputs[2] if len(node.inputs) > 2 else -1
        bias = pc.bias_values(node, graph, bid, p["out_features"])
        if p["input_offset"] != 0:
            # a layer without a bias gets one (2 to 4 bytes per output) rather than a second
            # pass over its weights at run time
            if bias is None:
                bias = np.zeros(p["out_features"], np.int64)
            p, bias = fold_input_offset(p, layout.values((p["out_features"], p["in_features"]), 0), bias)
        # 16 or 32 bits: the kernel reads each bias once per output row, where the 3-byte form
        # would cost ~10 instructions per row on Cortex-M (conv and depthwise read it once per call)
        return dict(p, bias_bits=pc.bias_bits_for(bias, FC_BIAS_WIDTHS)), bias

    def _consts(self, node, ctx):
        graph = ctx.graph
        layout, _ = pc.weight_layout_of(node, graph, self)
        p, bias = self.emitted_bias(node, graph, layout)
        # the table level the planner's scratch holds (planner.plan_memory grants the largest
        # level the arena has room for at this layer; none: the kernel gets NULL)
        per_channel = layout.stride != 0 and layout.cmap is None
        p = dict(p, tables=level_for(p, layout.bits, layout.stride, per_channel,
                                     ctx.scratch_size(self.scratch_bytes(node, ctx.graph))))
        return pc.emit_weight_consts(node, ctx, f"fc{node.index}", layout, bias, p["mult"], p["shift"],
                                     "tc_fc_packed_params", struct_fields(p, layout))

    def emit(self, node, ctx) -> list:
        n = self._consts(node, ctx)
        return [f"tc_fully_connected_packed(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['packed']}, "
                f"{n['codebooks']}, {n['map']}, {n['bias']}, {n['mult']}, {n['shift']}, "
                f"{ctx.tensor(node.outputs[0])}, {ctx.scratch()});"]

    def scratch_bytes(self, node, graph) -> int:
        """The full level's bytes (the kernel's fastest form)."""
        layout, _ = pc.weight_layout_of(node, graph, self)
        return scratch_size(node.params, layout.bits, layout.stride)

    def scratch_levels(self, node, graph) -> list:
        """Scratch sizes the kernel can use, fastest first (the planner grants the first that fits)."""
        layout, _ = pc.weight_layout_of(node, graph, self)
        per_channel = layout.stride != 0 and layout.cmap is None
        return [n for _, n in scratch_levels(node.params, layout.bits, layout.stride, per_channel)]

    def macs(self, node, graph) -> int:
        p = node.params
        return p["batches"] * p["in_features"] * p["out_features"]

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0]).reshape(p["batches"], p["in_features"]).astype(np.int64) + p["input_offset"]
        w = np.asarray(inputs[1]).reshape(p["out_features"], p["in_features"]).astype(np.int64) + p["filter_offset"]
        bias = inputs[2] if len(inputs) > 2 else None
        acc = x @ w.T
        if bias is not None:
            acc += np.asarray(bias).reshape(-1).astype(np.int64)
        acc = pc.wrap_int32(acc)
        out = requantize(acc, np.asarray(p["mult"]), np.asarray(p["shift"]), p["output_offset"],
                         p["act_min"], p["act_max"])
        out_shape = graph.tensors[node.outputs[0]].shape if graph is not None else (p["batches"], p["out_features"])
        return [out.reshape(tuple(int(d) for d in out_shape))]

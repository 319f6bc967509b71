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


PAIR_MAX_BITS = 6  # TC_FC_PAIR_MAX_BITS
FC_BIAS_WIDTHS = (16, 32)  # stored bias widths the generator picks for FC (the kernel reads 16/24/32)


def pair_entries(p: dict, bits: int, codebook_stride: int = 0) -> int:
    """Mirror of fc_pair_entries() (tc_fully_connected_packed.c): entries of the pair table a
    scratch level holds (two weights per word; layers of >= 4 weights per entry), 0 for none."""
    if not 1 <= bits <= PAIR_MAX_BITS:
        return 0
    e = 1 << (2 * bits)
    return e if p["in_features"] * p["out_features"] >= 4 * e else 0


def tables_pay(p: dict, bits: int, codebook_stride: int, per_channel: bool, n_codebooks: int = 1) -> bool:
    """Mirror of fc_tables_pay(): whether the kernel uses the scratch's pair tables for this layout:
    per-tensor layers always; per-channel layers (a build per row) on rows of >= 2 weights per
    entry; shared layers with ``n_codebooks`` codebooks taken codebook by codebook (16 x codebooks
    <= in_features, whole 8-index groups) with >= 4 weights per entry of all their tables, or on
    rows of >= 2 weights per entry."""
    e = pair_entries(p, bits)
    n = p["in_features"]
    if not e or codebook_stride == 0:
        return bool(e)
    if n >= 2 * e:
        return True
    return (not per_channel and (n * bits) % 8 == 0 and 16 * n_codebooks <= n
            and 2 * n_codebooks * e <= n * p["out_features"])


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


def scratch_levels(p: dict, bits: int, codebook_stride: int, per_channel: bool = False,
                   n_codebooks: int = 1) -> list:
    """(table level, scratch bytes) the kernel can run with, fastest first, without 'none'; none
    where the tables do not pay for the layout (:func:`tables_pay`: the kernel would ignore them).
    Per-channel layers (a codebook per row) take no compact level: the kernel would rebuild it
    per row, slower than no table (it ignores it there)."""
    if not tables_pay(p, bits, codebook_stride, per_channel, n_codebooks):
        return []
    out = []
    for level in (TABLES_FULL,) + (() if per_channel else (TABLES_COMPACT,)):
        n = scratch_size(dict(p, tables=level), bits, codebook_stride)
        if n > 0:
            out.append((level, n))
    return out


def level_for(p: dict, bits: int, codebook_stride: int, per_channel: bool, granted: int,
              n_codebooks: int = 1) -> int:
    """The table level a scratch of `granted` bytes holds (what the emitted params say)."""
    for level, n in scratch_levels(p, bits, codebook_stride, per_channel, n_codebooks):
        if n <= granted:
            return level
    return TABLES_NONE


def pair_tables(layout):
    """The pair tables the Cortex-M DSP kernel would build in scratch, precomputed for flash
    (``pair_tables`` of tc_fully_connected_packed): one per codebook (per-tensor: 1, shared: G),
    2^(2*bits) uint32 words each, word ``lo | hi << bits`` = (uint16)cb[lo] | (uint16)cb[hi] << 16
    with cb[i] = 0 for i >= k (fc_build_pairs). None where the kernel takes none: raw weights,
    widths above PAIR_MAX_BITS, per-channel codebooks (a table per row would cost more flash
    than the indices it serves)."""
    if layout.raw or not 1 <= layout.bits <= PAIR_MAX_BITS or (layout.stride != 0 and layout.cmap is None):
        return None
    n, k = 1 << layout.bits, layout.k
    cbs = np.asarray(layout.codebooks, np.int64).reshape(-1)
    cbs = cbs[:k].reshape(1, k) if layout.stride == 0 else cbs.reshape(-1, layout.stride)[:, :k]
    c = np.zeros((cbs.shape[0], n), np.int64)
    c[:, :k] = cbs
    c16 = c & 0xFFFF
    # [codebook, hi, lo] -> word index lo | hi << bits
    return (c16[:, None, :] | (c16[:, :, None] << 16)).reshape(-1).astype(np.uint32)


def flash_table_bytes(p: dict, layout) -> int:
    """Flash bytes of the layer's pair tables where they may be granted (issue 10's rule: the
    kernel reads them on whole 8-index rows, and they are at most 1/8 of the layer's index
    bytes), else 0."""
    t = pair_tables(layout)
    return 0 if t is None else flash_table_bytes_at(p, layout.bits, int(t.size) >> (2 * layout.bits))


def flash_table_bytes_at(p: dict, bits: int, n_tables: int = 1) -> int:
    """:func:`flash_table_bytes` for ``n_tables`` codebooks at width ``bits`` (before a layout exists:
    the flash ``auto`` reserves for the tables, compress/cost.py)."""
    from ..packing import packed_size

    if not 1 <= bits <= PAIR_MAX_BITS or p["in_features"] < 8 or (p["in_features"] * bits) % 8:
        return 0
    nbytes = 4 * n_tables << (2 * bits)
    return nbytes if 8 * nbytes <= packed_size(p["in_features"] * p["out_features"], bits) else 0


def _n_codebooks(layout) -> int:
    """Codebooks a shared layout's map names (its largest entry + 1, as fc_map_max), else 1."""
    return int(np.max(layout.cmap)) + 1 if layout.cmap is not None and len(layout.cmap) else 1


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
                                     ctx.scratch_size(self.scratch_bytes(node, ctx.graph)), _n_codebooks(layout)))
        names = pc.emit_weight_consts(node, ctx, f"fc{node.index}", layout, bias, p["mult"], p["shift"],
                                      "tc_fc_packed_params", struct_fields(p, layout))
        if "pair_tables" not in names:  # flash pair tables where the planner granted them
            names["pair_tables"] = "NULL"
            if node.index in ctx.flash_tables:
                names["pair_tables"] = ctx.const_array(f"fc{node.index}_pairs", "uint32_t", pair_tables(layout),
                                                       role="tables")
        return names

    def emit(self, node, ctx) -> list:
        n = self._consts(node, ctx)
        return [f"tc_fully_connected_packed(&{n['params']}, {ctx.tensor(node.inputs[0])}, {n['packed']}, "
                f"{n['codebooks']}, {n['map']}, {n['pair_tables']}, {n['bias']}, {n['mult']}, {n['shift']}, "
                f"{ctx.tensor(node.outputs[0])}, {ctx.scratch()});"]

    def flash_tables(self, node, graph, granted_scratch: int) -> int:
        """Bytes of flash pair tables this layer may take (planner.grant_flash_tables): where the
        kernel does not run the full run-time table level with the scratch it was granted, and the
        tables are at most 1/8 of its index bytes (:func:`flash_table_bytes`); else 0."""
        layout, _ = pc.weight_layout_of(node, graph, self)
        per_channel = layout.stride != 0 and layout.cmap is None
        if level_for(node.params, layout.bits, layout.stride, per_channel, granted_scratch,
                     _n_codebooks(layout)) == TABLES_FULL:
            return 0
        return flash_table_bytes(node.params, layout)

    def scratch_bytes(self, node, graph) -> int:
        """The full level's bytes (the kernel's fastest form)."""
        layout, _ = pc.weight_layout_of(node, graph, self)
        return scratch_size(node.params, layout.bits, layout.stride)

    def scratch_levels(self, node, graph) -> list:
        """Scratch sizes the kernel can use, fastest first (the planner grants the first that fits)."""
        layout, _ = pc.weight_layout_of(node, graph, self)
        per_channel = layout.stride != 0 and layout.cmap is None
        return [n for _, n in scratch_levels(node.params, layout.bits, layout.stride, per_channel,
                                             _n_codebooks(layout))]

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

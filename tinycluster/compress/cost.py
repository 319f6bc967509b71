"""Flash and SRAM cost of one layer's weights in a given layout: the one formula.

The compression passes (the "never larger than int8" rule, ``auto``'s choice of layouts, the
budgets), the report and the tests all call :func:`weight_cost`; the report checks it against
the bytes the emitter really declared, so a second formula cannot drift from the C.

A layer's weight cost is what its layout adds to flash beyond the int8 model's own per-layer
constants (int32 bias, requantization multipliers and shifts, params struct):

- ``indices``: the packed index stream (:func:`tinycluster.packing.packed_size`), or the raw
  int8 weights (one byte each) for a RAW8 layer;
- ``codebooks``: codebook entries as emitted (``PackedLayout.codebook_array``: padded to
  ``2^bits`` entries for widths <= 4); they live in SRAM with ``--codebooks sram``;
- ``map``: the uint8 codebook number of each output channel (shared codebooks);
- ``requant_extra``: 5 bytes (int32 multiplier + int8 shift) for every requantization entry
  beyond the int8 model's own, when a layout gives a per-tensor-quantized layer per-channel
  weight scales (the normalized layout on e.g. ad01's fully connected layers);
- ``tables``: FULLY_CONNECTED's flash pair tables (``flash_tables=True``: where the planner
  granted them, planner.grant_flash_tables; precomputed for the Cortex-M DSP kernels).

RAW8 (the int8 weights themselves, no codebook) costs exactly the layer's int8 weight bytes:
the yardstick of the rule "a layer never costs more flash clustered than as raw int8".

The int8 model's own constants are not all emitted at their int8-model size: each layer's
biases (the input offset folded in where the kernel allows) are stored in the narrowest of 16,
24 or 32 bits that holds them all (``bias_bits`` in the kernels' params). :func:`bias_bytes`
gives the bytes emitted; the report checks it against the C like the weight cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..packing import packed_size

REQUANT_ENTRY_BYTES = 5  # int32 multiplier + int8 shift per output channel


@dataclass(frozen=True)
class WeightCost:
    indices: int
    codebooks: int
    map: int
    requant_extra: int
    raw: bool
    tables: int = 0

    @property
    def flash(self) -> int:
        """Flash bytes of the weights in this layout (initial codebook values and flash pair
        tables included)."""
        return self.indices + self.codebooks + self.map + self.requant_extra + self.tables

    def sram(self, codebooks_in_sram: bool = True) -> int:
        """SRAM bytes the layout needs beyond the arena (codebooks copied to SRAM)."""
        return self.codebooks if codebooks_in_sram else 0

    def as_dict(self) -> dict:
        return {"indices": self.indices, "codebooks": self.codebooks, "map": self.map,
                "requant_extra": self.requant_extra, "tables": self.tables, "weight_flash": self.flash,
                "raw": self.raw}


def source_scales(graph, tensor) -> np.ndarray:
    """The weight scales of ``tensor`` in the source model (before any rescaling pass)."""
    q = graph.meta.get("source_quant", {}).get(tensor.id)
    return np.asarray((q if q is not None else tensor.quant).scale, dtype=np.float32)


def requant_entries(node, graph, scales) -> int:
    """Length of the emitted multiplier/shift arrays for weight ``scales`` (1 when every channel
    requantizes alike, as TFLite Micro's Prepare computes them)."""
    from ..ops import _packed_common as pc

    in_q = graph.tensors[node.inputs[0]].quant
    out_q = graph.tensors[node.outputs[0]].quant
    s = np.asarray(scales, dtype=np.float32).reshape(-1)
    n = _channels(node, graph)
    if s.size == 1:
        return 1
    mult, _, _ = pc.requant_params(float(np.float32(in_q.scale[0])), s, float(np.float32(out_q.scale[0])), n)
    return len(mult)


def _channels(node, graph) -> int:
    from ..ops import get_handler

    h = get_handler(node.op)
    t = graph.tensors[node.inputs[h.weight_input]]
    return int(t.shape[h.weight_channel_axis])


def weight_cost(node, graph, clustering, scales=None, flash_tables: bool = False) -> WeightCost:
    """Cost of ``node``'s weight tensor stored as ``clustering`` (None: RAW8, the int8 values
    as they are) with weight ``scales`` (None: the tensor's current scales); ``flash_tables``:
    with the layer's flash pair tables (FULLY_CONNECTED, where granted)."""
    from ..ops import _packed_common as pc
    from ..ops import get_handler

    h = get_handler(node.op)
    t = graph.tensors[node.inputs[h.weight_input]]
    axis = h.weight_channel_axis
    n_ch = int(t.shape[axis])
    lay = pc.raw_layout(t.data) if clustering is None else \
        pc.packed_layout(node, graph, t, axis, n_ch, cl=clustering)
    n = int(t.size)
    if lay.raw:
        idx, cb, mp = n, 0, 0
    else:
        idx = packed_size(n, lay.bits)
        cb = int(lay.codebook_array().size)
        mp = int(lay.cmap.size) if lay.cmap is not None else 0
    sc = t.quant.scale if scales is None else scales
    extra = REQUANT_ENTRY_BYTES * max(0, requant_entries(node, graph, sc)
                                      - requant_entries(node, graph, source_scales(graph, t)))
    tables = 0
    if flash_tables and node.op == "FULLY_CONNECTED":
        from ..ops.fully_connected import flash_table_bytes

        tables = flash_table_bytes(node.params, lay)
    return WeightCost(indices=idx, codebooks=cb, map=mp, requant_extra=extra, raw=lay.raw, tables=tables)


def flash_table_reserve(graph, nodes, bits: int, percent: float) -> int:
    """Flash ``auto`` keeps free for FULLY_CONNECTED's flash pair tables at index width ``bits``
    (so that speed never eats the codebook-economy bound): one table per layer that could take
    one, at most ``percent`` % of the layers' index bytes at that width; 0 when ``percent`` is 0."""
    from ..ops import get_handler
    from ..ops.fully_connected import flash_table_bytes_at

    if not percent or percent <= 0:
        return 0
    want = idx = 0
    for node in nodes:
        t = graph.tensors[node.inputs[get_handler(node.op).weight_input]]
        idx += packed_size(int(t.size), bits)
        if node.op == "FULLY_CONNECTED":
            want += flash_table_bytes_at(node.params, bits)
    return int(min(want, percent / 100.0 * idx))


def int8_weight_bytes(node, graph) -> int:
    """The layer's int8 weight bytes (RAW8 cost)."""
    from ..ops import get_handler

    h = get_handler(node.op)
    return int(graph.tensors[node.inputs[h.weight_input]].size)


def bias_bytes(node, graph, clustering=None) -> int:
    """Flash bytes of ``node``'s bias array as emitted with its weights stored as ``clustering``
    (None: RAW8): one value per output channel, ``bias_bits`` wide (the handler's emitted_bias,
    the function the emitter calls); 0 without a bias."""
    from ..ops import _packed_common as pc
    from ..ops import get_handler

    h = get_handler(node.op)
    t = graph.tensors[node.inputs[h.weight_input]]
    axis = h.weight_channel_axis
    lay = pc.raw_layout(t.data) if clustering is None else \
        pc.packed_layout(node, graph, t, axis, int(t.shape[axis]), cl=clustering)
    p, bias = h.emitted_bias(node, graph, lay)
    return 0 if bias is None else int(np.asarray(bias).size) * int(p["bias_bits"]) // 8

"""Static memory planning: one arena, liveness-based offsets, in-place where legal.

Every activation tensor (model input and output included, as in TFLite Micro, so that the
arena figures compare like with like) gets an offset in one arena. Three ways to share:

* alias: ops whose output *is* their input (RESHAPE) share one storage group;
* elementwise in place: an op flagged ``inplace = "elementwise"`` writes its output over
  input 0 when that input dies at this op and has the same byte size;
* row-buffered in place: an op flagged ``inplace = "rows"`` (conv, depthwise) may write
  its output over its dying input when a small ring of output rows, flushed as soon as the
  input rows beneath them are no longer needed, costs less than a separate output buffer.
  The ring size is found by simulating the row schedule here, at plan time.

Offsets are then assigned greedily (largest first, first fit against the buffers whose
lifetimes overlap), the same strategy as TFLite Micro's GreedyMemoryPlanner.

Kernel scratch that only speeds a kernel up (``handler.scratch_optional``: the kernel also runs,
slower, with a NULL scratch; FULLY_CONNECTED's run-time pair tables) is granted last, layer by
layer (most MACs first), the largest of the kernel's levels (``handler.scratch_levels``) that
does not grow the arena: it lives in the free space the activations leave at that step, never
sets the arena's size.

Flash pair tables (:func:`grant_flash_tables`, FULLY_CONNECTED): where the arena has no room
for a layer's full run-time pair table, the same table may be precomputed into flash, under a
flash budget (a percentage of the model's index bytes, ``--flash-tables``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .ops import get_handler

ALIGN = 4
#: default flash budget for FULLY_CONNECTED's flash pair tables, % of the model's index bytes
FLASH_TABLE_PERCENT = 5.0


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class RowPlan:
    """In-place row schedule of one conv/depthwise node."""

    out_rows: int
    in_row_bytes: int
    out_row_bytes: int
    stride_h: int
    pad_top: int
    ring_rows: int
    rows_per_call: int = 1  # the kernel computes this many rows per call (ring_rows is a multiple)

    def first_needed_row(self, oy: int) -> int:
        """First input row any output row >= oy still reads."""
        return max(0, oy * self.stride_h - self.pad_top)


@dataclass
class Buffer:
    """A storage group: tensors that share bytes (aliases and in-place results)."""

    id: int
    size: int
    start: int  # node index of first write (-1: before the first node, i.e. model input)
    end: int  # node index of last read (len(nodes): model output, read after invoke)
    tensors: list = field(default_factory=list)
    offset: int = 0
    kind: str = "tensor"  # "tensor" | "scratch"


@dataclass
class Plan:
    arena_size: int
    tensor_offset: dict  # tensor id -> arena offset
    scratch_offset: dict  # node index -> arena offset of its scratch (ring first, then kernel scratch)
    scratch_size: dict  # node index -> kernel scratch bytes
    row_plans: dict  # node index -> RowPlan for nodes run in place by rows
    elementwise_inplace: set  # node indices whose output overwrites input 0
    buffers: list
    flash_tables: dict = field(default_factory=dict)  # node index -> flash pair table bytes granted

    def summary(self) -> dict:
        return {
            "arena_bytes": self.arena_size,
            "inplace_elementwise": sorted(self.elementwise_inplace),
            "inplace_rows": {int(k): {"ring_rows": v.ring_rows, "rows_per_call": v.rows_per_call}
                             for k, v in self.row_plans.items()},
            "flash_tables": {int(k): int(v) for k, v in self.flash_tables.items()},
        }


def simulate_rows(out_rows, in_row_bytes, out_row_bytes, stride_h, pad_top, in_rows,
                  rows_per_call: int = 1) -> Optional[int]:
    """Ring rows needed to compute a conv in place row by row, or None if impossible.

    Calls compute `rows_per_call` output rows [oy0, oy1) at a time into the ring (row oy in
    slot oy % ring: the ring is a multiple of rows_per_call, so a call's rows are contiguous
    there); after each call, output rows j whose bytes end at or before the first input byte
    still needed by rows >= oy1 are copied to their final place.
    """
    k = max(1, int(rows_per_call))
    flushed = 0
    max_pending = 0
    for oy0 in range(0, out_rows, k):
        oy1 = min(oy0 + k, out_rows)
        max_pending = max(max_pending, oy1 - flushed)
        if oy1 < out_rows:
            need = min(in_rows, max(0, oy1 * stride_h - pad_top)) * in_row_bytes
        else:
            need = 1 << 62
        while flushed < oy1 and (flushed + 1) * out_row_bytes <= need:
            flushed += 1
    return (max_pending + k - 1) // k * k


def _row_geometry(node, graph):
    h = get_handler(node.op)
    if hasattr(h, "row_geometry"):
        return h.row_geometry(node, graph)
    p = node.params
    return int(p["stride_h"]), int(p["pad_top"])


def plan_memory(graph, scratch_of=None) -> Plan:
    """Plan the arena; run a layer in place row by row only where that lowers the arena.

    Row-by-row execution costs time (the kernel is called once per output row), so after
    planning with every eligible layer in place, each such layer in turn (most MACs first)
    goes back to a single call with its own output buffer if the arena does not grow. Layers
    whose kernel repeats work on every call (handler.prefers_row_chunks: a deep conv decodes its
    filters per call) then compute as many rows per call as the arena allows without growing.
    """
    best = _plan(graph, scratch_of, frozenset())
    no_rows: set = set()
    order = sorted(best.row_plans, key=lambda i: -_macs(graph, i))
    for idx in order:
        trial = _plan(graph, scratch_of, frozenset(no_rows | {idx}))
        if trial.arena_size <= best.arena_size:
            no_rows.add(idx)
            best = trial
    chunks: dict = {}
    for idx in sorted(best.row_plans, key=lambda i: -_macs(graph, i)):
        node = graph.nodes[idx]
        prefers = getattr(get_handler(node.op), "prefers_row_chunks", None)
        if prefers is None or not prefers(node, graph):
            continue
        k = 2
        while k < 2 * best.row_plans[idx].out_rows:
            trial = _plan(graph, scratch_of, frozenset(no_rows), {**chunks, idx: k})
            if trial.arena_size > best.arena_size or idx not in trial.row_plans:
                break
            chunks[idx] = k
            best = trial
            k *= 2
    granted: dict = {}
    for idx in sorted(_optional_scratch_nodes(graph), key=lambda i: -_macs(graph, i)):
        for size in _scratch_levels(graph, graph.nodes[idx]):  # fastest first
            trial = _plan(graph, scratch_of, frozenset(no_rows), chunks, {**granted, idx: size})
            if trial.arena_size <= best.arena_size:
                granted[idx] = size
                best = trial
                break
    return best


def grant_flash_tables(graph, plan: Plan, percent: float = FLASH_TABLE_PERCENT, room: Optional[int] = None) -> dict:
    """Grant FULLY_CONNECTED layers flash pair tables (``plan.flash_tables``: node index -> bytes).

    A layer qualifies where the arena could not give it the full run-time table level
    (``handler.flash_tables``: per-tensor or shared codebooks, widths 1..6, tables at most 1/8 of
    its index bytes) and where the tables keep it below its raw int8 weight bytes (the "never
    larger than int8" rule, with the tables counted). Layers are taken most MACs per table byte
    first (ties: the one with less granted scratch, i.e. the slower table level, first) while the model's tables stay within ``percent`` % of its index bytes and, when given,
    ``room`` bytes (what auto kept free under the codebook-economy bound). ``percent`` 0: none."""
    from .compress.cost import int8_weight_bytes, weight_cost

    plan.flash_tables = {}
    if not percent or percent <= 0:
        return plan.flash_tables
    idx_total, cands = 0, []
    for node, t in graph.weight_tensors():
        h = get_handler(node.op)
        cost = weight_cost(node, graph, t.clustering)
        idx_total += cost.indices
        if not hasattr(h, "flash_tables"):
            continue
        scratch = int(plan.scratch_size.get(node.index, 0))
        n = int(h.flash_tables(node, graph, scratch))
        if n > 0 and cost.flash + n <= int8_weight_bytes(node, graph):
            # ties (same MACs per byte): the layer the arena gave less scratch (a slower level) first
            cands.append((-_macs(graph, node.index) / n, scratch, node.index, n))
    budget = int(percent / 100.0 * idx_total)
    if room is not None:
        budget = min(budget, int(room))
    total = 0
    for _, _, idx, n in sorted(cands):
        if total + n <= budget:
            plan.flash_tables[idx] = n
            total += n
    return plan.flash_tables


def _scratch_levels(graph, node) -> list:
    """Scratch sizes an optional-scratch kernel can use, fastest (largest) first."""
    h = get_handler(node.op)
    if hasattr(h, "scratch_levels"):
        return [int(n) for n in h.scratch_levels(node, graph) if int(n) > 0]
    n = int(h.scratch_bytes(node, graph))
    return [n] if n > 0 else []


def _optional_scratch_nodes(graph) -> list:
    """Nodes whose kernel scratch is optional (a speed-up) and not empty."""
    return [n.index for n in graph.nodes
            if getattr(get_handler(n.op), "scratch_optional", False) and _scratch_levels(graph, n)]


def _macs(graph, idx):
    n = graph.nodes[idx]
    return int(get_handler(n.op).macs(n, graph))


def _plan(graph, scratch_of, no_rows, chunks=None, granted=None) -> Plan:
    nodes = graph.nodes
    n_nodes = len(nodes)
    granted = granted or {}

    def default_scratch(node):
        h = get_handler(node.op)
        if getattr(h, "scratch_optional", False):
            return granted.get(node.index, 0)  # optional scratch: what plan_memory grants
        return h.scratch_bytes(node, graph)

    scratch_of = scratch_of or default_scratch

    # storage groups ------------------------------------------------------------------
    group_of: dict = {}
    buffers: list = []

    def new_buffer(tid, start):
        t = graph.tensors[tid]
        b = Buffer(id=len(buffers), size=t.nbytes, start=start, end=start, tensors=[tid])
        buffers.append(b)
        group_of[tid] = b
        return b

    for tid in graph.inputs:
        new_buffer(tid, -1)

    last_use = {}
    for n in nodes:
        for tid in n.inputs:
            if tid >= 0 and not graph.tensors[tid].is_const:
                last_use[tid] = n.index
    for tid in graph.outputs:
        last_use[tid] = n_nodes

    def group_dies_at(b: Buffer, idx: int) -> bool:
        return all(last_use.get(t, -1) <= idx for t in b.tensors) and not any(t in graph.outputs for t in b.tensors)

    row_plans: dict = {}
    elementwise: set = set()
    scratch_size: dict = {}
    for n in nodes:
        h = get_handler(n.op)
        out = n.outputs[0]
        src = n.inputs[0] if n.inputs else -1
        srcb = group_of.get(src) if src >= 0 else None
        placed = False
        if h.inplace == "alias" and srcb is not None:
            srcb.tensors.append(out)
            srcb.size = max(srcb.size, graph.tensors[out].nbytes)
            group_of[out] = srcb
            placed = True
        elif h.inplace == "elementwise" and srcb is not None and group_dies_at(srcb, n.index) \
                and graph.tensors[out].nbytes == srcb.size and n.inputs.count(src) == 1:
            srcb.tensors.append(out)
            group_of[out] = srcb
            elementwise.add(n.index)
            placed = True
        elif h.inplace == "rows" and n.index not in no_rows and srcb is not None and group_dies_at(srcb, n.index):
            tin, tout = graph.tensors[src], graph.tensors[out]
            _, ih, iw, ic = tin.shape
            _, oh, ow, oc = tout.shape
            sh, pt = _row_geometry(n, graph)
            rin, rout = iw * ic, ow * oc
            k = min(int((chunks or {}).get(n.index, 1)), oh)
            ring = simulate_rows(oh, rin, rout, sh, pt, ih, k)
            shared = max(srcb.size, tout.nbytes)
            if ring is not None and shared + ring * rout < srcb.size + tout.nbytes:
                srcb.tensors.append(out)
                srcb.size = shared
                group_of[out] = srcb
                row_plans[n.index] = RowPlan(oh, rin, rout, sh, pt, ring, k)
                placed = True
        if not placed:
            new_buffer(out, n.index)
        for extra in n.outputs[1:]:
            new_buffer(extra, n.index)
        k = int(scratch_of(n))
        scratch_size[n.index] = k
        ring_bytes = row_plans[n.index].ring_rows * row_plans[n.index].out_row_bytes if n.index in row_plans else 0
        if k + ring_bytes > 0:
            sb = Buffer(id=len(buffers), size=_align(ring_bytes) + k, start=n.index, end=n.index,
                        tensors=[], kind="scratch")
            sb.node = n.index
            buffers.append(sb)

    for b in buffers:
        if b.kind == "tensor":
            b.end = max([last_use.get(t, b.start) for t in b.tensors] + [b.start])

    # greedy offsets ----------------------------------------------------------------
    order = sorted(buffers, key=lambda b: (-b.size, b.start, b.id))
    placed_bufs: list = []
    for b in order:
        live = sorted((p for p in placed_bufs if not (p.end < b.start or b.end < p.start)),
                      key=lambda p: p.offset)
        off = 0
        for p in live:
            if off + b.size <= p.offset:
                break
            off = max(off, _align(p.offset + p.size))
        b.offset = off
        placed_bufs.append(b)
    arena = max((_align(b.offset + b.size) for b in buffers), default=0)

    tensor_offset = {t: b.offset for b in buffers if b.kind == "tensor" for t in b.tensors}
    scratch_offset = {b.node: b.offset for b in buffers if b.kind == "scratch"}
    return Plan(arena, tensor_offset, scratch_offset, scratch_size, row_plans, elementwise, buffers)

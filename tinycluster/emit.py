"""Emit C: render the generated model (<name>.c, <name>.h) from templates/ with jinja2.

Handlers supply the statements of each step (ops/<op>.py emit); the planner supplies the
buffer offsets; this module wires them together and adds the row-buffered in-place loops.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from . import __version__
from .emit_context import EmitContext
from .errors import TinyClusterError
from .ops import get_handler
from .paths import TEMPLATES_DIR

CTYPE_OF = {"int8": "int8_t", "float32": "float", "int16": "int16_t", "int32": "int32_t", "uint8": "uint8_t"}


@dataclass
class EmittedModel:
    name: str
    c_source: str
    header: str
    ctx: EmitContext
    arena_bytes: int


def _env():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def _io_info(graph, tid, plan):
    t = graph.tensors[tid]
    scale = float(t.quant.scale[0]) if t.quant is not None and t.quant.scale.size else 0.0
    zp = int(t.quant.zero_point[0]) if t.quant is not None and t.quant.zero_point.size else 0
    return {
        "dtype": t.dtype, "ctype": CTYPE_OF[t.dtype], "shape": [int(d) for d in t.shape],
        "size": t.size, "nbytes": t.nbytes, "scale": repr(np.float32(scale).item()), "zero_point": zp,
        "offset": plan.tensor_offset[tid],
    }


def _split(lines):
    out = []
    for ln in lines:
        out.extend(str(ln).split("\n"))
    return out


def _rows_step(node, graph, ctx, plan, handler):
    rp = plan.row_plans[node.index]
    base = plan.tensor_offset[node.outputs[0]]
    ring_off = plan.scratch_offset[node.index]
    ring_bytes = rp.ring_rows * rp.out_row_bytes
    in_rows = graph.tensors[node.inputs[0]].shape[1]
    # kernel scratch lives after the ring
    ctx.scratch_exprs[node.index] = f"(TC_ARENA + {ring_off + (ring_bytes + 3) // 4 * 4})"
    R, ROUT, RIN, K = rp.ring_rows, rp.out_row_bytes, rp.in_row_bytes, rp.rows_per_call
    if K == 1:
        end, step = "oy + 1", "++oy"
    else:  # K rows per call (the ring holds a multiple of K rows: a call's rows are contiguous)
        end, step = f"TC_MIN(oy + {K}, {rp.out_rows})", f"oy += {K}"
    body = handler.emit_rows(node, ctx, f"(TC_ARENA + {ring_off} + (oy % {R}) * {ROUT})", "oy", end)
    lines = ["{", "    int oy, done = 0;", f"    for (oy = 0; oy < {rp.out_rows}; {step}) {{"]
    lines += ["        " + ln for ln in _split(body)]
    lines += [
        f"        if ({end} < {rp.out_rows}) {{",
        f"            const int32_t need = (int32_t)TC_MIN({in_rows}, TC_MAX(0, ({end}) * {rp.stride_h} - {rp.pad_top})) * {RIN};",
        f"            while (done < {end} && (int32_t)(done + 1) * {ROUT} <= need) {{",
        f"                memcpy(TC_ARENA + {base} + done * {ROUT}, TC_ARENA + {ring_off} + (done % {R}) * {ROUT}, {ROUT});",
        "                ++done;",
        "            }",
        "        }",
        "    }",
        f"    for (; done < {rp.out_rows}; ++done) {{",
        f"        memcpy(TC_ARENA + {base} + done * {ROUT}, TC_ARENA + {ring_off} + (done % {R}) * {ROUT}, {ROUT});",
        "    }",
        "}",
    ]
    return lines


def emit_model(graph, plan, *, name: str, command: str, codebook_placement: str = "sram",
               flash_section: str = "", sram_section: str = "", source_bytes: bytes = b"") -> EmittedModel:
    ctx = EmitContext(prefix=name, graph=graph, codebook_placement=codebook_placement,
                      flash_section=flash_section, sram_section=sram_section)
    for tid, off in plan.tensor_offset.items():
        ctx.tensor_exprs[tid] = f"(TC_ARENA + {off})"
    for nidx, off in plan.scratch_offset.items():
        ctx.scratch_exprs[nidx] = f"(TC_ARENA + {off})"
    ctx.scratch_sizes = dict(plan.scratch_size)
    ctx.flash_tables = dict(plan.flash_tables)
    steps = []
    for node in graph.nodes:
        h = get_handler(node.op)
        ctx.current_node = node
        try:
            if node.index in plan.row_plans:
                lines = _rows_step(node, graph, ctx, plan, h)
                rp = plan.row_plans[node.index]
                how = f"in place, ring of {rp.ring_rows} rows" + (
                    f", {rp.rows_per_call} per call" if rp.rows_per_call > 1 else "")
            else:
                lines = _split(h.emit(node, ctx))
                how = "in place" if node.index in plan.elementwise_inplace else ""
        except TinyClusterError as e:  # name the file and the operator, as resolve does
            msg = " ".join(str(e).split())
            src = Path(str(graph.source or graph.name)).name
            if not msg.startswith(src):
                msg = f"{src}: operator {node.index} ({node.op}): {msg}"
            raise type(e)(msg) from None
        title = f"{node.index}: {node.op} ({node.name})" + (f", {how}" if how else "")
        steps.append({"title": title, "lines": lines})
    ctx.current_node = None
    macs = sum(int(get_handler(n.op).macs(n, graph)) for n in graph.nodes)
    env = _env()
    sha = hashlib.sha256(source_bytes).hexdigest()[:16] if source_bytes else "-"
    from .c_runtime import RUNTIME_SUBDIR, abi_version

    abi = abi_version()
    common = dict(
        abi=abi, abi_others=[v for v in range(max(1, abi - 4), abi + 9) if v != abi], runtime_dir=RUNTIME_SUBDIR,
        name=name, NAME=name.upper(), version=__version__, command=command.replace("*/", "* /"),
        source=str(graph.source).replace("*/", "* /"), source_sha=sha,
        input=_io_info(graph, graph.inputs[0], plan), output=_io_info(graph, graph.outputs[0], plan),
        arena_bytes=plan.arena_size, arena_alloc=max(plan.arena_size, 4), macs=macs,
    )
    flash = ctx.bytes_by("flash") + ctx.bytes_by("sram")
    c_source = env.get_template("model.c.j2").render(
        decls=ctx.decls, steps=steps, flash_bytes=flash, sram_codebook_bytes=ctx.bytes_by("sram"), **common)
    header = env.get_template("model.h.j2").render(**common)
    return EmittedModel(name, c_source, header, ctx, plan.arena_size)


def lcg_bytes(seed: int, n: int) -> np.ndarray:
    """The int8 sequence of <name>_selftest.c's generator (state = state * 1664525 + 1013904223 mod
    2^32, top byte), for seed ``seed``."""
    out = np.empty(n, np.int8)
    state = seed & 0xFFFFFFFF
    for i in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.uint8(state >> 24).view(np.int8)
    return out


def emit_selftest(graph, name: str, n_samples: int = 2) -> str:
    """``<name>_selftest.c``: a main() running the model on ``n_samples`` generated inputs and comparing
    the outputs with the bit-exact numpy reference (:mod:`tinycluster.executor`), so that
    ``cc *.c runtime/*.c`` on the output folder links into a self-checking program."""
    from .executor import run_graph

    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    ctx = {"input": {"dtype": tin.dtype, "ctype": CTYPE_OF[tin.dtype]},
           "output": {"dtype": tout.dtype, "ctype": CTYPE_OF[tout.dtype], "nbytes": tout.nbytes}}
    q_scale, q_zp = np.float32(1.0), 0
    if tin.dtype == "float32":  # float input: the QUANTIZE reading it gives the int8 grid
        for n in graph.nodes:
            if graph.inputs[0] in n.inputs and n.op == "QUANTIZE":
                q = graph.tensors[n.outputs[0]].quant
                q_scale, q_zp = np.float32(q.scale[0]), int(q.zero_point[0])
                break
    samples = []
    for s in range(n_samples):
        q = lcg_bytes(s + 1, tin.size)
        x = (np.float32(1) * (q.astype(np.int32) - q_zp).astype(np.float32) * q_scale).astype(np.float32) \
            if tin.dtype == "float32" else q
        y = np.ascontiguousarray(np.asarray(run_graph(graph, x.reshape(tin.shape)), dtype=tout.dtype))
        samples.append(", ".join(str(b) for b in y.reshape(-1).view(np.uint8)))
    return _env().get_template("selftest.c.j2").render(
        name=name, NAME=name.upper(), version=__version__, samples=samples,
        input_q_scale=repr(float(q_scale)), input_q_zero_point=q_zp, **ctx)

"""report.json / report.md: per-layer and total flash, SRAM, weights, MACs."""
from __future__ import annotations

import json

from . import __version__
from .ops import get_handler


def _check_cost(node, ctx, cost, bias_bytes):
    """The cost function (compress/cost.py) must describe the bytes the emitter declared."""
    from .errors import TinyClusterError

    got = {"indices": ctx.bytes_by(owner=node.name, role="indices"),
           "codebooks": ctx.bytes_by(owner=node.name, role="codebook"),
           "map": ctx.bytes_by(owner=node.name, role="other"),
           "tables": ctx.bytes_by(owner=node.name, role="tables"),
           "bias": ctx.bytes_by(owner=node.name, role="bias")}
    want = {"indices": cost.indices, "codebooks": cost.codebooks, "map": cost.map, "tables": cost.tables,
            "bias": bias_bytes}
    if got != want:
        raise TinyClusterError(f"internal: {node.name}: emitted weight bytes {got} differ from the cost model "
                               f"{want}; please report this")


def _layer_rows(graph, ctx, cluster_stats, flash_tables=()):
    from .compress.cost import bias_bytes, weight_cost

    rows = []
    for node in graph.nodes:
        h = get_handler(node.op)
        flash = ctx.bytes_by("flash", owner=node.name)
        cb = ctx.bytes_by(owner=node.name, role="codebook")
        cb_sram = ctx.bytes_by("sram", owner=node.name, role="codebook")
        row = {
            "layer": node.name, "op": node.op, "index": node.index,
            "macs": int(h.macs(node, graph)),
            "flash_bytes": flash + cb_sram,  # const data + initial values of SRAM codebooks
            "codebook_bytes": cb,
            "codebook_sram_bytes": cb_sram,
            "indices_bytes": ctx.bytes_by(owner=node.name, role="indices"),
            "flash_table_bytes": ctx.bytes_by(owner=node.name, role="tables"),  # FC pair tables (in flash_bytes)
            "weights": 0,
        }
        wi = h.weight_input
        if wi is not None and wi < len(node.inputs) and node.inputs[wi] >= 0:
            t = graph.tensors[node.inputs[wi]]
            cl = t.clustering
            n_out = t.shape[h.weight_channel_axis] if h.weight_channel_axis is not None else 1
            bias_n = 0
            if len(node.inputs) > 2 and node.inputs[2] >= 0:
                bias_n = graph.tensors[node.inputs[2]].size
            baseline = t.size + 4 * bias_n + 5 * n_out  # int8 weights + int32 bias + per-channel requant
            st = cluster_stats.get(node.name, {}) if cluster_stats else {}
            cost = weight_cost(node, graph, cl, flash_tables=node.index in flash_tables)
            n_bias_bytes = bias_bytes(node, graph, cl)
            _check_cost(node, ctx, cost, n_bias_bytes)
            row.update({
                "weights": t.size,
                "output_channels": int(n_out),
                "biases": int(bias_n),
                "unique_before": int(cl.unique_before) if cl else None,
                "unique_after": int(cl.unique_after) if cl else None,
                "index_bits": int(cl.bits) if cl else 8,
                "k": int(cl.k) if cl else None,
                "granularity": cl.granularity if cl else "raw int8",
                "int8_bytes": baseline,
                "weight_flash_bytes": cost.flash,
                "int8_weight_only_bytes": int(t.size),
                "bias_bytes": n_bias_bytes,  # as stored: 2, 3 or 4 bytes per bias (vs 4 in the baseline)
                "scales": st.get("scales", "unchanged"),
                "saving": round(1.0 - (flash + cb_sram) / baseline, 4) if baseline else 0.0,
            })
            for key in ("rms_error", "snr_db", "granularity_reason", "output_error"):
                if key in st:
                    row[key] = st[key]
        rows.append(row)
    return rows


def build_report(graph, plan, emitted, *, cluster_stats=None, options=None, command="", tflm_arena=None):
    ctx = emitted.ctx
    layers = _layer_rows(graph, ctx, cluster_stats or {}, getattr(plan, "flash_tables", {}))
    sram_decl = ctx.bytes_by("sram")
    flash = ctx.bytes_by("flash") + sram_decl
    weights = sum(r["weights"] for r in layers)
    int8_flash = sum(r.get("int8_bytes", 0) for r in layers)
    # the same model with every layer's weights raw int8 (the int8 model's own scales and
    # biases), in the same C: flash minus what each layout adds or saves over raw int8
    raw_flash = flash - sum(r["weight_flash_bytes"] - r["int8_weight_only_bytes"] for r in layers
                            if "weight_flash_bytes" in r)
    totals = {
        "flash_bytes": flash,
        "sram_bytes": plan.arena_size + sram_decl,
        "arena_bytes": plan.arena_size,
        "codebook_bytes": ctx.bytes_by(role="codebook"),
        "codebook_sram_bytes": ctx.bytes_by("sram", role="codebook"),
        "indices_bytes": ctx.bytes_by(role="indices"),
        "flash_table_bytes": ctx.bytes_by(role="tables"),
        "weights": weights,
        "macs": sum(r["macs"] for r in layers),
        "int8_weight_bytes": int8_flash,
        "int8_flash_bytes": raw_flash,
        "bits_per_weight": round(8.0 * ctx.bytes_by(role="indices") / weights, 3) if weights else 0.0,
    }
    return {
        "tool": "tinycluster", "version": __version__, "command": command,
        "name": emitted.name, "source": str(graph.source),
        "options": options or {},
        "input": {"shape": list(graph.tensors[graph.inputs[0]].shape), "dtype": graph.tensors[graph.inputs[0]].dtype},
        "output": {"shape": list(graph.tensors[graph.outputs[0]].shape), "dtype": graph.tensors[graph.outputs[0]].dtype},
        "totals": totals,
        "memory_plan": plan.summary(),
        "layers": layers,
    }


def _fmt(n):
    return f"{n:,}" if isinstance(n, int) else str(n)


def render_markdown(report) -> str:
    t = report["totals"]
    out = [f"# tinycluster report: {report['name']}", "",
           f"Source: `{report['source']}`  ", f"Command: `{report['command']}`  ",
           f"tinycluster {report['version']}", "", "## Layers", "",
           "| # | layer | op | weights | unique before | unique after | index bits | k | granularity | flash bytes | codebook bytes | flash pair tables | saving vs int8 |",
           "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in report["layers"]:
        if r["weights"]:
            out.append(f"| {r['index']} | {r['layer']} | {r['op']} | {_fmt(r['weights'])} | {r['unique_before']} | "
                       f"{r['unique_after']} | {r['index_bits']} | {r['k']} | {r['granularity']} | "
                       f"{_fmt(r['flash_bytes'])} | {_fmt(r['codebook_bytes'])} | "
                       f"{_fmt(r.get('flash_table_bytes', 0))} | {100 * r['saving']:.1f}% |")
        else:
            out.append(f"| {r['index']} | {r['layer']} | {r['op']} | | | | | | | {_fmt(r['flash_bytes'])} | | | |")
    saving = 1 - t["flash_bytes"] / t["int8_weight_bytes"] if t["int8_weight_bytes"] else 0
    out += ["", "## Totals", "",
            "| quantity | bytes |", "|---|---:|",
            f"| flash (all constant data, incl. initial codebook values) | {_fmt(t['flash_bytes'])} |",
            f"| of which packed indices | {_fmt(t['indices_bytes'])} |",
            f"| of which codebooks | {_fmt(t['codebook_bytes'])} |",
            f"| of which flash pair tables (FULLY_CONNECTED, Cortex-M speed) | {_fmt(t.get('flash_table_bytes', 0))} |",
            f"| SRAM (arena + mutable codebooks) | {_fmt(t['sram_bytes'])} |",
            f"| arena (activations, I/O, scratch) | {_fmt(t['arena_bytes'])} |",
            f"| codebooks held in SRAM | {_fmt(t['codebook_sram_bytes'])} |",
            f"| int8 baseline (weights + int32 bias + requant) | {_fmt(t['int8_weight_bytes'])} |",
            f"| the same C with every layer's weights raw int8 | {_fmt(t['int8_flash_bytes'])} |", "",
            f"Weights: {_fmt(t['weights'])}; MACs: {_fmt(t['macs'])}; index bits per weight: {t['bits_per_weight']}; "
            f"flash saving vs the int8 baseline: {100 * saving:.1f}%.", ""]
    cm = report.get("clustering") or {}
    if cm.get("method"):
        out += [f"Codebooks chosen by: {cm['method']}."]
        a = cm.get("auto")
        if a:
            out += [f"Layouts (auto): the cheapest per layer, then {_fmt(a['extra_bytes_spent'])} of "
                    f"{_fmt(a['extra_bytes_allowed'])} allowed extra bytes spent where they remove the most output "
                    f"error per byte" + (f"; codebooks in SRAM capped at {_fmt(a['sram_cap'])} B" if a.get("sram_cap")
                                          is not None else "") + "."]
        out.append("")
    ev = report.get("evaluation")
    if ev:
        out += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in ev.items() if not isinstance(v, (dict, list))]
        out.append("")
    return "\n".join(out)


def write_report(report, out_dir):
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))

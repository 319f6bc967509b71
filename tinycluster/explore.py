"""`tinycluster explore`: sweep index widths, codebook layouts and flash budgets, keep the Pareto front.

    import tinycluster.explore as ex
    res = ex.explore("model.tflite", calib=None)     # a dict (JSON-friendly)
    ex.write(res, "explore_out")                      # explore.json, explore.md, explore.png (atomic)

Every point is one call of the public API, ``tinycluster.compile(model, bits=..., granularity=...)``
(or ``lossless=True``, or a ``flash_budget`` for the front end), measured with

- flash and SRAM: the report's ``totals`` (``flash_bytes``; ``sram_bytes`` = arena + codebooks held
  in SRAM), the figures ``compile`` prints;
- output fidelity against the **unclustered int8 model** (the source model for an int8 ``.tflite``;
  the front end's unclustered int8 conversion for a Keras/float model): both run under the TFLite
  Micro interpreter (the bit-exact reference of the generated C) on the same inputs; output SNR
  over the dequantized outputs (:func:`tinycluster.evaluate.snr_db`) and, for classifiers (the
  output comes from SOFTMAX), top-1 agreement (:func:`tinycluster.evaluate.agreement`).

Evaluation inputs: without ``--calib``, the data-free inputs the rest of the tool uses (``verify``):
seeded uniform random int8 tensors. With ``--calib F``, F is split in two halves (seeded shuffle):
the first calibrates (it is what ``compile --calib`` receives), the second is held out for the
evaluation, so no point is scored on the inputs it was fitted to; ``--eval E`` evaluates on E
instead and calibrates on all of F. Float arrays are quantized with the model input's scale and
zero point, int8 arrays are taken as already quantized.

The layouts swept are :data:`tinycluster.compress.cluster.GRANULARITIES` without a copy: a layout
added there appears here. A point is on the Pareto front when no other point is at least as good on
every objective (flash, SRAM: lower; SNR, agreement: higher) and strictly better on one. The point
``compile`` gives with no options (``compile MODEL [--calib F]``) is marked ``default``.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import TinyClusterError

DEFAULT_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
DEFAULT_SAMPLES = 200
MARKER = "explore.json"  # identifies an explore output folder (may be replaced by a re-run)


def layouts() -> tuple:
    """The codebook layouts ``compile --granularity`` accepts (one place: the clustering pass)."""
    from .compress.cluster import GRANULARITIES

    return tuple(GRANULARITIES)


# ----------------------------------------------------------------------------------- Pareto
def objectives(p: dict, classifier: bool) -> tuple:
    """The point's objectives as values to *minimise*: flash, SRAM, -SNR (inf when the outputs
    are identical to int8's), -agreement (classifiers only)."""
    snr = math.inf if p.get("outputs_identical") else float(p["snr_db_vs_int8"])
    obj = (float(p["flash_bytes"]), float(p["sram_bytes"]), -snr)
    if classifier:
        obj += (-float(p["top1_agreement_vs_int8"]),)
    return obj


def dominates(a: tuple, b: tuple) -> bool:
    """a dominates b: no worse on every objective (all minimised) and better on at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_flags(objs: Sequence[tuple]) -> list:
    """For each objective tuple, whether no other tuple dominates it (equal tuples all stay)."""
    return [not any(dominates(o2, o) for j, o2 in enumerate(objs) if j != i) for i, o in enumerate(objs)]


# ----------------------------------------------------------------------------------- inputs
def _load_array(path, what: str) -> np.ndarray:
    from .frontends.calib import _X_KEYS, _load_arrays, _pick

    return np.asarray(_pick(_load_arrays(path, what), _X_KEYS, path, what))


def _split_calibration(x: np.ndarray, calib, seed: int, tmp: Path):
    """Halve the --calib inputs ``x`` (seeded shuffle): (path of the calibration half, evaluation half)."""
    if x.ndim == 0 or x.shape[0] < 2:
        raise TinyClusterError(f"{calib}: explore needs at least 2 calibration inputs to hold half of them out "
                               "for the evaluation (or give --eval FILE)")
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    half = x.shape[0] // 2
    cal = tmp / ("calib_half" + Path(str(calib)).suffix.lower().replace(".npz", ".npy"))
    np.save(cal, x[np.sort(perm[half:])])
    return cal, x[np.sort(perm[:half])]


# ----------------------------------------------------------------------------------- points
def _classifier(cm) -> bool:
    """True when the model's output is produced by SOFTMAX (class scores: top-1 is meaningful)."""
    g = cm.graph
    if g is None:
        return False
    out = g.outputs[0]
    return any(out in n.outputs and n.op == "SOFTMAX" for n in g.nodes)


def _reference_bytes(model: Path, cm) -> tuple:
    """(bytes of the unclustered int8 model, what it is)."""
    ref = cm.extra_files.get("int8.tflite")
    if ref is not None:
        return bytes(ref), "the front end's unclustered int8 conversion (same calibration inputs)"
    return model.read_bytes(), f"the source model {model.name} (unclustered int8)"


def _budget_honoured(report: dict) -> bool:
    opts = report.get("options") or {}
    return bool(opts.get("flash_budget") or (report.get("frontend") or {}).get("sensitivity"))


def _command(model, calib, board, **kw) -> str:
    parts = ["tinycluster", "compile", str(model), "-o", "OUT"]
    if kw.get("lossless"):
        parts.append("--lossless")
    if kw.get("bits") is not None:
        parts += ["--bits", str(kw["bits"])]
    if kw.get("flash_budget") is not None:
        parts += ["--flash-budget", str(kw["flash_budget"])]
    if kw.get("granularity") is not None:
        parts += ["--granularity", kw["granularity"]]
    if calib is not None:
        parts += ["--calib", str(calib)]
    if board is not None:
        parts += ["--board", board]
    return " ".join(parts)


def _early_input_check(model: Path, x, source):
    """Check evaluation inputs against an int8 .tflite before the (long) sweep starts; other models
    are checked once the first compile has produced their int8 reference."""
    from .evaluate import TFLiteRunner, model_inputs
    from .importers.tflite import is_float_model

    if model.suffix.lower() != ".tflite":
        return
    try:
        if is_float_model(model):
            return
        ref = TFLiteRunner(model.read_bytes())
    except Exception:  # a model TFLite Micro cannot load: compile reports what is wrong with it
        return
    model_inputs(x, ref, source)


class VersusInt8:
    """Scores models against the unclustered int8 model: both under TFLite Micro on inputs ``xs``
    (already in the model's input dtype); output SNR over dequantized outputs and top-1 agreement."""

    def __init__(self, ref_bytes: bytes, xs: np.ndarray, classifier: bool):
        from .evaluate import TFLiteRunner

        self.xs, self.classifier = xs, classifier
        self.ref = TFLiteRunner(ref_bytes)
        self.y_ref = self.ref.dequantize(self.ref.run_quantized(xs))

    def __call__(self, tfl: bytes) -> dict:
        from .evaluate import TFLiteRunner, agreement, agreement_argmax, snr_db

        m = TFLiteRunner(tfl)
        y = m.dequantize(m.run_quantized(self.xs))
        snr = snr_db(y, self.y_ref)
        r = {"snr_db_vs_int8": None if math.isinf(snr) else round(snr, 3),
             "outputs_identical": bool(math.isinf(snr)),
             "top1_agreement_vs_int8": round(agreement(y, self.y_ref), 4) if self.classifier else None}
        if self.classifier:
            r["top1_agreement_vs_int8_argmax"] = round(agreement_argmax(y, self.y_ref), 4)
        return r


def _point(label, cm, ev: Optional["VersusInt8"], seconds, command, **opts) -> dict:
    t = cm.report["totals"]
    p = {"label": label, "layout": opts.get("granularity"), "bits": opts.get("bits"),
         "lossless": bool(opts.get("lossless")), "flash_budget": opts.get("flash_budget"),
         "flash_bytes": int(t["flash_bytes"]), "sram_bytes": int(t["sram_bytes"]),
         "arena_bytes": int(t["arena_bytes"]), "codebook_sram_bytes": int(t["codebook_sram_bytes"]),
         "codebook_bytes": int(t["codebook_bytes"]), "indices_bytes": int(t["indices_bytes"]),
         "int8_weight_bytes": int(t["int8_weight_bytes"]), "bits_per_weight": t["bits_per_weight"],
         "layouts_used": _layouts_used(cm.report), "command": command,
         "digest": hashlib.sha256(cm.clustered_tflite).hexdigest()[:16]}
    if ev is not None:
        p.update(ev(cm.clustered_tflite))
    p["seconds"] = round(seconds, 2)
    return p


def _layouts_used(report: dict) -> dict:
    """How many weight layers ended in each layout (auto and lossless choose per layer)."""
    out = {}
    for r in report.get("layers", []):
        if r.get("weights"):
            g = r.get("granularity") or "raw int8"
            out[g] = out.get(g, 0) + 1
    return out


def _parse_budget(b):
    from .compress.sensitivity import parse_bytes

    return parse_bytes(b)


def explore(model, *, calib=None, eval_data=None, bits: Sequence[int] = DEFAULT_BITS,
            layout_names: Optional[Sequence[str]] = None, lossless: bool = True, budgets="auto",
            samples: int = DEFAULT_SAMPLES, seed: int = 0, board: Optional[str] = None, quiet: bool = False,
            command: str = "") -> dict:
    """Sweep and measure (module docstring). ``budgets``: "auto" (the flash of the default layout's
    3- and 4-bit points, where the model's path supports budgets), a list of byte counts, or None.
    Returns the result dict :func:`write` stores."""
    import tinycluster
    from tqdm.auto import tqdm

    from .evaluate import TFLiteRunner, model_inputs
    from .verify import make_inputs

    t_start = time.time()
    model = Path(model)
    if not model.exists():
        raise TinyClusterError(f"{model}: no such file or folder")
    all_layouts = layouts()
    names = tuple(layout_names) if layout_names else all_layouts
    for n in names:
        if n not in all_layouts:
            raise TinyClusterError(f"layout '{n}' is not one of {', '.join(all_layouts)}")
    bits = tuple(sorted(set(int(b) for b in bits)))
    for b in bits:
        if not 1 <= b <= 8:
            raise TinyClusterError(f"--bits {b} is out of range: index widths are 1..8")
    if not bits and not lossless:
        raise TinyClusterError("nothing to sweep: give at least one index width in --bits or keep --lossless")
    if samples <= 0:
        raise TinyClusterError(f"--samples must be a positive number (got {samples})")
    if eval_data is not None and calib is None:
        raise TinyClusterError("--eval needs --calib (without it explore evaluates on seeded random int8 inputs)")
    if budgets not in (None, "auto"):
        budgets = [_parse_budget(b) for b in budgets]

    tmp = Path(tempfile.mkdtemp(prefix="tc_explore_"))
    try:
        calib_for_compile, x_eval, eval_note = calib, None, None
        if calib is not None:
            x_cal = _load_array(calib, "calibration")
            _early_input_check(model, x_cal, calib)
            if eval_data is None:
                calib_for_compile, x_eval = _split_calibration(x_cal, calib, seed, tmp)
                eval_note = (f"the held-out half of {Path(str(calib)).name} ({x_eval.shape[0]} inputs; the other "
                             f"half calibrates)")
            else:
                x_eval = _load_array(eval_data, "evaluation")
                _early_input_check(model, x_eval, eval_data)
                eval_note = f"{Path(str(eval_data)).name} ({x_eval.shape[0]} inputs; all of --calib calibrates)"
        fe = {"calib": str(calib_for_compile)} if calib_for_compile is not None else {}

        def run(**kw):
            t0 = time.time()
            cm = tinycluster.compile(model, board=board, seed=seed, frontend=dict(fe, **kw.pop("frontend", {})),
                                     quiet=True, **kw)
            return cm, time.time() - t0

        # the default point first: it fixes the reference model and the evaluation inputs
        with tqdm(total=1, desc="explore: default", disable=quiet, leave=False) as bar:
            cm_def, sec = run()
            bar.update(1)
        classifier = _classifier(cm_def)
        ref_bytes, ref_note = _reference_bytes(model, cm_def)
        ref = TFLiteRunner(ref_bytes)
        if x_eval is None:
            xs = np.stack(make_inputs(ref.input_shape, ref.in_dtype, samples, seed, ref.input_zero_point,
                                      ref.input_float_range)[:samples])
            eval_note = (f"{samples} seeded random inputs (seed {seed}), the data-free inputs `verify` uses; no "
                         "--calib given: figures on random inputs describe the arithmetic, not the task. Give --calib "
                         "with representative inputs for figures that reflect real use")
            source = "random"
        else:
            xs = model_inputs(x_eval, ref, eval_data or calib)[:samples]
            source = "calib-held-out" if eval_data is None else "eval-file"
        ev = VersusInt8(ref_bytes, xs, classifier)
        d_opts = cm_def.report.get("options", {})
        default = _point("default", cm_def, ev, sec, _command(model, calib, board),
                         granularity=d_opts.get("granularity"), bits=d_opts.get("bits"),
                         lossless=d_opts.get("lossless"))
        del cm_def

        jobs = [dict(bits=b, granularity=g) for g in names for b in bits]
        if lossless:
            jobs += [dict(lossless=True, granularity=g) for g in names]
        points, notes = [], []
        bar = tqdm(total=len(jobs), desc="explore", unit="point", disable=quiet)
        for kw in jobs:
            label = f"{kw['granularity']} " + ("lossless" if kw.get("lossless") else f"{kw['bits']} bit")
            bar.set_postfix_str(label)
            try:
                cm, sec = run(**kw)
            except TinyClusterError as e:  # one point that compile refuses does not end the sweep
                notes.append(f"{label} skipped: {e}")
            else:
                points.append(_point(label, cm, ev, sec, _command(model, calib, board, **kw), **kw))
            bar.update(1)
        bar.close()

        # flash budgets: per-layer widths from the sensitivity search, where compile supports them
        if budgets == "auto":
            g_def = d_opts.get("granularity")
            budgets = [p["flash_bytes"] for p in points if p["layout"] == g_def and p["bits"] in (3, 4)
                       and not p["lossless"]]
        for b in tqdm(budgets or [], desc="explore: flash budgets", unit="point", disable=quiet, leave=False):
            label = f"budget {b:,} B"
            try:
                cm, sec = run(frontend={"flash_budget": int(b)})
            except TinyClusterError as e:
                notes.append(f"{label} skipped: {e}")
                continue
            if not _budget_honoured(cm.report):
                notes.append(f"flash budgets skipped: `compile --flash-budget` does not apply to this model's path "
                             f"({model.suffix} input) in tinycluster {tinycluster.__version__}")
                break
            points.append(_point(label, cm, ev, sec, _command(model, calib, board, flash_budget=int(b)),
                                 flash_budget=int(b)))

        # the default: the sweep point with the same output, else a row of its own
        same = [p for p in points if p["digest"] == default["digest"] and p["flash_bytes"] == default["flash_bytes"]
                and p["sram_bytes"] == default["sram_bytes"]]
        same.sort(key=lambda p: (p["layout"] != default["layout"], p["bits"] != default["bits"]))
        if same:
            same[0]["default"] = True
            default_label = same[0]["label"]
        else:
            default["default"] = True
            points.append(default)
            default_label = "default"
        for p in points:
            p.setdefault("default", False)
        for p, on in zip(points, pareto_flags([objectives(p, classifier) for p in points])):
            p["pareto"] = bool(on)
        points.sort(key=lambda p: (p["flash_bytes"], p["sram_bytes"]))
        if calib is None:
            notes.append("no --calib: codebooks were chosen data-free and scored on random inputs; "
                         "--calib with representative inputs would help both")
        elif eval_data is None:
            notes.append(f"each point was calibrated on half of {Path(str(calib)).name} and scored on the other "
                         "half; the commands listed calibrate on all of it, as you would")
        return {
            "tool": "tinycluster", "version": tinycluster.__version__, "command": command,
            "model": str(model), "reference": ref_note, "interpreter": "TFLite Micro",
            "evaluation": {"inputs": eval_note, "source": source, "samples": int(xs.shape[0]), "seed": seed},
            "calibration": None if calib is None else str(calib),
            "classifier": classifier, "layouts": list(names), "bits": list(bits),
            "objectives": ["flash_bytes (min)", "sram_bytes (min)", "snr_db_vs_int8 (max)"]
                          + (["top1_agreement_vs_int8 (max)"] if classifier else []),
            "default": {"label": default_label, "command": default["command"], "options": d_opts},
            "int8_weight_bytes": default["int8_weight_bytes"],
            "points": points, "notes": notes, "seconds": round(time.time() - t_start, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------- output
def _snr_txt(p) -> str:
    if p.get("outputs_identical"):
        return "identical"
    return f"{p['snr_db_vs_int8']:.2f}"


def _groups(pts):
    """Points in order, each with the later points that gave the very same model (same clustered
    .tflite, flash and SRAM): [(first, [same, ...]), ...]."""
    out, seen = [], {}
    for p in pts:
        key = (p["digest"], p["flash_bytes"], p["sram_bytes"])
        if key in seen:
            seen[key][1].append(p)
        else:
            seen[key] = (p, [])
            out.append(seen[key])
    return out


def render_markdown(res: dict, plot: Optional[str]) -> str:
    pts = res["points"]
    cls = res["classifier"]
    lines = [f"# tinycluster explore: {Path(res['model']).name}", "",
             f"Command: `{res['command']}`  ", f"tinycluster {res['version']}, {res['seconds']} s", "",
             f"- Reference: {res['reference']}; both run under {res['interpreter']} on the same inputs.",
             f"- Evaluation inputs: {res['evaluation']['inputs']}.",
             "- SNR: output SNR of the clustered model vs the int8 model over dequantized outputs "
             "(`identical`: bit-identical outputs)" + (
                 "; top-1: agreement with the int8 model's top class (a class top-ranked by both; where two "
                 "classes tie for the top of a quantized output, either counts)." if cls else
                 "; no top-1 column: the output is not a SOFTMAX (not class scores)."),
             "- Flash: all constant data incl. initial codebook values; SRAM: arena + codebooks held in SRAM "
             "(the report's totals).",
             f"- Pareto: no other point is at least as good on every one of {', '.join(res['objectives'])} and "
             "better on one.",
             f"- Default (`{res['default']['command']}`): **{res['default']['label']}**, marked `<- default`.", ""]
    lines += [f"- Note: {n}." for n in res["notes"]]
    if res["notes"]:
        lines.append("")
    head = "| setting | flash B | flash / int8 | SRAM B | codebooks in SRAM B | bits/weight | SNR vs int8 (dB) |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if cls:
        head += " top-1 vs int8 |"
        sep += "---:|"
    head += " Pareto |"
    sep += ":---:|"
    lines += ["## All points (by flash)", "", head, sep]
    base = res["int8_weight_bytes"] or 1
    for p, same in _groups(pts):
        name = " = ".join(q["label"] + (" `<- default`" if q["default"] else "") for q in [p] + same)
        row = (f"| {name} | {p['flash_bytes']:,} | {p['flash_bytes'] / base:.2f} | {p['sram_bytes']:,} | "
               f"{p['codebook_sram_bytes']:,} | {p['bits_per_weight']} | {_snr_txt(p)} |")
        if cls:
            row += f" {100 * p['top1_agreement_vs_int8']:.1f} % |"
        row += " yes |" if p["pareto"] else "  |"
        lines.append(row)
    lines += ["", f"flash / int8: against the int8 baseline of the report ({res['int8_weight_bytes']:,} B: int8 "
              "weights + int32 biases + per-channel requantization).", ""]
    lines += ["## Pareto front", "", "One command per point (points with identical output listed once):", ""]
    for p, same in _groups(pts):
        if p["pareto"]:
            also = f" (same model as {', '.join(q['label'] for q in same)})" if same else ""
            lines.append(f"- {p['label']}{' (default)' if p['default'] or any(q['default'] for q in same) else ''}"
                         f"{also}: `{p['command']}`")
    lines.append("")
    if plot:
        lines += [f"![pareto]({plot})", ""]
    return "\n".join(lines)


def plot_png(res: dict) -> Optional[bytes]:
    """The Pareto plot as PNG bytes, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io

    pts = res["points"]
    finite = [p["snr_db_vs_int8"] for p in pts if not p["outputs_identical"]]
    top = (max(finite) if finite else 0.0) + 6.0

    def snr(p):
        return top if p["outputs_identical"] else p["snr_db_vs_int8"]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = list(dict.fromkeys((p["layout"] or "budget") if not p["lossless"] else "lossless" for p in pts))
    style = {k: (m, c) for k, m, c in zip(kinds, "osD^vP*X<>", ["#36c", "#c63", "#393", "#a3a", "#c33", "#088",
                                                                 "#777", "#960", "#03a", "#a06"])}
    for ax, key, xlabel in ((axes[0], "flash_bytes", "flash (kB)"), (axes[1], "sram_bytes", "SRAM (kB)")):
        for kind in kinds:
            sel = [p for p in pts if ((p["layout"] or "budget") if not p["lossless"] else "lossless") == kind]
            m, c = style[kind]
            ax.scatter([p[key] / 1000 for p in sel], [snr(p) for p in sel], marker=m, s=38,
                       facecolors=[c if p["pareto"] else "none" for p in sel], edgecolors=c, label=kind)
        for p in pts:
            if p["default"]:
                ax.annotate("default", (p[key] / 1000, snr(p)), xytext=(8, -14), textcoords="offset points",
                            fontsize=8, color="#c33", arrowprops={"arrowstyle": "->", "color": "#c33"})
            if p["bits"] is not None and p["layout"] == res["default"]["options"].get("granularity"):
                ax.annotate(str(p["bits"]), (p[key] / 1000, snr(p)), xytext=(3, 3), textcoords="offset points",
                            fontsize=6, color="#555")
        ax.axhline(top, color="#999", lw=0.5, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("output SNR vs int8 (dB)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title="layout (filled: Pareto)", title_fontsize=7)
    axes[0].text(0.01, 0.99, "top line: identical to int8", transform=axes[0].transAxes, fontsize=6,
                 va="top", color="#777")
    fig.suptitle(f"{Path(res['model']).name}: {res['evaluation']['samples']} inputs ({res['evaluation']['source']})",
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write(res: dict, out_dir) -> tuple:
    """explore.json, explore.md and explore.png into out_dir, atomically. Returns (folder, plot note
    or None)."""
    from .api import write_output_dir

    png = plot_png(res)
    note = None if png is not None else ("plot skipped: matplotlib is not installed (pip install 'tinycluster[plots]'); "
                                         "the table is complete without it")
    files = {"explore.json": json.dumps(res, indent=1) + "\n",
             "explore.md": render_markdown(res, "explore.png" if png is not None else None)}
    if png is not None:
        files["explore.png"] = png
    return write_output_dir(out_dir, files, marker=MARKER), note

"""Fidelity of clustered models, on realistic inputs: the Keras path, the int8 .tflite path, and
TFLite Micro's own LUT compressor side by side.

    .venv/bin/python benchmarks/fidelity.py [--part keras agreement int8 lut] [--models NAME ...] [--docs docs]

Runs in parts; a partial run (some parts, some models) replaces only its own entries in
``docs/fidelity.json`` and re-renders ``docs/fidelity.md`` from the whole file, so one model or
one path can be re-measured alone. Every run is logged there (command, parts, models, seconds).

``keras`` (``../shared/models/*.h5``: ad01, pretrainedResnet, vww_96): the Keras front end
compresses each model (k-means per output channel, post-training, no labels) at 8, 6, 5, 4, 3
and 2 bits, as the uniform INT4 baseline (``method="uniform"``), and with per-layer widths from
the sensitivity search under the flash of the uniform 3-bit and 4-bit models. Each compressed
full-integer model runs under TFLite Micro (what the generated C computes, bit for bit); its
dequantized outputs are compared with the float Keras model's:

- top-1 agreement: fraction of inputs on which some class is top-ranked by both models
  (``tinycluster.evaluate.agreement``: a quantized int8 softmax can tie two classes for its top,
  and either then counts; without ties this is arg-max equality; classifiers only; ad01 is an autoencoder, its outputs are a reconstruction);
- output SNR: ``10 log10(sum y_float^2 / sum (y - y_float)^2)`` over all outputs.

``agreement`` (the classifiers among them): top-1 agreement with float of the unclustered int8
model and of the 6-bit model on 1,000 evaluation crops (the first 200 are ``keras``'s), with a
paired bootstrap interval of the difference: on 200 near-tie crops one crop is half a point.

``int8`` (the four shared int8 ``.tflite`` models, what most users hold): ``tinycluster.compile``
as a user calls it, at 8, 6, 5, 4, 3 and 2 bits with the default layout, every layout of
``compress.cluster.GRANULARITIES`` at 4 bits, ``--lossless``, and per-channel 4 bit without
calibration data (the layout and method of the tool before issue 9, the reference of the
codebook-economy check); ``--calib`` with the calibration inputs below (kws ships no data: its evaluation inputs are
seeded random int8, as ``verify`` draws them, and its calibration inputs other draws of the same
distribution with another seed), and the default 4-bit layout without calibration data.
The source model and each ``<name>_clustered.tflite`` run under TFLite Micro on the same
evaluation inputs: output SNR and top-1 agreement against the unclustered int8 model; flash,
SRAM and the int8 baseline from the report's totals; TFLite Micro's whole arena (head + tail)
for the SRAM bound.

``lut``: TFLite Micro's LUT compressor (``benchmarks/tflm_lut.py``) on the clustered model of
``compile --bits 4`` (default layout, ``--calib`` as above): .tflite size, whether the PyPI
TFLite Micro interpreter runs it, whether its outputs equal the clustered model's, and its arena.

Flash is ``totals.flash_bytes`` of the core's report for each model.

Inputs (never uniform noise, which makes these classifiers' outputs near-ties):
- image models: random square crops (64..400 px) of scikit-learn's two bundled sample images
  (``load_sample_images``), resized to the model input; calibration crops come from the left
  40 % of each image, evaluation crops from the right 60 %, so they never overlap. Scaled to the
  model's input range (ResNet-8: 0..255, as its int8 input quantization says; VWW: 0..1).
- ad01 (ToyCar anomaly detection, 5 frames x 128 log-mel bins): synthetic log-mel spectrogram
  frames: a smooth random spectral envelope (falling with frequency, low-order cosine
  ripples), a few stationary machine harmonics (+6..15 dB peaks, fixed over the 5 frames), slow
  frame-to-frame level drift and 1.5 dB noise, in the -80..10 dB range the int8 model's input
  quantization covers. Calibration and evaluation draw from different seeds.

Calibration inputs for the int8 path: 64 crops for the image models, 64 frames for ad01, 64
seeded random int8 inputs for kws (seed 1; its 200 evaluation inputs: seed 0).
Evaluation: 200 inputs for every path.

Writes docs/fidelity.md, docs/fidelity.json and docs/fidelity.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinycluster.evaluate import TFLiteRunner, agreement, agrees, snr_db  # noqa: E402
from tinycluster.frontends.keras import load_keras  # noqa: E402
from tinycluster.frontends.pipeline import compress_to_int8_tflite  # noqa: E402

SHARED = (REPO / ".." / "shared" / "models").resolve()
MODELS = ["ad01.h5", "pretrainedResnet.h5", "vww_96.h5"]
BITS = [8, 6, 5, 4, 3, 2]
INPUT_SCALE = {"pretrainedResnet.h5": 255.0, "vww_96.h5": 1.0}


# ------------------------------------------------------------------------------- inputs
def crop_plan(n, part, seed, shapes):
    """The crops ``image_crops`` takes: [(image index, y, x, side, mirrored)]; ``shapes``: (h, w) of
    each image. Calibration crops lie in the left 40 % of each image, evaluation crops in the rest."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        x0, x1 = (0, int(0.4 * w)) if part == "calib" else (int(0.4 * w), w)
        side = int(rng.integers(64, min(400, h, x1 - x0) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        plan.append((i % len(shapes), y, x, side, bool(rng.random() < 0.5)))
    return plan


def image_crops(n, size, part, seed, scale):
    """n crops of scikit-learn's sample images, resized to size x size, values in [0, scale]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    imgs = load_sample_images().images
    out = []
    for k, y, x, side, mirrored in crop_plan(n, part, seed, [im.shape[:2] for im in imgs]):
        crop = Image.fromarray(imgs[k][y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        a = np.asarray(crop, dtype=np.float32) / 255.0
        if mirrored:
            a = a[:, ::-1]
        out.append(a * scale)
    return np.stack(out).astype(np.float32)


def spectrogram_frames(n, seed, frames=5, bins=128):
    rng = np.random.default_rng(seed)
    f = np.arange(bins) / bins
    out = []
    for _ in range(n):
        env = -25.0 - 35.0 * f + rng.normal(0, 4.0)
        for j in range(1, 5):
            env = env + rng.normal(0, 4.0 / j) * np.cos(np.pi * j * f + rng.uniform(0, np.pi))
        peaks = np.zeros(bins)
        for _ in range(int(rng.integers(2, 6))):
            c, wdt, amp = rng.uniform(0, bins), rng.uniform(1.0, 4.0), rng.uniform(6, 15)
            peaks += amp * np.exp(-0.5 * ((np.arange(bins) - c) / wdt) ** 2)
        drift = np.cumsum(rng.normal(0, 1.0, frames))
        spec = env[None] + peaks[None] + drift[:, None] + rng.normal(0, 1.5, (frames, bins))
        out.append(np.clip(spec, -80, 10).reshape(-1))
    return np.stack(out).astype(np.float32)


def make_inputs(name, shape, n_cal, n_eval):
    if name in INPUT_SCALE:
        size = int(shape[1])
        return (image_crops(n_cal, size, "calib", 1, INPUT_SCALE[name]),
                image_crops(n_eval, size, "eval", 2, INPUT_SCALE[name]))
    return spectrogram_frames(n_cal, 1), spectrogram_frames(n_eval, 2)


# ------------------------------------------------------------------------------- measure
def core_flash(tfl: bytes) -> int:
    import tinycluster

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(tfl)
        return int(tinycluster.compile(p, lossless=True, granularity="per-channel").report["totals"]["flash_bytes"])


NOISE = (0.001, 0.01)


def weight_noise_fidelity(path, x_eval, y_float, classifier):
    """How fragile the float model's decisions are: every kernel plus Gaussian noise of
    ``r * std(kernel)`` (fixed seed), no quantization at all. Agreement below 100 % at r = 0.1 %
    (-60 dB weight SNR, far below int8 rounding) means the inputs hold decisions that any
    weight change flips."""
    from tinycluster.frontends.keras import weighted_layers

    out = {}
    for r in NOISE:
        m = load_keras(path)
        rng = np.random.default_rng(0)
        for _, var in weighted_layers(m):
            w = var.numpy()
            var.assign(w + rng.normal(0, r * float(np.std(w)), w.shape).astype(w.dtype))
        y = m.predict(x_eval, verbose=0, batch_size=64)
        out[str(r)] = {"agreement": agreement(y, y_float) if classifier else None, "snr_db": snr_db(y, y_float)}
        print(f"  weight noise {100 * r:g} %: agreement {out[str(r)]['agreement']}, SNR {out[str(r)]['snr_db']:.2f} dB",
              flush=True)
    return out


MARGIN = 0.1  # "clear" inputs: the float model's top-1 probability leads the runner-up by >= this


def measure(tfl, x_eval, y_float, classifier, y_int8=None):
    y = TFLiteRunner(tfl, "tflm").run(x_eval)
    r = {"agreement": agreement(y, y_float) if classifier else None, "snr_db": snr_db(y, y_float),
         "flash_bytes": core_flash(tfl)}
    if classifier:
        top2 = np.sort(y_float, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) >= MARGIN
        r["clear_inputs"] = int(clear.sum())
        r["agreement_clear"] = agreement(y[clear], y_float[clear]) if clear.any() else None
    if y_int8 is not None:
        r["agreement_int8"] = agreement(y, y_int8) if classifier else None
        r["snr_db_int8"] = snr_db(y, y_int8)
    return r, y


def run_model(name, n_cal, n_eval, quiet=True):
    path = SHARED / name
    model = load_keras(path)
    x_cal, x_eval = make_inputs(name, model.input_shape, n_cal, n_eval)
    y_float = model.predict(x_eval, verbose=0, batch_size=64)
    classifier = name != "ad01.h5"
    noise = weight_noise_fidelity(path, x_eval, y_float, classifier)
    calib_file = Path(tempfile.mkdtemp()) / "calib.npy"
    np.save(calib_file, x_cal)
    rows = {}
    t0 = time.time()
    ref = {}

    def go(key, **kw):
        t = time.time()
        tfl, info = compress_to_int8_tflite(str(path), calib=str(calib_file), quiet=quiet, artifacts=False,
                                            granularity="per-channel", **kw)
        r, _ = measure(tfl, x_eval, y_float, classifier, ref.get("int8"))
        r["mean_bits"] = info["mean_bits"]
        if "sensitivity" in info:
            r["per_layer_bits"] = info["per_layer_bits"]
            r["budget"] = info["sensitivity"]["budget"]
        r["seconds"] = round(time.time() - t, 1)
        rows[key] = r
        print(f"  {name} {key:>10}: agreement {r['agreement']}, SNR {r['snr_db']:.2f} dB, "
              f"vs int8 {r.get('agreement_int8')} {r.get('snr_db_int8', float('nan')):.2f} dB, "
              f"flash {r['flash_bytes']} B, {r['seconds']} s", flush=True)
        return tfl, info

    tfl8, info8 = compress_to_int8_tflite(str(path), calib=str(calib_file), quiet=quiet, bits=8,
                                          granularity="per-channel")
    rows["int8"], ref["int8"] = measure(info8.artifacts["int8.tflite"], x_eval, y_float, classifier)
    rows["int8"]["mean_bits"] = 8.0
    print(f"  {name}       int8: agreement {rows['int8']['agreement']}, SNR {rows['int8']['snr_db']:.2f} dB",
          flush=True)
    go("8", bits=8)
    for b in BITS[1:]:
        go(str(b), bits=b)
    go("uniform4", bits=4, method="uniform")
    for b in (3, 4):
        go(f"sens@{b}", flash_budget=rows[str(b)]["flash_bytes"])
    return {"model": name, "classifier": classifier, "calibration_samples": int(n_cal), "weight_noise": noise,
            "evaluation_samples": int(n_eval), "rows": rows, "seconds": round(time.time() - t0, 1)}


# ------------------------------------------------------------------------------- agreement at 6 bits, more crops
AGREEMENT_MODELS = ["pretrainedResnet.h5", "vww_96.h5"]  # the classifiers among MODELS


def paired_difference(ok_a, ok_b, n_boot=2000, seed=0) -> dict:
    """Agreement of a minus agreement of b on the same inputs (``ok_*``: per-input booleans), with a
    95 % paired bootstrap interval and the number of inputs on which exactly one of them is right."""
    d = np.asarray(ok_a, dtype=np.int64) - np.asarray(ok_b, dtype=np.int64)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    return {"difference": float(d.mean()), "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "discordant": int(np.abs(d).sum()), "n": int(d.size)}


def run_agreement_model(name, n_cal=100, n_eval=1000, bits=6):
    """Top-1 agreement with float of the unclustered int8 model and of the ``bits``-bit model on
    ``n_eval`` evaluation inputs (the first 200 are the keras part's), same calibration as there."""
    path = SHARED / name
    t0 = time.time()
    model = load_keras(path)
    x_cal, x_eval = make_inputs(name, model.input_shape, n_cal, n_eval)
    y_float = model.predict(x_eval, verbose=0, batch_size=64)
    calib_file = Path(tempfile.mkdtemp()) / "calib.npy"
    np.save(calib_file, x_cal)
    tfl, info = compress_to_int8_tflite(str(path), calib=str(calib_file), quiet=True, bits=bits,
                                        granularity="per-channel")
    ys = {"int8": TFLiteRunner(info.artifacts["int8.tflite"], "tflm").run(x_eval), str(bits): TFLiteRunner(tfl, "tflm").run(x_eval)}
    ok = {k: agrees(y, y_float) for k, y in ys.items()}
    res = {"model": name, "bits": bits, "calibration_samples": n_cal, "evaluation_samples": n_eval,
           "rows": {k: {"agreement": float(ok[k].mean()), "agreement_first200": float(ok[k][:200].mean()),
                        "snr_db": snr_db(ys[k], y_float)} for k in ys},
           "difference": paired_difference(ok[str(bits)], ok["int8"]), "seconds": round(time.time() - t0, 1)}
    print(f"  {name}: {n_eval} crops: int8 {res['rows']['int8']['agreement']:.4f}, {bits} bit "
          f"{res['rows'][str(bits)]['agreement']:.4f}, difference {res['difference']}", flush=True)
    return res


def agreement_md(results) -> list:
    lines = ["| model | evaluation inputs | int8: top-1 vs float | 6 bit: top-1 vs float | 6 bit - int8 (95 % "
             "paired bootstrap) | inputs where exactly one is right | SNR vs float int8 / 6 bit (dB) | s |",
             "|---|---:|---:|---:|---|---:|---|---:|"]
    for r in results:
        i8, b6, d = r["rows"]["int8"], r["rows"][str(r["bits"])], r["difference"]
        lines.append(f"| {r['model']} | {r['evaluation_samples']} | {_f(i8['agreement'], True)} (first 200: "
                     f"{_f(i8['agreement_first200'], True)}) | {_f(b6['agreement'], True)} (first 200: "
                     f"{_f(b6['agreement_first200'], True)}) | {100 * d['difference']:+.1f} points "
                     f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] | {d['discordant']} | "
                     f"{_f(i8['snr_db'])} / {_f(b6['snr_db'])} | {r['seconds']} |")
    lines.append("")
    return lines


def agreement_checks(res) -> list:
    r, d = res["rows"], res["difference"]
    b = str(res["bits"])
    return [(f"{res['model']}: {b} bit top-1 agreement vs float on {res['evaluation_samples']} evaluation inputs "
             f"{_f(r[b]['agreement'], True)} >= int8's {_f(r['int8']['agreement'], True)} - 1 point",
             r[b]["agreement"] >= r["int8"]["agreement"] - 0.01 - 1e-9)]


# ------------------------------------------------------------------------------- int8 path
INT8_MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]
# evaluation / calibration inputs of each int8 model: image crops (input scale), synthetic frames, or none
INT8_INPUTS = {"pretrainedResnet_quant.tflite": ("crops", 255.0), "vww_96_int8.tflite": ("crops", 1.0),
               "ad01_int8.tflite": ("frames", None), "kws_ref_model.tflite": ("random", None)}
INT8_CALIB = 64


def int8_inputs(name, shape, n_cal, n_eval, seed=0):
    """(float calibration inputs or None, evaluation inputs: float real values, or int8 when the
    benchmark has no inputs for the model (seeded random, as ``verify`` draws them), what they are)."""
    from tinycluster.verify import make_inputs as random_inputs

    kind, scale = INT8_INPUTS.get(name, ("random", None))
    if kind == "crops":
        return (image_crops(n_cal, int(shape[1]), "calib", 1, scale), image_crops(n_eval, int(shape[1]), "eval", 2, scale),
                f"{n_eval} evaluation crops (calibration: {n_cal} other crops)")
    if kind == "frames":
        return (spectrogram_frames(n_cal, 1), spectrogram_frames(n_eval, 2),
                f"{n_eval} synthetic log-mel frames (calibration: {n_cal} others)")
    xs = np.stack(random_inputs(tuple(shape), np.int8, n_eval, seed)[:n_eval]).reshape((n_eval,) + tuple(shape[1:]))
    # no real data ships with the model: calibrate on draws of the same distribution with another seed
    cal = np.stack(random_inputs(tuple(shape), np.int8, n_cal, seed + 1)[:n_cal]).reshape((n_cal,) + tuple(shape[1:]))
    return (cal, xs, f"{n_eval} seeded random int8 inputs (seed {seed}; calibration: {n_cal} other seeded random int8 "
            f"inputs, seed {seed + 1}, the same distribution: no real data ships with the model)")


def economy_bound(report) -> int:
    """The issue's codebook-economy reference: 4-bit indices + 4 B per bias + 5 B per output channel,
    summed over the weighted layers of the report."""
    tot = 0
    for layer in report["layers"]:
        if layer.get("weights"):
            tot += (layer["weights"] * 4 + 7) // 8 + 4 * layer.get("biases", 0) + 5 * layer.get("output_channels", 0)
    return int(tot)


def larger_than_int8(report, raw: dict) -> list:
    """Weighted layers whose flash exceeds the same layer's flash as raw int8 (``raw``: layer -> flash
    bytes in the report of ``compile --bits 8``, where every weight is its own int8 value)."""
    return [layer["layer"] for layer in report["layers"]
            if layer.get("weights") and layer["flash_bytes"] > raw.get(layer["layer"], layer["flash_bytes"])]


def layer_flash(report) -> dict:
    return {layer["layer"]: layer["flash_bytes"] for layer in report["layers"] if layer.get("weights")}


def _method(report) -> str:
    """How the codebooks were chosen, as the report states it (``None`` where it does not say)."""
    for where in (report, report.get("options") or {}, report.get("clustering") or {}):
        for key in ("codebook_method", "method", "clustering_method"):
            if where.get(key):
                return str(where[key])
    return None


class Int8Eval:
    """The unclustered int8 model under TFLite Micro on fixed inputs; scores other models against it
    (``tinycluster.explore.VersusInt8``, the measurement ``explore`` makes)."""

    def __init__(self, src: bytes, x_eval, classifier: bool):
        from tinycluster.evaluate import model_inputs, top_ties
        from tinycluster.explore import VersusInt8

        self.xs = model_inputs(x_eval, TFLiteRunner(src, "tflm"), "evaluation inputs")
        self._vs = VersusInt8(src, self.xs, classifier)
        self.ties = top_ties(self._vs.y_ref) if classifier else None

    def __call__(self, tfl: bytes) -> dict:
        r = self._vs(tfl)
        return {"snr_db_int8": r["snr_db_vs_int8"], "identical": r["outputs_identical"],
                "agreement_int8": r["top1_agreement_vs_int8"],
                "agreement_int8_argmax": r.get("top1_agreement_vs_int8_argmax")}


def run_int8_model(name, n_cal=INT8_CALIB, n_eval=200):
    import tinycluster
    from tinycluster.explore import layouts
    from tinycluster.verify import tflm_arena_sizes

    path = SHARED / name
    src = path.read_bytes()
    t0 = time.time()
    base = tinycluster.compile(path, bits=8)  # 8 bit: raw int8, every layer's reference cost
    raw = layer_flash(base.report)
    classifier = any(n.op == "SOFTMAX" and base.graph.outputs[0] in n.outputs for n in base.graph.nodes)
    shape = tuple(base.report["input"]["shape"])
    x_cal, x_eval, inputs = int8_inputs(name, shape, n_cal, n_eval)
    ev = Int8Eval(src, x_eval, classifier)
    tmp = Path(tempfile.mkdtemp(prefix="tc_fid_"))
    calib = None
    if x_cal is not None:
        calib = tmp / "calib.npy"
        np.save(calib, x_cal)
    arena = tflm_arena_sizes(src)
    default_layout = tinycluster.compile(path).report["options"]["granularity"]
    rows = {}

    def go(key, use_calib=True, **kw):
        t = time.time()
        fe = {"calib": str(calib)} if (calib is not None and use_calib) else {}
        cm = tinycluster.compile(path, frontend=fe, **kw)
        tt = cm.report["totals"]
        r = {"options": dict(kw, calib=bool(fe)), "flash_bytes": tt["flash_bytes"], "sram_bytes": tt["sram_bytes"],
             "arena_bytes": tt["arena_bytes"], "codebook_sram_bytes": tt["codebook_sram_bytes"],
             "int8_weight_bytes": tt["int8_weight_bytes"], "bits_per_weight": tt["bits_per_weight"],
             "economy_bound": economy_bound(cm.report), "larger_than_int8": larger_than_int8(cm.report, raw),
             "method": _method(cm.report),
             "layouts_used": sorted({layer.get("granularity") or "raw" for layer in cm.report["layers"]
                                     if layer.get("weights")})}
        r.update(ev(cm.clustered_tflite))
        r["seconds"] = round(time.time() - t, 1)
        rows[key] = r
        print(f"  {name} {key:>22}: flash {r['flash_bytes']:>7} B, SRAM {r['sram_bytes']:>6} B, SNR vs int8 "
              f"{r['snr_db_int8'] if r['snr_db_int8'] is not None else 'identical'}, top-1 {r['agreement_int8']}, "
              f"{r['seconds']} s", flush=True)

    for b in BITS:
        go(f"default {b} bit", bits=b)
    for g in layouts():
        if g != default_layout:
            go(f"{g} 4 bit", bits=4, granularity=g)
    go("lossless", lossless=True)
    go("per-channel 4 bit, data-free", use_calib=False, bits=4, granularity="per-channel")
    if calib is not None:
        go("default 4 bit, data-free", use_calib=False, bits=4)
    return {"model": name, "classifier": classifier, "inputs": inputs, "calibration_samples": 0 if calib is None else n_cal,
            "evaluation_samples": int(ev.xs.shape[0]), "int8_top_ties": ev.ties, "default_layout": default_layout,
            "tflm_arena": arena,
            "source_bytes": len(src), "rows": rows, "seconds": round(time.time() - t0, 1)}


def int8_checks(res) -> list:
    r, name = res["rows"], res["model"]
    out = []
    pc4 = r["per-channel 4 bit, data-free"]
    d4 = r["default 4 bit"]
    snr = lambda x: np.inf if x["identical"] else x["snr_db_int8"]  # noqa: E731
    bound = 1.10 * d4["economy_bound"]
    out.append((f"{name}: compile --bits 4 (default layout) flash {d4['flash_bytes']} <= 1.10 x economy bound "
                f"{bound:.0f} B", d4["flash_bytes"] <= bound))
    out.append((f"{name}: default 4 bit SNR vs int8 {_f(snr(d4))} dB >= per-channel 4 bit data-free {_f(snr(pc4))} dB",
                snr(d4) >= snr(pc4)))
    lim = 0.9 * res["tflm_arena"]["total"]
    out.append((f"{name}: SRAM at defaults (4 bit) {d4['sram_bytes']} <= 0.9 x TFLM arena {res['tflm_arena']['total']} "
                f"= {lim:.0f} B", d4["sram_bytes"] <= lim))
    out.append((f"{name}: --lossless flash {r['lossless']['flash_bytes']} <= int8 baseline "
                f"{r['lossless']['int8_weight_bytes']} B", r["lossless"]["flash_bytes"] <= r["lossless"]["int8_weight_bytes"]))
    big = {k: v["larger_than_int8"] for k, v in r.items() if v["larger_than_int8"]}
    detail = "; ".join(f"{k}: {len(v)} layer{'s' if len(v) > 1 else ''}" for k, v in big.items())
    out.append((f"{name}: no layer costs more flash than as raw int8 (--bits 8), in any row"
                + (f" (over in {detail}; names in fidelity.json)" if big else ""), not big))
    if name == "pretrainedResnet_quant.tflite":
        for b, snr_min, agr_min in ((4, 14.0, 0.90), (6, 24.0, 0.97)):
            x = r[f"default {b} bit"]
            out.append((f"{name}: {b} bit with --calib: SNR vs int8 {_f(snr(x))} >= {snr_min} dB, top-1 "
                        f"{_f(x['agreement_int8'], True)}{_argmax_note(x)} >= {100 * agr_min:.0f}%",
                        snr(x) >= snr_min and x["agreement_int8"] >= agr_min))
    if name == "vww_96_int8.tflite":
        out.append((f"{name}: 4 bit SNR vs int8 {_f(snr(d4))} >= 30 dB", snr(d4) >= 30.0))
    return out


def _argmax_note(x) -> str:
    """`` (argmax 87.5%)`` where first-index argmax would count ties otherwise, else nothing."""
    a = x.get("agreement_int8_argmax")
    return "" if a is None or a == x.get("agreement_int8") else f" (argmax {_f(a, True)})"


def int8_md(res) -> list:
    r = res["rows"]
    ties = res.get("int8_top_ties")
    tie_text = "" if not ties else (
        f" On {ties} of the {res['evaluation_samples']} inputs two or more classes tie for the top of the int8 "
        "model's output (a quantized softmax, in steps of 1/256): top-1 agreement counts a class top-ranked by "
        "both models, so a tie agrees with either tied class; in brackets, first-index `argmax` equality.")
    lines = [f"### {res['model']}", "",
             f"Inputs: {res['inputs']}.{tie_text} Default layout: `{res['default_layout']}`. TFLite Micro's arena for the "
             f"source model: {res['tflm_arena']['total']:,} B (head {res['tflm_arena']['head']:,} + tail "
             f"{res['tflm_arena']['tail']:,}); .tflite {res['source_bytes']:,} B. {res['seconds']} s.", "",
             "| setting | --calib | flash B | int8 baseline B | ratio | flash / economy bound | SRAM B | of which "
             "codebooks | SRAM / TFLM arena | SNR vs int8 (dB) | top-1 vs int8 | layouts | method | layers > int8 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for key, x in r.items():
        snr = "identical" if x["identical"] else _f(x["snr_db_int8"])
        lines.append(f"| {key} | {'yes' if x['options'].get('calib') else 'no'} | {x['flash_bytes']:,} | "
                     f"{x['int8_weight_bytes']:,} | {x['flash_bytes'] / x['int8_weight_bytes']:.2f} | "
                     f"{x['flash_bytes'] / x['economy_bound']:.2f} | {x['sram_bytes']:,} | {x['codebook_sram_bytes']:,} | "
                     f"{x['sram_bytes'] / res['tflm_arena']['total']:.2f} | {snr} | {_f(x['agreement_int8'], True)}{_argmax_note(x)} | "
                     f"{', '.join(x['layouts_used'])} | {x['method'] or 'n/a'} | {len(x['larger_than_int8'])} |")
    lines.append("")
    return lines


# ------------------------------------------------------------------------------- TFLM's LUT compressor
def run_lut_model(name, n_cal=INT8_CALIB, n_eval=20):
    import tinycluster
    from tflm_lut import measure as lut_measure
    from tinycluster.evaluate import model_inputs

    path = SHARED / name
    t0 = time.time()
    x_cal, x_eval, inputs = int8_inputs(name, tuple(tinycluster.compile(path, bits=8).report["input"]["shape"]),
                                        n_cal, n_eval)
    fe = {}
    if x_cal is not None:
        calib = Path(tempfile.mkdtemp(prefix="tc_fid_")) / "calib.npy"
        np.save(calib, x_cal)
        fe = {"calib": str(calib)}
    cm = tinycluster.compile(path, bits=4, frontend=fe)
    xs = model_inputs(x_eval, TFLiteRunner(cm.clustered_tflite, "tflm"), "evaluation inputs")
    res = lut_measure(cm.clustered_tflite, xs)
    t = cm.report["totals"]
    res.update(model=name, inputs=inputs.replace(f"{n_eval} ", f"{xs.shape[0]} ", 1),
               ours={"flash_bytes": t["flash_bytes"], "sram_bytes": t["sram_bytes"],
                     "arena_bytes": t["arena_bytes"], "codebook_sram_bytes": t["codebook_sram_bytes"]},
               seconds=round(time.time() - t0, 1))
    for v in ("as_user", "fixed"):
        x = res[v]
        print(f"  {name} LUT {v}: {x.get('bytes')} B, runs {x.get('runs')}, identical {x.get('outputs_identical')}"
              f"{'; ' + x['tflm_error'] if x.get('tflm_error') else ''}", flush=True)
    return res


def lut_md(results) -> list:
    lines = ["| model | ours: flash B | ours: SRAM B | clustered .tflite B | LUT as a user runs it: B | "
             "runs under TFLM | outputs = clustered | LUT with work-arounds: B | runs | outputs = clustered | "
             "TFLM arena with DECODE B (without) |",
             "|---|---:|---:|---:|---:|---|---|---:|---|---|---:|"]

    def runs(x):
        if "error" in x:
            return "compress failed"
        return "yes" if x["runs"] else "no: " + x["tflm_error"].split(";")[0]

    def ident(x):
        if not x.get("runs"):
            return "n/a"
        return "yes" if x["outputs_identical"] else f"no (max diff {x['max_abs_diff']} LSB)"

    for res in results:
        a, f = res["as_user"], res["fixed"]
        arena = f.get("arena", {}).get("total")
        lines.append(f"| {res['model']} | {res['ours']['flash_bytes']:,} | {res['ours']['sram_bytes']:,} | "
                     f"{res['clustered']['bytes']:,} | {a.get('bytes', 0):,} | {runs(a)} | {ident(a)} | "
                     f"{f.get('bytes', 0):,} | {runs(f)} | {ident(f)} | "
                     f"{arena if arena is None else f'{arena:,}'} ({res['clustered_arena']['total']:,}) |")
    lines.append("")
    for res in results:
        f = res["fixed"]
        comp = [t for t in f["tensors"] if "skipped" not in t]
        lines.append(f"- {res['model']}: with work-arounds {len(comp)} of {len(f['tensors'])} weight tensors compressed "
                     f"({', '.join(sorted({t['mode'] + ' ' + str(t['bits']) + ' bit' for t in comp})) or 'none'}); "
                     f"{f.get('buffer_bytes', 0):,} B in buffers, {f.get('other_bytes', 0):,} B of graph, tensor "
                     f"tables, names ({f.get('tensor_name_bytes', 0):,} B) and quantization vectors "
                     f"({f.get('quantization_bytes', 0):,} B); the clustered input holds "
                     f"{res['clustered']['buffer_bytes']:,} B in buffers and {res['clustered']['other_bytes']:,} B else."
                     + (" Operator codes only in `deprecated_builtin_code`: the compressor merges them."
                        if res["operator_codes_collapse"] else ""))
    lines.append("")
    return lines


# ------------------------------------------------------------------------------- report
def _f(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.2f}"


KERAS_INTRO = (
    "Clustered models: Keras front end, activation-aware 1-D k-means per output channel on the float "
    "kernels (best of linear/density/k-means++ starts), then the output-aware refit onto the int8 grid "
    "(`tinycluster/compress/output_aware.py`: centroids and assignments that minimise each layer's output "
    "error on the calibration inputs, chosen as the integers the converter keeps), post-training, no labels; "
    "full-integer int8 with per-channel weights; run under "
    "TFLite Micro. Agreement and SNR are against the float Keras model (and against the unclustered int8 "
    "model) on evaluation inputs never seen in calibration; flash is the core's `totals.flash_bytes`. "
    "`sens@b`: per-layer k chosen by the sensitivity search under the flash of the uniform b-bit model.")


def keras_md(res) -> list:
    rows = res["rows"]
    lines = [f"### {res['model']}", "",
             f"{res['calibration_samples']} calibration / {res['evaluation_samples']} evaluation inputs"
             + (f"; {res['rows']['int8'].get('clear_inputs')} of them clear (float top-1 probability at "
                f"least {MARGIN} above the runner-up)." if res["classifier"] else ".")
             + (f" {res['seconds']} s." if "seconds" in res else ""), "",
             "| setting | bits/weight | flash B | top-1 agreement vs float | same, clear inputs | "
             "top-1 agreement vs int8 | output SNR vs float (dB) | output SNR vs int8 (dB) |",
             "|---|---|---|---|---|---|---|---|"]
    for key in ["int8", "8", "6", "5", "4", "3", "2", "uniform4", "sens@4", "sens@3"]:
        r = rows[key]
        label = {"int8": "int8 (unclustered)", "uniform4": "uniform INT4 (no clustering)"}.get(
            key, key if key.startswith("sens") else f"k-means {key} bit")
        lines.append(f"| {label} | {r['mean_bits']:.2f} | {r['flash_bytes']} | {_f(r['agreement'], True)} | "
                     f"{_f(r.get('agreement_clear'), True)} | {_f(r.get('agreement_int8'), True)} | "
                     f"{_f(r['snr_db'])} | {_f(r.get('snr_db_int8'))} |")
    lines.append("")
    for b in (4, 3):
        s, u = rows[f"sens@{b}"], rows[str(b)]
        lines.append(f"- sens@{b} vs uniform {b}-bit at {u['flash_bytes']} B: SNR {_f(s['snr_db'])} vs "
                     f"{_f(u['snr_db'])} dB (flash {s['flash_bytes']} B); widths {s.get('per_layer_bits')}")
    lines.append(f"- k-means vs uniform INT4 at 4 bits: SNR {_f(rows['4']['snr_db'])} vs "
                 f"{_f(rows['uniform4']['snr_db'])} dB")
    nz = res["weight_noise"]
    lines.append("- fragility of the float model itself (every kernel + Gaussian noise of r x its std, no "
                 "quantization): " + "; ".join(
                     f"r = {100 * float(r):g} %: agreement {_f(v['agreement'], True)}, SNR {_f(v['snr_db'])} dB"
                     for r, v in nz.items()))
    lines.append("")
    return lines


def keras_checks(res) -> list:
    r, name = res["rows"], res["model"]
    out = [(f"{name}: k-means 4 bit beats uniform INT4 on SNR", r["4"]["snr_db"] > r["uniform4"]["snr_db"])]
    for b in (3, 4):
        out.append((f"{name}: sensitivity beats uniform {b} bit at the same flash",
                    r[f"sens@{b}"]["snr_db"] > r[str(b)]["snr_db"]
                    and r[f"sens@{b}"]["flash_bytes"] <= r[str(b)]["flash_bytes"]))
    # issue 9, item 6: 6 bit within 1 point of int8's own agreement with float, SNR vs float at least int8's
    if res["classifier"]:
        out.append((f"{name}: 6 bit top-1 agreement vs float {_f(r['6']['agreement'], True)} >= int8's "
                    f"{_f(r['int8']['agreement'], True)} - 1 point",
                    r["6"]["agreement"] >= r["int8"]["agreement"] - 0.01 - 1e-9))
    out.append((f"{name}: 6 bit output SNR vs float {_f(r['6']['snr_db'])} >= int8's {_f(r['int8']['snr_db'])} dB",
                r["6"]["snr_db"] >= r["int8"]["snr_db"]))
    return out


# ------------------------------------------------------------------------------- parts, merge, docs
PARTS = {"keras": (MODELS, run_model), "agreement": (AGREEMENT_MODELS, run_agreement_model),
         "int8": (INT8_MODELS, run_int8_model), "lut": (INT8_MODELS, run_lut_model)}


def load_results(path: Path) -> dict:
    """The stored results: {"keras": {model: res}, "int8": {...}, "lut": {...}, "runs": [...]}. A file
    written before the benchmark had parts (a list of Keras results) is read as the keras part."""
    if not path.exists():
        return {**{part: {} for part in PARTS}, "runs": []}
    data = json.loads(path.read_text())
    if isinstance(data, list):
        data = {"keras": {r["model"]: r for r in data}, "runs": []}
    for part in PARTS:
        data.setdefault(part, {})
    data.setdefault("runs", [])
    return data


def merge(data: dict, part: str, results: list) -> dict:
    """Replace (or add) the entries of ``part`` re-measured in ``results``; keep the order of the
    part's model list."""
    cur = dict(data.get(part, {}))
    for r in results:
        cur[r["model"]] = r
    order = PARTS[part][0]
    data[part] = {m: cur[m] for m in sorted(cur, key=lambda m: order.index(m) if m in order else len(order))}
    return data


def render(data: dict) -> tuple:
    """(fidelity.md text, checks [(text, ok)])."""
    runs = data.get("runs", [])
    lines = ["# Fidelity of clustered models", "",
             "Generated by `benchmarks/fidelity.py` (its docstring describes the inputs), in parts; each table says "
             "how long it took. Runs recorded in `docs/fidelity.json`:", ""]
    for r in runs[-10:]:
        took = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else r.get("note", "time not recorded")
        load = f", load {r['load_1min']:.1f} on 2 cores" if r.get("load_1min") is not None else ""
        lines.append(f"- `{r['command']}`: {took} ({r.get('when') or 'date not recorded'}, commit "
                     f"{r.get('commit', '?')}{load})")
    lines.append("")
    checks = []
    if data["keras"]:
        lines += ["## Keras path", "", KERAS_INTRO, ""]
        for res in data["keras"].values():
            lines += keras_md(res)
            checks += keras_checks(res)
    if data["agreement"]:
        lines += ["### Top-1 agreement at 6 bits on more evaluation crops", "",
                  "The 200 evaluation crops above hold many near-ties for ResNet-8: the 6-bit and the int8 model "
                  "each get a different handful of them wrong, and one crop is half a point. The same comparison "
                  "on 1,000 evaluation crops (`--part agreement`; same generator and seed, so the first 200 are the "
                  "crops above; same 100 calibration crops), with a paired bootstrap interval of the difference:",
                  ""]
        lines += agreement_md(list(data["agreement"].values()))
        for res in data["agreement"].values():
            checks += agreement_checks(res)
    if data["int8"]:
        lines += ["## int8 .tflite path", "",
                  "`tinycluster.compile` on the shared int8 models as a user calls it (`default b bit`: `--bits b` and "
                  "the default layout; `--calib` where the benchmark has inputs); the clustered model and the "
                  "source model run under TFLite Micro on the same inputs. Flash, SRAM (arena + codebooks in SRAM) "
                  "and the int8 baseline (int8 weights + int32 biases + per-channel requantization) are the report's "
                  "totals. Economy bound: 4-bit indices + 4 B per bias + 5 B per output channel. TFLM arena: the "
                  "source model's whole arena (head + tail).", "",
                  "The int8 baseline counts weights, int32 biases and requantization constants only; the generated C "
                  "also holds each op's params struct (20-44 B per op), and stores biases as narrow as they fit "
                  "(16, 24 or 32 bits), so `--lossless` stays at or below the baseline on every shared model "
                  "(docs/architecture.md, 'Flash accounting').", "",
                  "With `--calib` the codebooks are chosen by each layer's output error on the calibration inputs "
                  "(`method` column), the chosen fits are then fitted again in graph order to the original layer's "
                  "output on the clustered graph's own inputs (sequential refit, upstream error compensated), and "
                  "the biases corrected; `auto` may give a layer the normalized layout one bit narrower or wider "
                  "than `--bits` (mixed widths) within the same flash allowance (1.10 x the economy bound at that "
                  "width). kws ships no data: its evaluation inputs are seeded random int8 (seed 0) and its "
                  "`--calib` inputs 64 other seeded random int8 inputs (seed 1), the same distribution; the "
                  "`default 4 bit, data-free` row is the same compile without them.", "",
                  "ResNet-8's SNR and top-1 vs int8 on these crops are to be read against its perturbation floor "
                  "([perturbation-floor.md](perturbation-floor.md)): moving 1 % of the int8 weights of one early "
                  "layer by a single step, nothing else changed, already gives 16-21 dB (and 95.5-97.5 % top-1 vs "
                  "int8); any width below 8 bits changes far more than that in every layer. One clustered layer by "
                  "itself (same page, `--one-layer-bits`): at `--bits 6` `auto` keeps eight of ten layers exact and "
                  "the first of the two it clusters, fitted on exact inputs, alone stays below 24 dB; at `--bits 7` "
                  "(one layer clustered) the model is still below 24 dB.", ""]
        lines += distinct_values_md("pretrainedResnet_quant.tflite", 6)
        for res in data["int8"].values():
            lines += int8_md(res)
            checks += int8_checks(res)
    if data["lut"]:
        lines += ["## TFLite Micro's LUT compressor side by side", "",
                  "The peer's own tool (`tflite_micro` package, `tensorflow/lite/micro/compression/compress.py`, "
                  "driven by `benchmarks/tflm_lut.py`) on the clustered model of `compile --bits 4` (default "
                  "layout, `--calib` as above): the very weights our C holds, so its LUT form is lossless. "
                  "*As a user runs it*: one LUT per weight tensor, per channel along the op's channel axis, at "
                  "the smallest index width; *with work-arounds*: operator codes copied into `builtin_code` first, "
                  "a per-tensor table where the tensor has one quantization scale, tensors whose LUT form is not "
                  "smaller than int8 left alone. Our flash counts all constant data of the generated C; the "
                  "TFLM figure is the .tflite alone (the interpreter's code comes on top). TFLM decodes each "
                  "compressed tensor into its arena before use, hence the larger arena.", ""]
        lines += lut_md(list(data["lut"].values()))
        lines += ["Why the compressed models fail or differ (reproduced on each model, see "
                  "`benchmarks/tflm_lut.py`):", "",
                  "1. **SOFTMAX prepare error on kws.** kws_ref_model.tflite (like ad01_int8.tflite) was written by "
                  "an older converter that stores each operator only in `deprecated_builtin_code`; `builtin_code` "
                  "reads 0. TFLite takes the larger of the two, but the compressor's model editor keys its "
                  "operator-code table on `builtin_code` (and the custom code) alone, so all six builtin operator "
                  "codes of kws merge into one entry, the last one read, SOFTMAX. The first CONV_2D (node 1, after "
                  "the first DECODE) is then prepared as a SOFTMAX with 3 inputs: `softmax_common.cc NumInputs(node) "
                  "!= 1 (3 != 1)`, `Node SOFTMAX (number 1) failed to prepare`. ad01 has a single operator code "
                  "(FULLY_CONNECTED), so the merge is harmless there. Work-around: set `builtin_code` before "
                  "compressing.",
                  "2. **Wrong outputs from per-channel tables on a per-tensor-quantized tensor.** TFLite Micro's "
                  "DECODE kernel (`decode_state_lut.cc`) takes the number of value tables from the tensor's "
                  "quantization (its number of scales), not from the axis in the DECODE metadata; the compressor "
                  "writes one table per channel whatever the quantization. On a tensor with one scale (the "
                  "FULLY_CONNECTED weights of kws, ResNet-8, vww and all ten of ad01) the first channel's table "
                  "decodes the whole tensor. Work-around: a per-tensor table there (which needs the whole tensor's "
                  "distinct values: at most 7 bits, so it often saves nothing).",
                  "3. **Larger files.** Each compressed tensor adds a DECODE operator, an ancillary tensor and a "
                  "decoded copy of the tensor that repeats its name and its quantization vectors (per-channel "
                  "scales and 64-bit zero points), and the value tables are padded to the longest channel's "
                  "table; on kws that outweighs the index savings (the issue's 53,936 B -> 66,000 B is the "
                  "*as a user runs it* column).", ""]
    lines += ["## Checks", ""] + [f"- {'PASS' if ok else 'FAIL'}: {t}" for t, ok in checks] + [""]
    if data["keras"]:
        lines += ["![fidelity](fidelity.png)", ""]
    return "\n".join(lines), checks


def distinct_values_md(name: str, bits: int) -> list:
    """Why a b-bit layout cannot be exact on ``name``: distinct int8 values per output channel of
    each weighted layer against 2^b entries, and the fewest exact shared codebooks of 2^b entries
    (``compress.cluster.lossless_shared``). Read from the model file (a second)."""
    path = SHARED / name
    if not path.exists():
        return []
    from tinycluster.compress.cluster import _distinct_per_channel, lossless_shared
    from tinycluster.importers.tflite import load_tflite, resolve_graph
    from tinycluster.ops import get_handler

    g = load_tflite(path)
    resolve_graph(g)
    rows = []
    for node, t in g.weight_tensors():
        ax = get_handler(node.op).weight_channel_axis
        if ax is None or t.data is None:
            continue
        ax %= t.data.ndim
        d = _distinct_per_channel(t.data, ax)
        ex = lossless_shared(t.data, ax, bits)
        rows.append(f"| {node.name} | {t.size // t.data.shape[ax]} | {int(np.median(d))} / {int(d.max())} | "
                    f"{int(np.count_nonzero(d <= 1 << bits))} of {d.size} | "
                    f"{'none' if ex is None else ex[0].shape[0]} |")
    return [f"Why a {bits}-bit layout of {name} cannot be exact: distinct int8 values per output channel against "
            f"the {1 << bits} entries of a {bits}-bit codebook (an exact layout needs every channel within them).", "",
            f"| layer | weights per channel | distinct values per channel (median / max) | channels with <= "
            f"{1 << bits} | exact shared {bits}-bit codebooks |", "|---|---:|---:|---:|---:|"] + rows + [""]


def write_docs(data: dict, docs: Path) -> list:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "fidelity.json").write_text(json.dumps(data, indent=1) + "\n")
    text, checks = render(data)
    (docs / "fidelity.md").write_text(text)
    if data["keras"]:
        _plot(list(data["keras"].values()), docs / "fidelity.png")
    return checks

def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for res, color in zip(results, ["#c33", "#36c", "#393", "#a6c"]):
        r = res["rows"]
        xb = [r[str(b)]["mean_bits"] for b in BITS]
        axes[0].plot(xb, [r[str(b)]["snr_db"] for b in BITS], "o-", color=color, label=res["model"] + " k-means")
        axes[0].plot([r["uniform4"]["mean_bits"]], [r["uniform4"]["snr_db"]], "x", color=color, ms=9,
                     label=res["model"] + " uniform INT4")
        for b in (3, 4):
            s = r[f"sens@{b}"]
            axes[0].plot([s["mean_bits"]], [s["snr_db"]], "*", color=color, ms=11,
                         label=res["model"] + " sensitivity" if b == 3 else None)
        if res["classifier"]:
            axes[1].plot(xb, [100 * r[str(b)]["agreement"] for b in BITS], "o-", color=color, label=res["model"])
            for b in (3, 4):
                s = r[f"sens@{b}"]
                axes[1].plot([s["mean_bits"]], [100 * s["agreement"]], "*", color=color, ms=11)
    axes[0].set_xlabel("index bits per weight")
    axes[0].set_ylabel("output SNR vs float (dB)")
    axes[0].legend(fontsize=6)
    axes[0].grid(alpha=0.3)
    axes[1].set_xlabel("index bits per weight")
    axes[1].set_ylabel("top-1 agreement vs float (%)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description="fidelity of clustered models; runs in parts (see the docstring)")
    ap.add_argument("--part", nargs="*", choices=list(PARTS), default=list(PARTS),
                    help="which paths to (re-)measure (default: all)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="only these models (file names in ../shared/models) within the chosen parts")
    ap.add_argument("--samples", type=int, default=200,
                    help="evaluation inputs per model (the agreement part uses at least 1000)")
    ap.add_argument("--calib", type=int, default=None,
                    help=f"calibration inputs per model (default: 100 on the Keras path, {INT8_CALIB} on the int8 path)")
    ap.add_argument("--docs", default=str(REPO / "docs"))
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    data = load_results(docs / "fidelity.json")
    for part in args.part:
        names, fn = PARTS[part]
        chosen = [m for m in names if args.models is None or m in args.models]
        if not chosen:
            continue
        t0 = time.time()
        results = []
        for name in chosen:
            print(f"[{part}] {name}:", flush=True)
            if part == "keras":
                results.append(fn(name, args.calib or 100, args.samples))
            elif part == "agreement":
                results.append(fn(name, args.calib or 100, max(args.samples, 1000)))
            elif part == "int8":
                results.append(fn(name, args.calib or INT8_CALIB, args.samples))
            else:
                results.append(fn(name, args.calib or INT8_CALIB))
        data = merge(data, part, results)
        cmd = f"python benchmarks/fidelity.py --part {part}" + (
            f" --models {' '.join(chosen)}" if chosen != names else "")
        data["runs"].append({"command": cmd, "seconds": round(time.time() - t0, 1), "commit": _commit(),
                             "when": time.strftime("%Y-%m-%d %H:%M"), "load_1min": round(os.getloadavg()[0], 1)})
        write_docs(data, docs)  # after every part: a later failure keeps what is done
    checks = write_docs(data, docs)
    for t, ok in checks:
        print(("PASS " if ok else "FAIL ") + t)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

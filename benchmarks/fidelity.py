"""Fidelity of clustered models against their float originals, on realistic inputs.

    .venv/bin/python benchmarks/fidelity.py [--models ad01.h5 ...] [--samples 200] [--docs docs]

For each Keras model in ../shared/models/*.h5 (ad01, pretrainedResnet, vww_96) the Keras
front end compresses it (k-means per output channel, post-training, no labels) at 8, 6, 5, 4, 3
and 2 bits, as the uniform INT4 baseline (``method="uniform"``), and with per-layer widths from
the sensitivity search under the flash of the uniform 3-bit and 4-bit models. Each compressed
full-integer model runs under TFLite Micro (what the generated C computes, bit for bit); its
dequantized outputs are compared with the float Keras model's:

- top-1 agreement: fraction of inputs whose arg-max class equals the float model's
  (classifiers only; ad01 is an autoencoder, its outputs are a reconstruction);
- output SNR: ``10 log10(sum y_float^2 / sum (y - y_float)^2)`` over all outputs.

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

Writes docs/fidelity.md, docs/fidelity.json and docs/fidelity.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinycluster.evaluate import TFLiteRunner, agreement, snr_db  # noqa: E402
from tinycluster.frontends.keras import load_keras  # noqa: E402
from tinycluster.frontends.pipeline import compress_to_int8_tflite  # noqa: E402

SHARED = (REPO / ".." / "shared" / "models").resolve()
MODELS = ["ad01.h5", "pretrainedResnet.h5", "vww_96.h5"]
BITS = [8, 6, 5, 4, 3, 2]
INPUT_SCALE = {"pretrainedResnet.h5": 255.0, "vww_96.h5": 1.0}


# ------------------------------------------------------------------------------- inputs
def image_crops(n, size, part, seed, scale):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    imgs = load_sample_images().images
    out = []
    for i in range(n):
        im = imgs[i % len(imgs)]
        h, w = im.shape[:2]
        x0, x1 = (0, int(0.4 * w)) if part == "calib" else (int(0.4 * w), w)
        side = int(rng.integers(64, min(400, h, x1 - x0) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        crop = Image.fromarray(im[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        a = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
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


# ------------------------------------------------------------------------------- report
def _f(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.2f}"


def write_docs(results, docs: Path, command: str):
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "fidelity.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Fidelity of clustered models", "",
             "Generated by `" + command + "` (see the docstring of `benchmarks/fidelity.py` for the inputs).",
             "Clustered models: Keras front end, activation-aware 1-D k-means per output channel on the float "
             "kernels (best of linear/density/k-means++ starts), then the output-aware refit onto the int8 grid "
             "(`tinycluster/compress/output_aware.py`: centroids and assignments that minimise each layer's output "
             "error on the calibration inputs, chosen as the integers the converter keeps), post-training, no labels; "
             "full-integer int8 with per-channel weights; run under "
             "TFLite Micro. Agreement and SNR are against the float Keras model (and against the unclustered int8 "
             "model) on evaluation inputs never seen in calibration; flash is the core's `totals.flash_bytes`. "
             "`sens@b`: per-layer k chosen by the sensitivity search under the flash of the uniform b-bit model. "
             "Re-run: `" + command + "` (about 30 minutes on 2 cores).", ""]
    for res in results:
        rows = res["rows"]
        lines += [f"## {res['model']}", "",
                  f"{res['calibration_samples']} calibration / {res['evaluation_samples']} evaluation inputs"
                  + (f"; {res['rows']['int8'].get('clear_inputs')} of them clear (float top-1 probability at "
                     f"least {MARGIN} above the runner-up)." if res["classifier"] else "."), "",
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
    checks = []
    for res in results:
        r = res["rows"]
        checks.append((f"{res['model']}: k-means 4 bit beats uniform INT4 on SNR",
                       r["4"]["snr_db"] > r["uniform4"]["snr_db"]))
        for b in (3, 4):
            checks.append((f"{res['model']}: sensitivity beats uniform {b} bit at the same flash",
                           r[f"sens@{b}"]["snr_db"] > r[str(b)]["snr_db"]
                           and r[f"sens@{b}"]["flash_bytes"] <= r[str(b)]["flash_bytes"]))
        if res["classifier"]:
            checks.append((f"{res['model']}: 6 bit top-1 agreement >= 99%", r["6"]["agreement"] >= 0.99))
    lines += ["## Checks", ""] + [f"- {'PASS' if ok else 'FAIL'}: {t}" for t, ok in checks] + [""]
    lines += ["![fidelity](fidelity.png)", ""]
    (docs / "fidelity.md").write_text("\n".join(lines))
    _plot(results, docs / "fidelity.png")
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


def main(argv=None):
    ap = argparse.ArgumentParser(description="fidelity of clustered models vs float")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--samples", type=int, default=200, help="evaluation inputs per model")
    ap.add_argument("--calib", type=int, default=100, help="calibration inputs per model")
    ap.add_argument("--docs", default=str(REPO / "docs"))
    args = ap.parse_args(argv)
    results = []
    for name in args.models:
        print(f"{name}:", flush=True)
        results.append(run_model(name, args.calib, args.samples))
    cmd = "python benchmarks/fidelity.py" + ("" if args.models == MODELS else " --models " + " ".join(args.models))
    checks = write_docs(results, Path(args.docs), cmd)
    for t, ok in checks:
        print(("PASS " if ok else "FAIL ") + t)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

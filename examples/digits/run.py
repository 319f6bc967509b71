"""Digits: train a small CNN on scikit-learn's bundled 8x8 digits, compile it at 8, 4 and 2 bits
(+ centroid healing) and under a flash budget, and print size and accuracy.

    .venv/bin/python examples/digits/run.py [--out DIR] [--quiet]

No download: the data set ships with scikit-learn. Accuracy of the compiled models is measured
with the TFLite Micro interpreter on ``<name>_clustered.tflite``, which is exactly what the
generated C computes (``tinycluster verify`` checks that byte for byte). ``--out DIR`` keeps
the compiled output folders and writes ``DIR/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import tinycluster  # noqa: E402
from tinycluster.evaluate import TFLiteRunner, accuracy  # noqa: E402
from tinycluster.frontends.keras import keras, tf  # noqa: E402
from tinycluster.frontends.pipeline import save_artifacts  # noqa: E402


def load_data(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def build_model(seed=0):
    k = keras()
    k.utils.set_random_seed(seed)
    L = k.layers
    inp = L.Input((8, 8, 1), name="image")
    h = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="relu1")(h)
    h = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw2")(h)
    h = L.Conv2D(32, 1, activation="relu", name="pw2")(h)
    h = L.MaxPooling2D(2, name="pool2")(h)                    # 4x4x32
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(h)
    h = L.AveragePooling2D(2, name="pool3")(h)                # 2x2x32
    h = L.Flatten(name="flat")(h)
    h = L.Dense(32, activation="relu", name="fc4")(h)
    out = L.Dense(10, name="logits")(h)
    return k.Model(inp, out, name="digits")


def train(model, x, y, epochs, seed=0):
    k = keras()
    k.utils.set_random_seed(seed)  # Python, numpy and TF seeds
    tf().config.experimental.enable_op_determinism()  # same weights on every run
    model.compile(optimizer=k.optimizers.Adam(3e-3),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="keep outputs here and write results.json")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--heal-epochs", type=int, default=4)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tc_digits_"))
    work.mkdir(parents=True, exist_ok=True)
    x_tr, x_te, y_tr, y_te = load_data()
    model = train(build_model(), x_tr, y_tr, args.epochs)
    mpath = work / "digits.h5"
    model.save(mpath)
    np.save(work / "calib.npy", x_tr[:200])
    np.savez(work / "train.npz", x=x_tr, y=y_tr)
    np.savez(work / "test.npz", x=x_te, y=y_te)
    float_acc = float(np.mean(np.argmax(model.predict(x_te, verbose=0), 1) == y_te))

    calib = str(work / "calib.npy")
    runs = {
        "int8": dict(bits=8),
        "bits4": dict(bits=4),
        "bits2_heal": dict(bits=2, frontend=dict(heal=str(work / "train.npz"), heal_epochs=args.heal_epochs)),
        "budget": None,  # filled in below: between the 2- and 4-bit sizes
    }
    results = {"float_acc": float_acc}
    rows = []
    int8_ref = None
    for key in list(runs):
        opts = runs[key]
        if opts is None:
            budget = int(0.5 * (results["bits4_flash_bytes"] + results["bits2_heal_flash_bytes"]))
            opts = dict(frontend=dict(flash_budget=budget))
            results["budget_bytes"] = budget
        fe = dict(calib=calib, **opts.pop("frontend", {}))
        m = tinycluster.compile(str(mpath), granularity="per-channel", frontend=fe, quiet=args.quiet,
                                name="digits", **opts)
        out_dir = work / key
        m.write(out_dir)
        save_artifacts(out_dir, m.report["frontend"])
        if int8_ref is None:
            int8_ref = TFLiteRunner((out_dir / "int8.tflite").read_bytes()).run(x_te)
            results["int8_acc"] = accuracy(int8_ref, y_te)
        y_c = TFLiteRunner(m.clustered_tflite).run(x_te)
        acc = accuracy(y_c, y_te)
        flash = int(m.report["totals"]["flash_bytes"])
        results[f"{key}_acc"] = acc
        results[f"{key}_flash_bytes"] = flash
        fe_info = m.report["frontend"]
        results[f"{key}_mean_bits"] = fe_info["mean_bits"]
        if key == "bits2_heal" and "heal" in fe_info:
            results["bits2_heal_loss"] = [fe_info["heal"]["loss_before"], fe_info["heal"]["loss_after"]]
        if key == "budget":
            results["budget_layer_bits"] = fe_info["per_layer_bits"]
        rows.append((key, flash, fe_info["mean_bits"], acc))
    # 2-bit without healing, for comparison (not required, shows what healing buys)
    m = tinycluster.compile(str(mpath), bits=2, granularity="per-channel", frontend=dict(calib=calib),
                            quiet=args.quiet, name="digits")
    results["bits2_acc"] = accuracy(TFLiteRunner(m.clustered_tflite).run(x_te), y_te)
    results["bits2_flash_bytes"] = int(m.report["totals"]["flash_bytes"])
    rows.insert(2, ("bits2", results["bits2_flash_bytes"], 2.0, results["bits2_acc"]))
    results["int8_acc"] = results["int8_acc"]
    results["test_samples"] = int(x_te.shape[0])
    results["seconds"] = round(time.time() - t0, 1)

    print(f"\ndigits CNN, {x_te.shape[0]} test images (accuracy under TFLite Micro, flash from report.json)")
    print(f"{'model':<12}{'flash B':>9}{'bits/w':>8}{'accuracy':>10}{'vs int8':>9}")
    print(f"{'float':<12}{'':>9}{'32':>8}{100 * float_acc:>9.2f}%")
    for key, flash, mb, acc in rows:
        print(f"{key:<12}{flash:>9}{mb:>8.2f}{100 * acc:>9.2f}%{100 * (acc - results['int8_acc']):>+8.2f}")
    print(f"({results['seconds']} s)")
    if args.out:
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {work / 'results.json'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()

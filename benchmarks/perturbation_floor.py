"""How much output SNR vs int8 survives the smallest possible weight change: a fraction of one layer's
int8 weights moved by one step (+-1, seeded), nothing else changed. Measured on the fidelity
benchmark's evaluation inputs (``benchmarks/fidelity.py``: the same crops / frames / random inputs),
with the project's bit-exact numpy op references (what TFLite Micro and the generated C compute).

    .venv/bin/python benchmarks/perturbation_floor.py [--models NAME ...] [--fractions 0.01 0.1] [--samples 200]

A model whose output moves a lot under such a change (far below its own int8 rounding noise) cannot
be clustered to a high SNR vs int8 on those inputs at any width below 8 bits: this is the floor the
``int8`` part's figures should be read against. Prints one line per model, layer and fraction.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import fidelity  # noqa: E402
from tinycluster.evaluate import agreement  # noqa: E402
from tinycluster.executor import run_graph  # noqa: E402
from tinycluster.frontends.calib import load_int8_calibration  # noqa: E402
from tinycluster.importers.tflite import load_tflite, resolve_graph  # noqa: E402


def _outputs(g, xs):
    q = g.tensors[g.outputs[0]].quant
    zp, sc = float(q.zero_point[0]), float(q.scale[0])
    return np.stack([(run_graph(g, x).astype(np.float64).reshape(-1) - zp) * sc for x in xs])


def floor(name, fractions, n_eval, seed=0):
    path = fidelity.SHARED / name

    def load():
        g = load_tflite(path)
        resolve_graph(g)
        return g

    g0 = load()
    shape = tuple(g0.tensors[g0.inputs[0]].shape)
    _, x_eval, _ = fidelity.int8_inputs(name, shape, 1, n_eval)
    xs = x_eval if x_eval.dtype == np.int8 else load_int8_calibration(x_eval, g0)
    y0 = _outputs(g0, xs)
    classifier = g0.nodes[-1].op == "SOFTMAX"
    rows = []
    for node, t in g0.weight_tensors():
        for frac in fractions:
            g = load()
            w = g.tensors[t.id]
            rng = np.random.default_rng(seed)
            moved = rng.random(w.data.shape) < frac
            step = rng.choice([-1, 1], w.data.shape)
            w.data = np.clip(w.data.astype(np.int64) + moved * step, -127, 127).astype(np.int8)
            y = _outputs(g, xs)
            err = float(np.sum((y - y0) ** 2))
            snr = float("inf") if err == 0 else 10 * np.log10(float(np.sum(y0 ** 2)) / err)
            agr = agreement(y, y0) if classifier else None
            rows.append((node.name, frac, snr, agr))
            print(f"{name} {node.name:24s} {100 * frac:5.1f} % of weights +-1: SNR vs int8 {snr:6.2f} dB"
                  + (f", top-1 vs int8 {100 * agr:.1f} %" if agr is not None else ""), flush=True)
    return rows


def one_layer_clustered(name, bits, n_eval, n_cal=fidelity.INT8_CALIB):
    """Each weighted layer alone taken from the ``--calib`` compile at ``bits`` (default layout, output-aware
    codebooks, its weights, scales and corrected bias), every other layer left exact int8: how far one
    clustered layer by itself moves the output."""
    import copy

    from tinycluster.compress.cluster import cluster_graph

    path = fidelity.SHARED / name

    def load():
        g = load_tflite(path)
        resolve_graph(g)
        return g

    g0 = load()
    shape = tuple(g0.tensors[g0.inputs[0]].shape)
    x_cal, x_eval, _ = fidelity.int8_inputs(name, shape, n_cal, n_eval)
    xs = x_eval if x_eval.dtype == np.int8 else load_int8_calibration(x_eval, g0)
    xc = x_cal if x_cal.dtype == np.int8 else load_int8_calibration(x_cal, g0)
    y0 = _outputs(g0, xs)
    classifier = g0.nodes[-1].op == "SOFTMAX"
    gc = load()
    cluster_graph(gc, bits=bits, granularity="auto", calib=xc)

    def score(g):
        y = _outputs(g, xs)
        err = float(np.sum((y - y0) ** 2))
        snr = float("inf") if err == 0 else 10 * np.log10(float(np.sum(y0 ** 2)) / err)
        return snr, (agreement(y, y0) if classifier else None)

    rows = []
    for (node, t), (_, tc) in zip(g0.weight_tensors(), gc.weight_tensors()):
        g = load()
        ids = [t.id] + [i for i in node.inputs[2:3] if i is not None and i >= 0]
        for i in ids:
            g.tensors[i] = copy.deepcopy(gc.tensors[i])
        snr, agr = score(g)
        cl = tc.clustering
        what = "raw int8" if cl is None else f"{cl.granularity} {cl.bits} bit"
        rows.append((node.name, what, snr, agr))
        print(f"{name} {node.name:24s} alone at {what:22s}: SNR vs int8 {snr:6.2f} dB"
              + (f", top-1 vs int8 {100 * agr:.1f} %" if agr is not None else ""), flush=True)
    snr, agr = score(gc)
    print(f"{name} every layer as compiled          : SNR vs int8 {snr:6.2f} dB"
          + (f", top-1 vs int8 {100 * agr:.1f} %" if agr is not None else ""), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=["pretrainedResnet_quant.tflite"])
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.01, 0.1])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--one-layer-bits", type=int, default=None,
                    help="instead: each layer alone as the --calib compile at this width clusters it")
    a = ap.parse_args()
    for m in a.models:
        if a.one_layer_bits:
            one_layer_clustered(m, a.one_layer_bits, a.samples)
        else:
            floor(m, a.fractions, a.samples)


if __name__ == "__main__":
    main()

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


class _Bench:
    """One shared model on the fidelity benchmark's inputs: fresh graphs, and scores against the
    unmodified int8 model (output SNR; top-1 agreement for classifiers)."""

    def __init__(self, name, n_eval, n_cal=1):
        self.name, self.path = name, fidelity.SHARED / name
        g0 = self.load()
        shape = tuple(g0.tensors[g0.inputs[0]].shape)
        x_cal, x_eval, _ = fidelity.int8_inputs(name, shape, n_cal, n_eval)
        self.xs = x_eval if x_eval.dtype == np.int8 else load_int8_calibration(x_eval, g0)
        self.xc = x_cal if x_cal.dtype == np.int8 else load_int8_calibration(x_cal, g0)
        self.g0, self.y0 = g0, _outputs(g0, self.xs)
        self.classifier = g0.nodes[-1].op == "SOFTMAX"

    def load(self):
        g = load_tflite(self.path)
        resolve_graph(g)
        return g

    def score(self, g):
        """(SNR vs int8 in dB, top-1 agreement vs int8 or None)."""
        y = _outputs(g, self.xs)
        err = float(np.sum((y - self.y0) ** 2))
        snr = float("inf") if err == 0 else 10 * np.log10(float(np.sum(self.y0 ** 2)) / err)
        return snr, (agreement(y, self.y0) if self.classifier else None)

    def say(self, what, snr, agr):
        print(f"{self.name} {what}: SNR vs int8 {snr:6.2f} dB"
              + (f", top-1 vs int8 {100 * agr:.1f} %" if agr is not None else ""), flush=True)


def floor(name, fractions, n_eval, seed=0):
    b = _Bench(name, n_eval)
    rows = []
    for node, t in b.g0.weight_tensors():
        for frac in fractions:
            g = b.load()
            w = g.tensors[t.id]
            rng = np.random.default_rng(seed)
            moved = rng.random(w.data.shape) < frac
            step = rng.choice([-1, 1], w.data.shape)
            w.data = np.clip(w.data.astype(np.int64) + moved * step, -127, 127).astype(np.int8)
            snr, agr = b.score(g)
            rows.append((node.name, frac, snr, agr))
            b.say(f"{node.name:24s} {100 * frac:5.1f} % of weights +-1", snr, agr)
    return rows


def one_layer_clustered(name, bits, n_eval, n_cal=fidelity.INT8_CALIB):
    """Each weighted layer alone taken from the ``--calib`` compile at ``bits`` (default layout, output-aware
    codebooks, its weights, scales and corrected bias), every other layer left exact int8: how far one
    clustered layer by itself moves the output."""
    import copy

    from tinycluster.compress.cluster import cluster_graph

    b = _Bench(name, n_eval, n_cal)
    gc = b.load()
    cluster_graph(gc, bits=bits, granularity="auto", calib=b.xc)
    rows = []
    for (node, t), (_, tc) in zip(b.g0.weight_tensors(), gc.weight_tensors()):
        g = b.load()
        for i in [t.id] + [i for i in node.inputs[2:3] if i is not None and i >= 0]:  # weights, bias
            g.tensors[i] = copy.deepcopy(gc.tensors[i])
        snr, agr = b.score(g)
        cl = tc.clustering
        what = "raw int8" if cl is None else f"{cl.granularity} {cl.bits} bit"
        rows.append((node.name, what, snr, agr))
        b.say(f"{node.name:24s} alone at {what:22s}", snr, agr)
    b.say("every layer as compiled         ", *b.score(gc))
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

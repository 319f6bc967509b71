"""Instructions per MAC of the packed FULLY_CONNECTED kernel, FC 640->128, on Cortex-M (unicorn count).

The brief's figures to beat (instructions per MAC, M4 / M0+): CMSIS-NN s8 1.95 / 6.2, CMSIS-NN
packed s4 4.95 / 7.8, a naive unpack-lookup-MAC loop 7.5 / 13.6.

    .venv/bin/python benchmarks/fc_640x128.py [--bits 4 8 2] [--boards cortex-m4 rp2040]

Builds a one-layer int8 model with the TFLite converter (random weights, seeded), compiles it at
each width (per-channel and per-tensor codebooks), cross-compiles for each board, runs it in QEMU
(bit-exact check against the host build) and counts instructions per invoke with unicorn.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import tinycluster  # noqa: E402
from tinycluster._quiet import import_tensorflow  # noqa: E402
from tinycluster.builders.board import run_on_board  # noqa: E402
from tinycluster.frontends.keras import convert_to_int8  # noqa: E402


def fc_model(n_in=640, n_out=128, seed=0) -> bytes:
    tf = import_tensorflow()
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    inp = keras.layers.Input((n_in,), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(n_out)(inp))
    calib = np.random.default_rng(seed).normal(size=(16, n_in)).astype(np.float32)
    return convert_to_int8(model, calib)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="*", default=[4, 8, 2])
    ap.add_argument("--boards", nargs="*", default=["cortex-m4", "rp2040"])
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fcbench_"))
    src = tmp / "fc640x128.tflite"
    src.write_bytes(fc_model())
    print("| bits | codebooks | board | instructions / invoke | instructions / MAC | bit-exact (QEMU vs host) |")
    print("|---:|---|---|---:|---:|---|")
    for bits in a.bits:
        for gran in (["per-channel", "per-tensor"] if bits < 8 else ["per-tensor"]):
            m = tinycluster.compile(src, bits=bits, granularity=gran, name="fc")
            for board in a.boards:
                out = m.write(tmp / f"b{bits}_{gran}_{board}")
                r = run_on_board(out, board, samples=3)
                print(f"| {bits} | {gran if bits < 8 else 'none (raw int8)'} | {board} | {r['instructions_per_invoke']:,} | "
                      f"{r['instructions_per_mac']:.2f} | {'yes' if r['mismatches'] == 0 else 'NO'} |")


if __name__ == "__main__":
    main()

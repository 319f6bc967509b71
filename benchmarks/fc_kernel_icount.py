"""Instructions per MAC of tc_fully_connected_packed alone, per core, width and codebook layout.

One bare-metal ELF per board (the board profile's compiler flags, tests/arm_harness.py), one
kernel call counted in unicorn (block hook, as `tinycluster run` counts), the output checked
against the numpy reference of ops/fully_connected.py. Includes everything the call does:
pair-table build, input widening, requantization. No TensorFlow: seconds, not minutes.
benchmarks/vs_cmsis_nn.py is the side-by-side comparison with CMSIS-NN on the same shapes.

    .venv/bin/python benchmarks/fc_kernel_icount.py [--shape 640x128] [--bits 1 2 3 4 5 6 7 8]
        [--boards cortex-m4 cortex-m0plus rp2040] [--layouts tensor channel] [--scratch full none]

--scratch picks the table level (tc_fc_packed_params.tables): full (the fastest: pair table and
widened input), compact (split int8 tables only), none (a NULL scratch: the table-free paths).
The generated code gets the largest level the arena has room for at that layer.
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from arm_harness import build_machine, read, write  # noqa: E402
from tinycluster.ir import Node  # noqa: E402
from tinycluster.ops import fully_connected, get_handler  # noqa: E402
from tinycluster.ops._packed_common import PackedLayout, raw_layout  # noqa: E402
from tinycluster.packing import pack_indices  # noqa: E402

HARNESS = r"""
#include "tc_kernels.h"
tc_fc_packed_params P;
int8_t X[16384];
uint8_t W[1 << 18];
int8_t CB[65536];
int32_t BIAS[4096], MULT[4096];
int8_t SHIFT[4096], Y[4096], SCR[20480];
int32_t FLAGS[3]; /* raw, scratch bytes (out), NULL scratch */
void tc_harness_entry(void) {}
void run(void)
{
    FLAGS[1] = tc_fully_connected_packed_get_buffer_size(&P);
    tc_fully_connected_packed(&P, X, W, FLAGS[0] ? 0 : CB, 0, 0, BIAS, MULT, SHIFT, Y, FLAGS[2] ? 0 : SCR);
}
"""


def case(rng, n_in, n_out, bits, layout):
    """Random layer: symmetric int8 codebooks of 2^bits entries (raw int8 weights at 8 bits with
    layout 'raw'), per-channel requantization near TFLite's typical range."""
    k = 1 << bits
    if layout == "raw":
        lay = raw_layout(rng.integers(-127, 128, size=n_out * n_in))
    elif layout == "tensor":
        lay = PackedLayout(rng.integers(0, k, size=n_out * n_in), bits,
                           rng.integers(-127, 128, size=k).astype(np.int8), 0, None, k)
    else:
        lay = PackedLayout(rng.integers(0, k, size=n_out * n_in), bits,
                           rng.integers(-127, 128, size=k * n_out).astype(np.int8), k, None, k)
    p = dict(in_features=n_in, out_features=n_out, batches=1, input_offset=0, filter_offset=0,
             output_offset=int(rng.integers(-128, 128)), act_min=-128, act_max=127,
             mult=[int(v) for v in rng.integers(1 << 30, (1 << 31) - 1, size=n_out)],
             shift=[int(v) for v in rng.integers(-12, -6, size=n_out)], requant_per_channel=1)
    return p, lay, rng.integers(-5000, 5000, size=n_out), rng.integers(-128, 128, size=n_in).astype(np.int8)


def count(m, p, lay, bias, x, null_scratch=False):
    fields = fully_connected.struct_fields(p, lay)
    fmt = "<" + "".join({"uint16_t": "H", "int16_t": "h", "int8_t": "b", "uint8_t": "B"}[t] for _, t, _ in fields)
    write(m, "P", struct.pack(fmt, *[int(v) for _, _, v in fields]))
    write(m, "X", x.tobytes())
    write(m, "W", pack_indices(lay.indices, lay.bits))
    if not lay.raw:
        write(m, "CB", lay.codebook_array().tobytes())
    write(m, "BIAS", np.asarray(bias, np.int32).tobytes())
    write(m, "MULT", np.asarray(p["mult"], np.int32).tobytes())
    write(m, "SHIFT", np.asarray(p["shift"], np.int8).tobytes())
    write(m, "FLAGS", np.array([lay.raw, 0, null_scratch], np.int32).tobytes())
    n = m.call("run", count=True)
    y = np.frombuffer(read(m, "Y", p["out_features"]), np.int8)
    w = lay.values((p["out_features"], p["in_features"]), 0)
    node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("FULLY_CONNECTED").reference(node, None, [x.reshape(1, -1), w, bias])[0].reshape(-1)
    scratch = int(np.frombuffer(read(m, "FLAGS", 8), np.int32)[1])
    return n, bool(np.array_equal(y, ref)), scratch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="640x128")
    ap.add_argument("--bits", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6, 7, 8])
    ap.add_argument("--boards", nargs="*", default=["cortex-m4", "cortex-m0plus", "rp2040"])
    ap.add_argument("--layouts", nargs="*", default=["tensor", "channel"])
    ap.add_argument("--scratch", nargs="*", default=["full"], choices=["full", "compact", "none"],
                    help="table level: full, compact (split tables), none (a NULL scratch)")
    a = ap.parse_args()
    n_in, n_out = (int(v) for v in a.shape.split("x"))
    print(f"FC {n_in}->{n_out}, one tc_fully_connected_packed call, instructions per MAC (unicorn)")
    print("| board | bits | codebooks | instructions / MAC | scratch (B) | == reference |")
    print("|---|---:|---|---:|---:|---|")
    for board in a.boards:
        m = build_machine(board, HARNESS, ["tc_fully_connected_packed.c", "tc_unpack_lut.c",
                                           "tc_unpack_lut_generic.c"], stack=16384)
        rng = np.random.default_rng(1)
        for bits in a.bits:
            for layout in (["raw"] if bits == 8 else []) + [lo for lo in a.layouts]:
                p, lay, bias, x = case(rng, n_in, n_out, bits, layout)
                for sc in a.scratch:
                    p["tables"] = fully_connected.TABLES_COMPACT if sc == "compact" else fully_connected.TABLES_FULL
                    n, ok, scratch = count(m, p, lay, bias, x, sc == "none")
                    name = {"raw": "none (raw int8)", "tensor": "per-tensor", "channel": "per-channel"}[layout]
                    used = "NULL" if sc == "none" else str(scratch)
                    print(f"| {board} | {bits} | {name} | {n / (n_in * n_out):.2f} | {used} | {'yes' if ok else 'NO'} |",
                          flush=True)


if __name__ == "__main__":
    main()

"""The Cortex-M fast paths of the packed kernels, run under unicorn, byte for byte against the
numpy references (which the host tests tie to the portable C and to TFLite Micro).

Per core family, as each board profile compiles the runtime: Cortex-M4 and M33 (ARMv7E-M /
ARMv8-M DSP: SMLAD pair tables, SXTB16), Cortex-M0+ at -Os and RP2040 at -O2 (ARMv6-M).
Random shapes (in_features around the 8-index groups, rows not on byte boundaries), widths
1..8, per-tensor / per-channel / shared codebooks, raw int8 weights, batches, folded and
unfolded input offsets, weight offsets, extreme requantization (strategies shared with
tests/test_kernels_packed.py); scratch misaligned by one byte and poisoned, output guard bytes.
"""
from __future__ import annotations

import functools
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_kernels_packed as K  # noqa: E402
from conftest import require_tool  # noqa: E402
from tinycluster.ir import Node  # noqa: E402
from tinycluster.ops import _packed_common as pc  # noqa: E402
from tinycluster.ops import fully_connected, get_handler  # noqa: E402
from tinycluster.packing import pack_indices  # noqa: E402

BOARDS = ["cortex-m4", "cortex-m33", "cortex-m0plus", "rp2040"]
FC_CASES = 60  # per board and CI run

FC_HARNESS = r"""
#include "tc_kernels.h"
tc_fc_packed_params P;
int8_t X[2200];
uint8_t W[24576];
int8_t CB[4096];
uint8_t MAP[64];
int32_t BIAS[64], MULT[64];
int8_t SHIFT[64];
int8_t Y[16 + 64 + 16];
int8_t SCR[20480]; /* the 6-bit full level: 16 KiB + widened input */
uint32_t PT[16384]; /* flash pair tables (fully_connected.pair_tables) */
int32_t FLAGS[6]; /* no codebooks, use map, use bias, scratch size (out), NULL scratch, pair tables */
int32_t UNP[4]; /* bit offset, bits, count, raw */
int8_t UOUT[16 + 600 + 16];
void tc_harness_entry(void) {}
void run_unpack(void)
{
    tc_unpack_lut(W, (uint32_t)UNP[0], (uint8_t)UNP[1], UNP[3] ? 0 : CB, UNP[2], UOUT + 16);
}
void run_fc(void)
{
    FLAGS[3] = tc_fully_connected_packed_get_buffer_size(&P);
    tc_fully_connected_packed(&P, X, W, FLAGS[0] ? 0 : CB, FLAGS[1] ? MAP : 0, FLAGS[5] ? PT : 0,
                              FLAGS[2] ? BIAS : 0, MULT, SHIFT, Y + 16, FLAGS[4] ? 0 : SCR + 1);
}
"""


@functools.lru_cache(maxsize=None)
def _machine(board):
    from arm_harness import build_machine
    return build_machine(board, FC_HARNESS, ["tc_fully_connected_packed.c", "tc_unpack_lut.c",
                                             "tc_unpack_lut_generic.c"])


def _pack_struct(fields) -> bytes:
    fmt = "<" + "".join({"uint16_t": "H", "int16_t": "h", "int8_t": "b", "uint8_t": "B"}[t] for _, t, _ in fields)
    return struct.pack(fmt, *[int(v) for _, _, v in fields])


def run_fc_on_target(board, p, layout, x, bias, null_scratch=False, flash_tables=False):
    from arm_harness import read, write
    m = _machine(board)
    fields = fully_connected.struct_fields(p, layout)
    write(m, "P", _pack_struct(fields))
    write(m, "X", np.asarray(x, np.int8).tobytes())
    write(m, "W", pack_indices(layout.indices, layout.bits))
    if not layout.raw:
        write(m, "CB", layout.codebook_array().tobytes())
    if layout.cmap is not None:
        write(m, "MAP", np.asarray(layout.cmap, np.uint8).tobytes())
    if bias is not None:
        write(m, "BIAS", pc.bias_storage(bias, p.get("bias_bits", 32))[1].tobytes())  # as the params say
    write(m, "MULT", np.asarray(p["mult"], np.int64).astype(np.int32).tobytes())
    write(m, "SHIFT", np.asarray(p["shift"], np.int8).tobytes())
    tabs = fully_connected.pair_tables(layout) if flash_tables else None
    if tabs is not None and tabs.size > 16384:  # (more 6-bit codebooks than the harness holds)
        tabs = None
    if tabs is not None:
        write(m, "PT", tabs.astype("<u4").tobytes())
    write(m, "FLAGS", np.array([layout.raw, layout.cmap is not None, bias is not None, 0, null_scratch,
                                tabs is not None], np.int32).tobytes())
    assert fully_connected.scratch_size(p, layout.bits, layout.stride) < 20480
    write(m, "SCR", bytes([0xA5]) * 20480)
    n = p["batches"] * p["out_features"]
    write(m, "Y", bytes([0x5A]) * (n + 32))
    m.call("run_fc", limit=50_000_000)
    flags = np.frombuffer(read(m, "FLAGS", 20), np.int32)
    assert flags[3] == fully_connected.scratch_size(p, layout.bits, layout.stride)
    raw = np.frombuffer(read(m, "Y", n + 32), np.int8)
    assert np.all(raw[:16] == 0x5A) and np.all(raw[16 + n:] == 0x5A), "kernel wrote outside its output"
    return raw[16:16 + n]


@pytest.mark.parametrize("board", BOARDS)
def test_fully_connected_on_target_matches_reference(board):
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn")

    @settings(max_examples=FC_CASES, **K.SETTINGS)
    @given(data=st.data())
    def check(data):
        if data.draw(st.booleans()):  # the fast paths: rows of whole 8-index groups, passes of 4 rows
            n_in = 8 * data.draw(st.one_of(st.integers(1, 12), st.integers(12, 88)))
            n_out = data.draw(st.sampled_from([4, 5, 7, 8, 12]))
        else:
            n_in = data.draw(st.one_of(st.integers(1, 40), st.integers(40, 700), st.sampled_from([64, 128, 640])))
            n_out = data.draw(st.integers(1, 12))
        rows = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        bias = K._bias(data, rng, n_out)
        fo = 0 if data.draw(st.booleans()) else -K._zp(data)
        q = K._quant(data, n_out, K._acc_bound(bias, 2 * n_in))
        p = dict(in_features=n_in, out_features=n_out, batches=rows, filter_offset=fo,
                 tables=data.draw(st.sampled_from([2, 2, 1, 0])), **q)
        layout, w = K._layout(data, (n_out, n_in), 0, n_out, fast=data.draw(st.booleans()))
        x = rng.integers(-128, 128, size=(rows, n_in)).astype(np.int8)
        node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
        ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0]
        if bias is not None and data.draw(st.booleans()):  # as emitted: input offset folded into the bias
            p, bias = fully_connected.fold_input_offset(p, w, bias)
        p = K._bias_bits(data, p, bias)
        got = run_fc_on_target(board, p, layout, x, bias, null_scratch=data.draw(st.integers(0, 3)) == 0,
                               flash_tables=data.draw(st.booleans()))
        np.testing.assert_array_equal(got, ref.reshape(-1))

    check()


@pytest.mark.parametrize("board", BOARDS)
def test_unpack_on_target_matches_numpy(board):
    """tc_unpack_lut as each core compiles it: every width, starts inside a byte, lengths
    around the 8-index groups, raw indices; against numpy (and no write outside the output)."""
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn")
    from arm_harness import read, write
    from tinycluster.packing import unpack_indices
    m = _machine(board)
    rng = np.random.default_rng(7)
    for case in range(120):
        bits = int(rng.integers(1, 9))
        first = int(rng.integers(0, 20))
        count = int(rng.choice([int(rng.integers(0, 40)), int(rng.integers(40, 500))]))
        raw = bool(rng.integers(0, 2))
        idx = rng.integers(0, 1 << bits, size=first + count)
        data = pack_indices(idx, bits)
        cb = rng.integers(-128, 128, size=1 << bits).astype(np.int8)
        write(m, "W", data)
        write(m, "CB", cb.tobytes())
        write(m, "UNP", np.array([first * bits, bits, count, raw], np.int32).tobytes())
        write(m, "UOUT", bytes([0x5A]) * (count + 32))
        m.call("run_unpack", limit=10_000_000)
        out = np.frombuffer(read(m, "UOUT", count + 32), np.int8)
        assert np.all(out[:16] == 0x5A) and np.all(out[16 + count:] == 0x5A)
        want = unpack_indices(data, bits, first + count)[first:]
        want = want.astype(np.uint8).view(np.int8) if raw else cb[want]
        np.testing.assert_array_equal(out[16:16 + count], want, err_msg=f"{board} case {case}: bits {bits} "
                                      f"first {first} count {count} raw {raw}")


@pytest.mark.parametrize("board", ["cortex-m4", "rp2040"])
def test_fully_connected_table_and_table_free_passes_on_target(board):
    """Deterministic sweep of the pass shapes on target: widths 1..6 (5/6 bits also on a 640 x 40
    layer, where their pair tables pay: 16 KiB at 6 bits, one per codebook for shared rows), per-tensor / per-channel /
    shared codebooks (consecutive rows with equal and different codebooks), rows of whole
    8-index groups and not, 1..9 rows (passes of 4 and 2 and their remainders), at each table
    level: full (pair table + widened input), compact (split int8 tables) and none (NULL
    scratch: the table-free paths), and with the flash pair tables (per-tensor and shared codebooks,
    widths 1..5) at the compact level (the widened input in scratch where it fits) and with NULL
    scratch (widened on the stack), against numpy."""
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn")
    from tinycluster.ops import _packed_common as pc
    rng = np.random.default_rng(10)
    cases = flash_cases = 0
    for bits in (1, 2, 3, 4, 5, 6):
        k = 1 << bits
        for mode in ("tensor", "channel", "shared"):
            shapes = ((64, 9), (72, 5), (37, 3), (128, 6), (520, 9))
            if bits >= 5:  # 5/6-bit tables: per-tensor layers of >= 4 weights per entry, shared rows
                shapes += ((640, 40),)  # taken codebook by codebook (>= 2 weights per entry of 3 tables)
            for n_in, n_out in shapes:
                idx = rng.integers(0, k, size=n_out * n_in)
                n_cb = {"tensor": 1, "channel": n_out, "shared": 3}[mode]
                cbs = rng.integers(-128, 128, size=(n_cb, k)).astype(np.int8)
                if mode == "tensor":
                    lay = pc.PackedLayout(idx, bits, cbs[0], 0, None, k)
                elif mode == "channel":
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k, None, k)
                else:  # runs of equal codebooks and changes
                    cmap = np.resize(np.array([0, 0, 1, 1, 1, 2, 0, 2, 2], np.uint8), n_out)
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k, cmap, k)
                w = lay.values((n_out, n_in), 0)
                bias = rng.integers(-5000, 5000, size=n_out)
                p = dict(in_features=n_in, out_features=n_out, batches=1, filter_offset=0, input_offset=0,
                         output_offset=3, act_min=-128, act_max=127,
                         mult=rng.integers(1 << 30, 1 << 31, size=n_out).tolist(),
                         shift=rng.integers(-14, -8, size=n_out).tolist(), requant_per_channel=1)
                x = rng.integers(-128, 128, size=(1, n_in)).astype(np.int8)
                node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
                ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0].reshape(-1)
                configs = [(2, False, False), (1, False, False), (2, True, False)]  # full, compact, none
                if fully_connected.pair_tables(lay) is not None:
                    configs += [(1, False, True), (2, True, True)]  # flash tables: compact scratch, none
                    flash_cases += 2
                for tables, null_scratch, flash in configs:
                    got = run_fc_on_target(board, dict(p, tables=tables), lay, x, bias, null_scratch=null_scratch,
                                           flash_tables=flash)
                    np.testing.assert_array_equal(got, ref, err_msg=f"{bits}-bit {mode} {n_in}x{n_out} "
                                                                    f"tables {tables} null scratch {null_scratch} "
                                                                    f"flash tables {flash}")
                    cases += 1
    assert cases == 6 * 3 * 5 * 3 + 2 * 3 * 3 + flash_cases and flash_cases == 6 * 2 * 5 * 2 + 2 * 2 * 2

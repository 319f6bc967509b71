"""The Cortex-M fast paths of CONV_2D and DEPTHWISE_CONV_2D against the portable reference.

Each case runs the kernel as the target builds it (tc_arch.h picks the ARMv7E-M DSP path on
Cortex-M4 and the ARMv6-M path on Cortex-M0+; board flags, -O2 / -Os) under unicorn through
tests/thumb_driver.py, and compares every output byte with the host's portable build
(-DTC_NO_HOST_SIMD) of the same C on the same inputs. Shapes are drawn to reach every branch
of the fast paths: two-channel / two-position blocks and their odd tails, pointwise runs,
strides, dilations, SAME/VALID padding, groups, depth multipliers, filter depths that are and
are not multiples of four, widths 1..8, per-tensor / per-channel / shared codebooks, raw 8-bit
weights, extreme requantization, row ranges with unneeded input rows poisoned, row-by-row calls,
misaligned scratch. Each call's stack use must stay within 2 KiB.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import packed_harness as H  # noqa: E402
import thumb_driver as TD  # noqa: E402
from conftest import require_tool  # noqa: E402
from test_kernels_packed import (SETTINGS, _acc_bound, _bias, _bias_bits, _geometry, _layout,  # noqa: E402
                                 _poison_unneeded_rows, _quant, _rows)
from tinycluster.ops import _packed_common as pc  # noqa: E402
from tinycluster.ops import conv_2d, depthwise_conv_2d  # noqa: E402

BOARDS = ("cortex-m4", "cortex-m0plus")
STACK_LIMIT = 2048


@functools.lru_cache(maxsize=None)
def driver(board: str) -> TD.Driver:
    return TD.Driver(board)


@pytest.fixture(scope="module", autouse=True)
def _toolchain():
    require_tool("arm-none-eabi-gcc")


def _check(kind, p, layout, x, bias, fields, oy0, oy1, rowwise, skew):
    want = (H.run_rowwise if rowwise and (kind == "dw" or conv_2d.is_shallow(p)) else H.run_conv)(
        kind, p, layout, x, bias, fields, oy0, oy1, portable=True)
    for board in BOARDS:
        got, _, stack, _ = TD.run_conv(driver(board), kind, p, layout, x, bias, fields, oy0, oy1,
                                       rowwise=rowwise, skew=skew)
        assert stack <= STACK_LIMIT, f"{board}: {stack} bytes of stack"
        np.testing.assert_array_equal(got, want, err_msg=f"{board} differs from the portable build")


@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_conv2d_arm_matches_portable(data):
    in_h, in_w = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8))
    groups = data.draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
    # multiples of 4 (the DSP pair path), others (ARMv6-M pairs, DSP falls back), shallow and deep
    fic = data.draw(st.one_of(st.sampled_from([4, 8, 12, 16, 32, 36, 64]), st.integers(1, 40)))
    in_c = fic * groups
    out_c = groups * data.draw(st.one_of(st.integers(1, 5), st.integers(6, 24)))
    kh, kw = data.draw(st.one_of(st.just(1), st.integers(1, 4))), data.draw(st.one_of(st.just(1), st.integers(1, 4)))
    p = _geometry(data, in_h, in_w, kh, kw)
    if data.draw(st.booleans()):  # pointwise runs: 1x1, stride 1, no padding
        kh = kw = 1
        p = dict(stride_h=1, stride_w=1, dil_h=1, dil_w=1, out_h=in_h, out_w=in_w, pad_top=0, pad_left=0)
    p.update(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=kh, k_w=kw, filter_in_c=fic)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, out_c)
    p.update(_quant(data, out_c, _acc_bound(bias, kh * kw * fic)))
    layout, w = _layout(data, (out_c, kh, kw, fic), 0, out_c)
    x = rng.integers(-128, 128, size=(1, in_h, in_w, in_c)).astype(np.int8)
    oy0, oy1 = _rows(data, p["out_h"])
    if conv_2d.never_pads(p) and data.draw(st.booleans()):  # as emitted: input offset in the bias
        p, bias = conv_2d.fold_input_offset(p, w, bias)
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    _check("conv", p, layout, xp, bias, conv_2d.struct_fields(p, layout), oy0, oy1,
           data.draw(st.booleans()), data.draw(st.integers(0, 3)))


@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_depthwise_conv2d_arm_matches_portable(data):
    in_h, in_w = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8))
    # multiples of 4 (DSP groups), tails, 8 (the portable paired path)
    in_c = data.draw(st.one_of(st.sampled_from([4, 8, 16, 20]), st.integers(1, 19)))
    dm = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    out_c = in_c * dm
    kh, kw = data.draw(st.one_of(st.just(3), st.integers(1, 4))), data.draw(st.one_of(st.just(3), st.integers(1, 4)))
    p = _geometry(data, in_h, in_w, kh, kw)
    if data.draw(st.booleans()):
        p = _geometry(data, in_h, in_w, kh, kw)
        p.update(stride_w=1, dil_w=1, dil_h=1)  # the 3x3 window paths
        p["out_w"] = pc.out_size("SAME", in_w, kw, 1, 1)
        p["pad_left"] = pc.pad_before(1, 1, in_w, kw, p["out_w"])
        p["out_h"] = pc.out_size("SAME", in_h, kh, p["stride_h"], 1)
        p["pad_top"] = pc.pad_before(p["stride_h"], 1, in_h, kh, p["out_h"])
    p.update(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=kh, k_w=kw, depth_multiplier=dm)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, out_c)
    p.update(_quant(data, out_c, _acc_bound(bias, kh * kw)))
    layout, _ = _layout(data, (1, kh, kw, out_c), 3, out_c)
    x = rng.integers(-128, 128, size=(1, in_h, in_w, in_c)).astype(np.int8)
    oy0, oy1 = _rows(data, p["out_h"])
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    _check("dw", p, layout, xp, bias, depthwise_conv_2d.struct_fields(p, layout), oy0, oy1,
           data.draw(st.booleans()), data.draw(st.integers(0, 3)))


@pytest.mark.parametrize("kind", ["conv", "dw"])
def test_model_layer_shapes_match_portable(kind):
    """The layer shapes the shared models run (kws pointwise / depthwise, ResNet-8 3x3 and its
    strided 1x1 shortcut, vww's 3x3-position pointwise), at full size, 4-bit per-tensor
    codebook, per-channel requantization; plus a strided 1x1 with odd rows, and layers wider
    than the 64-channel bias stage (shallow conv, depthwise). Biases stored 16, 24 and 32 bits
    wide in turn."""
    rng = np.random.default_rng(7)
    shapes = {"conv": [(25, 5, 64, 64, 1, 1), (16, 16, 32, 32, 3, 1), (16, 16, 32, 64, 3, 2),
                       (16, 16, 32, 64, 1, 2), (3, 3, 128, 64, 1, 1), (9, 7, 32, 24, 1, 3),
                       (6, 5, 3, 96, 3, 1)],
              "dw": [(25, 5, 64, 64, 3, 1), (24, 24, 32, 32, 3, 2), (48, 48, 8, 8, 3, 1),
                     (5, 4, 136, 136, 3, 1)]}[kind]
    for i, (ih, iw, ic, oc, k, s) in enumerate(shapes):
        oh, ow = pc.out_size("SAME", ih, k, s, 1), pc.out_size("SAME", iw, k, s, 1)
        p = dict(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=k, k_w=k, stride_h=s, stride_w=s, dil_h=1,
                 dil_w=1, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, 1, ih, k, oh),
                 pad_left=pc.pad_before(s, 1, iw, k, ow), input_offset=128, output_offset=-5,
                 act_min=-128, act_max=127, requant_per_channel=1,
                 mult=list(rng.integers(1 << 30, 1 << 31, oc)), shift=list(rng.integers(-10, -5, oc)),
                 bias_bits=(16, 24, 32)[i % 3])
        shape, axis = ((oc, k, k, ic), 0) if kind == "conv" else ((1, k, k, oc), 3)
        if kind == "conv":
            p["filter_in_c"] = ic
        else:
            p["depth_multiplier"] = 1
        layout = pc.PackedLayout(rng.integers(0, 16, size=int(np.prod(shape))), 4,
                                 rng.integers(-127, 128, 16).astype(np.int8), 0, None, 16)
        bias = rng.integers(-5000, 5000, oc)
        x = rng.integers(-128, 128, size=(1, ih, iw, ic)).astype(np.int8)
        mod = conv_2d if kind == "conv" else depthwise_conv_2d
        if kind == "conv" and oc > 64:
            assert conv_2d.is_shallow(p)  # the shallow Arm path's block-by-block bias stage
        _check(kind, p, layout, x, bias, mod.struct_fields(p, layout), 0, oh, False, 1)


PREPARED_HOST_C = r"""
#include "tc_packed_internal.h"
#include <stdio.h>
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
static long bad, n;
static void check(int32_t x, int32_t m, int32_t sh)
{
    tc_rq q;
    tc_rq_prepare(m, sh, &q);
    n++;
    if (tc_rq_apply(&q, x) != tc_mul_by_quant_mult_ref(x, m, sh) && bad++ < 5) {
        printf("mismatch x=%ld mult=%ld shift=%ld\n", (long)x, (long)m, (long)sh);
    }
}
int main(void)
{
    static const int32_t xe[] = {INT32_MIN, INT32_MIN + 1, -65537, -65536, -65535, -2, -1, 0, 1, 2,
                                 65535, 65536, 65537, 1 << 30, -(1 << 30), INT32_MAX - 1, INT32_MAX};
    static const int32_t me[] = {0, 1, 2, 65535, 65536, 65537, 1 << 30, (1 << 30) + 1, 0x7FFF0000,
                                 0x7FFFFFFE, INT32_MAX};
    int32_t sh;
    unsigned i, j;
    long k;
    for (sh = -31; sh <= 30; sh++) {
        for (i = 0; i < sizeof xe / sizeof xe[0]; i++) {
            for (j = 0; j < sizeof me / sizeof me[0]; j++) {
                check(xe[i], me[j], sh);
            }
        }
        for (k = 0; k < 100000; k++) {
            int32_t x = (int32_t)rnd();
            if (k & 2) {
                x >>= rnd() & 31;
            }
            check(x, (int32_t)(rnd() >> 1), sh);
        }
    }
    printf("%ld %ld\n", n, bad);
    return 0;
}
"""


def test_prepared_requantize_matches_reference_on_host(tmp_path):
    """tc_rq_apply (the per-channel prepared form the Arm kernels use) == the reference
    MultiplyByQuantizedMultiplier for every shift, edge and random accumulators, multipliers
    in the kernels' documented range [0, 2^31)."""
    import subprocess

    from tinycluster.builders.host import build_executable
    (tmp_path / "t.c").write_text(PREPARED_HOST_C)
    exe = build_executable([tmp_path / "t.c"], tmp_path / "t")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[-2]) > 6_000_000
    assert int(out[-1]) == 0, " ".join(out)


PREPARED_TARGET_C = r"""
#include "tc_packed_internal.h"
#define N 4096
int32_t A[N], M[N], S[N], R[N], P[1];
void tc_harness_entry(void) {}
void run(void)
{
    int32_t i;
    for (i = 0; i < P[0]; i++) {
        tc_rq q;
        tc_rq_prepare(M[i], S[i], &q);
        R[i] = tc_rq_apply(&q, A[i]);
    }
}
"""


@pytest.mark.parametrize("board", BOARDS)
def test_prepared_requantize_on_target_matches_reference(board):
    from arm_harness import build_machine, read, write
    from tinycluster.quantize import multiply_by_quantized_multiplier

    m = build_machine(board, PREPARED_TARGET_C)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.integers(-2**31, 2**31, 2000), rng.integers(-2**20, 2**20, 2000),
                        [-2**31, 2**31 - 1, -1, 0, 1, 2**30]])[:4096]
    mult = np.concatenate([rng.integers(0, 2**31, 3000), rng.integers(2**30, 2**31, 1000),
                           [0, 1, 2**31 - 1, 2**30, 2**30 + 1, 65536]])[:x.size]
    s = rng.integers(-31, 31, x.size)
    write(m, "A", x.astype(np.int32).tobytes())
    write(m, "M", mult.astype(np.int32).tobytes())
    write(m, "S", s.astype(np.int32).tobytes())
    write(m, "P", np.array([x.size], np.int32).tobytes())
    m.call("run")
    got = np.frombuffer(read(m, "R", 4 * x.size), np.int32)
    want = multiply_by_quantized_multiplier(x, mult, s)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{board}: x={x[bad[0]]} mult={mult[bad[0]]} shift={s[bad[0]]}"

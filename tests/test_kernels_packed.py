"""Packed-weight kernels (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D) and their decoders.

* C kernel == numpy reference (ops/<op>.py reference) over random shapes, strides, paddings,
  dilations, groups, depth multipliers, index widths 1..8, codebook sizes 2^n and 2^n - 1,
  per-tensor / per-channel / shared codebooks, per-tensor / per-channel requantization with
  extreme multipliers, shifts and zero points, and output row ranges (hypothesis);
* fast-path decoder == generic bitstream decoder == numpy unpack;
* numpy references (through the real importer, parse and resolve) == TFLite Micro on small
  single-op int8 models converted by TensorFlow in the test;
* the kernels run clean under -fsanitize=address,undefined (standalone executable).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import packed_harness as H  # noqa: E402
from tinycluster.ir import Node  # noqa: E402
from tinycluster.ops import _packed_common as pc  # noqa: E402
from tinycluster.ops import conv_2d, depthwise_conv_2d, fully_connected  # noqa: E402
from tinycluster.ops import get_handler  # noqa: E402
from tinycluster.packing import pack_indices, packed_size, unpack_indices  # noqa: E402
from tinycluster.quantize import multiply_by_quantized_multiplier  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------------------------
# strategies


def _zp(data):
    return data.draw(st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127)))


def _max_shift(acc_bound: int) -> int:
    """Largest shift for which TFLite's arithmetic stays inside int32 (x << shift and the
    requantized value plus the output offset): acc_bound * 2^shift <= 2^30 (shift <= 0 is
    always legal for accumulators below 2^31 - 2^8)."""
    s = 0
    while s < 30 and acc_bound << (s + 1) <= (1 << 30):
        s += 1
    return s


def _quant(data, n_ch, acc_bound):
    """Requantization and activation parameters, including extremes (multipliers near 2^31,
    shifts -31..30 where legal, i.e. where TFLite's int32 arithmetic cannot overflow)."""
    per_ch = data.draw(st.booleans())
    n = n_ch if per_ch else 1
    mult_st = st.one_of(st.sampled_from([0, 1 << 30, (1 << 31) - 1, (1 << 30) + 1]),
                        st.integers(1 << 30, (1 << 31) - 1))
    shift_st = st.one_of(st.integers(-31, 30), st.integers(-14, 1), st.sampled_from([-31, 30, 0]))
    mult = [data.draw(mult_st) for _ in range(n)]
    smax = _max_shift(acc_bound)
    shift = [min(data.draw(shift_st), smax) for _ in range(n)]
    if data.draw(st.booleans()):
        act_min, act_max = -128, 127
    else:
        a, b = sorted([data.draw(st.integers(-128, 127)), data.draw(st.integers(-128, 127))])
        act_min, act_max = a, b
    return dict(input_offset=-_zp(data), output_offset=_zp(data), act_min=act_min, act_max=act_max,
                mult=mult, shift=shift, requant_per_channel=int(per_ch))


def _layout(data, shape, axis, n_ch, fast=False):
    """Random packed weights: width, codebook size (2^n, 2^n - 1 or any), codebook mode.
    fast: mostly what the pair-table fast paths take (widths 1..4, one codebook)."""
    bits = data.draw(st.integers(1, 4) if fast else st.integers(1, 8))
    full = 1 << bits
    k = data.draw(st.one_of(st.sampled_from(sorted({full, max(1, full - 1)})), st.integers(1, full)))
    mode = data.draw(st.sampled_from(["tensor", "tensor", "shared"] if fast else ["tensor", "channel", "shared"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    idx = rng.integers(0, k, size=shape)
    n_cb = {"tensor": 1, "channel": n_ch, "shared": data.draw(st.integers(1, max(1, min(n_ch, 5))))}[mode]
    if data.draw(st.booleans()):
        cbs = rng.choice(np.array([-128, 127, -1, 0, 1], np.int64), size=(n_cb, k))
    else:
        cbs = rng.integers(-128, 128, size=(n_cb, k))
    cbs = cbs.astype(np.int8)
    if bits == 8 and data.draw(st.booleans()):  # as emitted at 8 bits: raw weights, no codebook
        lay = pc.raw_layout(rng.integers(-128, 128, size=shape))
        return lay, lay.values(shape, axis)
    if mode == "tensor":
        lay = pc.PackedLayout(idx.reshape(-1), bits, cbs[0], 0, None, k)
    elif mode == "channel":
        lay = pc.PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1), k, None, k)
    else:
        cmap = rng.integers(0, n_cb, size=n_ch).astype(np.uint8)
        lay = pc.PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1), k, cmap, k)
    return lay, lay.values(shape, axis)


def _bias(data, rng, n):
    kind = data.draw(st.sampled_from(["none", "int16", "small", "large"]))
    if kind == "none":
        return None
    if kind == "int16":  # stored 16 bits wide; the extremes of the range included
        b = rng.integers(-(1 << 15), 1 << 15, size=n).astype(np.int64)
        b[rng.random(n) < 0.2] = -(1 << 15)
        b[rng.random(n) < 0.2] = (1 << 15) - 1
        return b
    lim = (1 << 16) if kind == "small" else (1 << 30)
    return rng.integers(-lim, lim, size=n).astype(np.int64)


def _bias_bits(data, p, bias):
    """p with a stored bias width that holds ``bias`` (the generator's narrowest, or wider)."""
    return dict(p, bias_bits=data.draw(st.sampled_from(
        [w for w in pc.BIAS_WIDTHS if w >= pc.bias_bits_for(bias)])))


def _acc_bound(bias, taps: int) -> int:
    """Bound on |accumulator|: |w| <= 128 (256 with a weights offset: pass 2x taps), |x+io| <= 255."""
    b = 0 if bias is None else int(np.abs(bias).max())
    return b + 255 * 128 * taps


def _geometry(data, in_h, in_w, kh, kw):
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    padding = data.draw(st.sampled_from(["SAME", "VALID"]))
    if pc.out_size("VALID", in_h, kh, sh, dh) < 1 or pc.out_size("VALID", in_w, kw, sw, dw) < 1:
        padding = "SAME"
    oh, ow = pc.out_size(padding, in_h, kh, sh, dh), pc.out_size(padding, in_w, kw, sw, dw)
    return dict(stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, out_h=oh, out_w=ow,
                pad_top=pc.pad_before(sh, dh, in_h, kh, oh), pad_left=pc.pad_before(sw, dw, in_w, kw, ow))


def _poison_unneeded_rows(x, p, oy0, oy1, rng):
    """Rows the kernel must not read for output rows [oy0, oy1) get random garbage."""
    needed = set()
    for oy in range(oy0, oy1):
        for ky in range(p["k_h"]):
            iy = oy * p["stride_h"] - p["pad_top"] + ky * p["dil_h"]
            if 0 <= iy < p["in_h"]:
                needed.add(iy)
    xp = x.copy()
    for iy in range(p["in_h"]):
        if iy not in needed:
            xp[0, iy] = rng.integers(-128, 128, size=xp[0, iy].shape)
    return xp


def _rows(data, oh):
    a, b = sorted([data.draw(st.integers(0, oh)), data.draw(st.integers(0, oh))])
    if data.draw(st.booleans()):
        a, b = 0, oh
    return a, b


# ---------------------------------------------------------------------------------------------
# C kernels vs numpy references


@settings(max_examples=320, **SETTINGS)
@given(data=st.data())
def test_conv2d_packed_matches_reference(data):
    in_h, in_w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    groups = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    # shallow (all filters at once, channel-vectorized) and deep (one filter at a time) paths
    fic = data.draw(st.one_of(st.integers(1, 7), st.integers(8, 20), st.integers(32, 40)))
    # out_c up to 40: 16-, 8- and tail channel blocks of the channel-vectorized path
    in_c, out_c = fic * groups, groups * data.draw(st.one_of(st.integers(1, 5), st.integers(6, 40)))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    p = _geometry(data, in_h, in_w, kh, kw)
    p.update(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=kh, k_w=kw, filter_in_c=fic)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, out_c)
    p.update(_quant(data, out_c, _acc_bound(bias, kh * kw * fic)))
    layout, w = _layout(data, (out_c, kh, kw, fic), 0, out_c)
    x = rng.integers(-128, 128, size=(1, in_h, in_w, in_c)).astype(np.int8)
    node = Node(index=0, op="CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("CONV_2D").reference(node, None, [x, w, bias])[0]
    oy0, oy1 = _rows(data, p["out_h"])
    assert conv_2d.scratch_size(p) == H.scratch_size("conv", conv_2d.struct_fields(p, layout))
    if conv_2d.never_pads(p) and data.draw(st.booleans()):  # as emitted: input offset in the bias
        p, bias = conv_2d.fold_input_offset(p, w, bias)
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    fields = conv_2d.struct_fields(p, layout)
    portable = data.draw(st.booleans())
    if conv_2d.is_shallow(p) and data.draw(st.booleans()):  # decode once, then row by row
        got = H.run_rowwise("conv", p, layout, xp, bias, fields, oy0, oy1, portable=portable)
    else:
        got = H.run_conv("conv", p, layout, xp, bias, fields, oy0, oy1, portable=portable)
    np.testing.assert_array_equal(got, ref[0, oy0:oy1].reshape(-1))


@settings(max_examples=320, **SETTINGS)
@given(data=st.data())
def test_depthwise_conv2d_packed_matches_reference(data):
    in_h, in_w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    in_c = data.draw(st.one_of(st.integers(1, 20), st.just(8)))  # 8: the paired-positions path
    dm = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    out_c = in_c * dm
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    p = _geometry(data, in_h, in_w, kh, kw)
    p.update(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=kh, k_w=kw, depth_multiplier=dm)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, out_c)
    p.update(_quant(data, out_c, _acc_bound(bias, kh * kw)))
    layout, w = _layout(data, (1, kh, kw, out_c), 3, out_c)
    x = rng.integers(-128, 128, size=(1, in_h, in_w, in_c)).astype(np.int8)
    node = Node(index=0, op="DEPTHWISE_CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("DEPTHWISE_CONV_2D").reference(node, None, [x, w, bias])[0]
    oy0, oy1 = _rows(data, p["out_h"])
    assert depthwise_conv_2d.scratch_size(p) == H.scratch_size("dw", depthwise_conv_2d.struct_fields(p, layout))
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    fields = depthwise_conv_2d.struct_fields(p, layout)
    portable = data.draw(st.booleans())
    if data.draw(st.booleans()):
        got = H.run_conv("dw", p, layout, xp, bias, fields, oy0, oy1, portable=portable)
    else:  # decode once, then row by row, as the generated in-place code calls it
        got = H.run_rowwise("dw", p, layout, xp, bias, fields, oy0, oy1, portable=portable)
    np.testing.assert_array_equal(got, ref[0, oy0:oy1].reshape(-1))


@settings(max_examples=320, **SETTINGS)
@given(data=st.data())
def test_fully_connected_packed_matches_reference(data):
    n_in = data.draw(st.one_of(st.integers(1, 80), st.integers(80, 700), st.sampled_from([512, 640, 1024])))
    n_out = data.draw(st.integers(1, 12))
    rows = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, n_out)
    fo = 0 if data.draw(st.booleans()) else -_zp(data)
    q = _quant(data, n_out, _acc_bound(bias, 2 * n_in))
    p = dict(in_features=n_in, out_features=n_out, batches=rows, filter_offset=fo,
             tables=data.draw(st.sampled_from([2, 2, 1, 0])), **q)  # table level: full, compact, none
    layout, w = _layout(data, (n_out, n_in), 0, n_out)
    x = rng.integers(-128, 128, size=(rows, n_in)).astype(np.int8)
    node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0]
    if bias is not None and data.draw(st.booleans()):  # as emitted: input offset folded into the bias
        p, bias = fully_connected.fold_input_offset(p, w, bias)
    p = _bias_bits(data, p, bias)
    got = H.run_fc(p, layout, x, bias, fully_connected.struct_fields(p, layout),
                   portable=data.draw(st.booleans()), null_scratch=data.draw(st.integers(0, 3)) == 0)
    np.testing.assert_array_equal(got, ref.reshape(-1))


@pytest.mark.parametrize("portable", [False, True], ids=["host-simd", "portable"])
def test_fully_connected_every_width_and_layout(portable):
    """Deterministic sweep of the FC fast paths: widths 1..8, per-tensor / per-channel / shared
    codebooks of symmetric int8 values (what the x86 AVX2 path takes: no -128), rows of whole
    8-index groups and not, rows around the 32-weight steps and the 4-row passes, folded input
    offset; against the numpy reference."""
    rng = np.random.default_rng(10)
    cases = 0
    for bits in range(1, 9):
        for mode in ("tensor", "channel", "shared"):
            for n_in, n_out in ((8, 4), (40, 5), (128, 8), (136, 13), (640, 9), (33, 3), (1000, 4)):
                k = 1 << bits
                n_cb = {"tensor": 1, "channel": n_out, "shared": 3}[mode]
                cbs = rng.integers(-127, 128, size=(n_cb, k)).astype(np.int8)
                idx = rng.integers(0, k, size=n_out * n_in)
                if mode == "tensor":
                    lay = pc.PackedLayout(idx, bits, cbs[0], 0, None, k)
                elif mode == "channel":
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k, None, k)
                else:
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k,
                                          rng.integers(0, n_cb, size=n_out).astype(np.uint8), k)
                w = lay.values((n_out, n_in), 0)
                bias = rng.integers(-5000, 5000, size=n_out)
                p = dict(in_features=n_in, out_features=n_out, batches=1, filter_offset=0, input_offset=-3,
                         output_offset=5, act_min=-128, act_max=127,
                         mult=rng.integers(1 << 30, 1 << 31, size=n_out).tolist(),
                         shift=rng.integers(-12, -6, size=n_out).tolist(), requant_per_channel=1)
                x = rng.integers(-128, 128, size=(1, n_in)).astype(np.int8)
                node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
                ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0]
                pf, bf = fully_connected.fold_input_offset(p, w, bias)
                for tables, null_scratch in ((2, False), (1, False), (2, True)):  # full, compact, none
                    pt = dict(pf, tables=tables)
                    got = H.run_fc(pt, lay, x, bf, fully_connected.struct_fields(pt, lay), portable=portable,
                                   null_scratch=null_scratch)
                    np.testing.assert_array_equal(got, ref.reshape(-1), err_msg=f"bits {bits} {mode} {n_in}x{n_out} "
                                                                                f"tables {tables} null {null_scratch}")
                cases += 1
    assert cases == 8 * 3 * 7


def test_fully_connected_x86_narrow_widths_vs_portable():
    """The x86 AVX2 path for widths 1-3 and 5-7 (fc_host_avx2_narrow: shuffle decode, codebooks
    read in place or from a padded copy near the array's end) against the portable kernel and
    the numpy reference: rows of 8..136 weights (around the 32-weight steps, 1 to 5 steps), 1..67
    outputs (the 4-row passes, the single rows at the stream's end, the 64-output requantization
    blocks), codebooks of 2^n and 2^n - 1 entries, per-tensor, per-channel and shared (2 and 20
    codebooks, so that a pass mixes them), symmetric int8 values (what the path takes)."""
    rng = np.random.default_rng(107)
    cases = 0
    for bits in (1, 2, 3, 5, 6, 7):
        for mode, n_cb_shared in (("tensor", 1), ("channel", 0), ("shared", 2), ("shared", 20)):
            for n_in, n_out in ((8, 67), (16, 9), (24, 5), (32, 13), (40, 4), (64, 7), (96, 1), (128, 66),
                                (136, 11)):
                full = 1 << bits
                k = full if (n_in + n_out + cases) % 2 else max(1, full - 1)
                n_cb = {"tensor": 1, "channel": n_out, "shared": n_cb_shared}[mode]
                cbs = rng.integers(-127, 128, size=(n_cb, k)).astype(np.int8)
                idx = rng.integers(0, k, size=n_out * n_in)
                idx[:: max(1, n_in - 1)] = k - 1  # the largest index at both ends of rows
                if mode == "tensor":
                    lay = pc.PackedLayout(idx, bits, cbs[0], 0, None, k)
                elif mode == "channel":
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k, None, k)
                else:
                    cmap = rng.integers(0, n_cb, size=n_out).astype(np.uint8)
                    cmap[-1] = n_cb - 1  # the last codebook (read through the padded copy) in use
                    lay = pc.PackedLayout(idx, bits, cbs.reshape(-1), k, cmap, k)
                w = lay.values((n_out, n_in), 0)
                bias = rng.integers(-20000, 20000, size=n_out)
                p = dict(in_features=n_in, out_features=n_out, batches=1 + cases % 2, input_offset=0,
                         filter_offset=0, output_offset=int(rng.integers(-128, 128)), act_min=-128, act_max=127,
                         mult=rng.integers(1 << 30, 1 << 31, size=n_out).tolist(),
                         shift=rng.integers(-14, -6, size=n_out).tolist(), requant_per_channel=1, tables=0)
                x = rng.integers(-128, 128, size=(p["batches"], n_in)).astype(np.int8)
                x[:, 0] = -128  # |x| = 128 in the sign trick
                node = Node(index=0, op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], params=p)
                ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0].reshape(-1)
                fields = fully_connected.struct_fields(p, lay)
                fast = H.run_fc(p, lay, x, bias, fields, null_scratch=True)
                port = H.run_fc(p, lay, x, bias, fields, portable=True, null_scratch=True)
                msg = f"bits {bits} {mode}/{n_cb} k {k} {n_in}x{n_out}"
                np.testing.assert_array_equal(fast, port, err_msg=msg)
                np.testing.assert_array_equal(fast, ref, err_msg=msg)
                cases += 1
    assert cases == 6 * 4 * 9


# ---------------------------------------------------------------------------------------------
# decoders: fast paths vs generic bitstream reader vs numpy


@settings(max_examples=300, **SETTINGS)
@given(bits=st.integers(1, 8), count=st.integers(0, 300), first=st.integers(0, 70),
       raw=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_unpack_fast_paths_match_generic(bits, count, first, raw, seed):
    rng = np.random.default_rng(seed)
    total = first + count
    idx = rng.integers(0, 1 << bits, size=total)
    data = pack_indices(idx, bits)
    cb = None if raw else rng.integers(-128, 128, size=1 << bits).astype(np.int8)
    expect = idx[first:].astype(np.uint8).view(np.int8) if raw else cb[idx[first:]]
    fast = H.unpack(data, first * bits, bits, cb, count)
    portable = H.unpack(data, first * bits, bits, cb, count, portable=True)
    generic = H.unpack(data, first * bits, bits, cb, count, generic=True)
    np.testing.assert_array_equal(generic, expect)
    np.testing.assert_array_equal(fast, generic)
    np.testing.assert_array_equal(portable, generic)


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_requantize_lanes_matches_tc_requantize(data):
    """The block requantizer (AVX2 on x86 hosts) is bit-exact with the scalar tc_requantize."""
    n = data.draw(st.integers(1, 40))
    per_channel = data.draw(st.booleans())
    acc_st = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-70000, 70000),
                       st.sampled_from([0, -1, 1, (1 << 31) - 1, -(1 << 31)]))
    accs = [data.draw(acc_st) for _ in range(n)]
    m_n = n + 3 if per_channel else 1
    mults = [data.draw(st.one_of(st.integers(0, (1 << 31) - 1), st.sampled_from([0, 1 << 30, (1 << 31) - 1])))
             for _ in range(m_n)]
    shifts = [data.draw(st.integers(-31, 30)) for _ in range(m_n)]
    c0 = data.draw(st.integers(0, 3)) if per_channel else 0
    lo, hi = sorted([data.draw(st.integers(-128, 127)), data.draw(st.integers(-128, 127))])
    zp = data.draw(st.integers(-128, 127))
    for portable in (False, True):
        ffi, L = H.lib(portable=portable)
        a = ffi.new("int32_t[]", accs)
        m = ffi.new("int32_t[]", mults)
        s = ffi.new("int8_t[]", shifts)
        out = ffi.new("int8_t[]", n)
        # keep to inputs whose scalar arithmetic stays defined (no int32 overflow of the
        # requantized value plus the zero point): those are the kernels' operating range
        want = []
        for j in range(n):
            q = c0 + j if per_channel else 0
            v = int(multiply_by_quantized_multiplier(accs[j], mults[q], shifts[q]))
            if not -(1 << 31) <= v + zp < (1 << 31):
                return
            want.append(int(L.tc_test_requantize(accs[j], mults[q], shifts[q], zp, lo, hi)))
        L.tc_requantize_lanes(a, n, m, s, int(per_channel), c0, zp, lo, hi, out)
        assert list(ffi.unpack(out, n)) == want


@pytest.mark.parametrize("n", [0, 31, 32, 33, 64, 100, 257])
def test_unpack4_to_int16_host_path(n):
    """The host 4-bit -> int16 decoder (SSSE3; none in portable builds) equals the generic reader."""
    rng = np.random.default_rng(n)
    idx = rng.integers(0, 16, size=n)
    cb = rng.integers(-128, 128, size=16).astype(np.int8)
    data = pack_indices(idx, 4)
    for portable in (False, True):
        ffi, L = H.lib(portable=portable)
        pk = ffi.new("uint8_t[]", max(len(data), 1))
        ffi.memmove(pk, data, len(data))
        out = ffi.new("int16_t[]", max(n, 1))
        done = L.tc_unpack4_s16_host(pk, ffi.new("int8_t[]", cb.tolist()), n, out)
        assert done % 32 == 0 and done <= n
        if portable:
            assert done == 0
        np.testing.assert_array_equal(np.array(ffi.unpack(out, done), np.int64), cb[idx[:done]])


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130])
def test_packing_edge_lengths(bits, n):
    rng = np.random.default_rng(bits * 1000 + n)
    idx = rng.integers(0, 1 << bits, size=n)
    idx[0], idx[-1] = (1 << bits) - 1, (1 << bits) - 1  # set bits at both ends of the stream
    data = pack_indices(idx, bits)
    assert len(data) == packed_size(n, bits) == (n * bits + 7) // 8
    np.testing.assert_array_equal(unpack_indices(data, bits, n), idx)
    cb = (np.arange(1 << bits) - (1 << (bits - 1))).astype(np.int8)
    for start in sorted({0, 1, n // 2, n - 1}):
        fast = H.unpack(data, start * bits, bits, cb, n - start)
        portable = H.unpack(data, start * bits, bits, cb, n - start, portable=True)
        generic = H.unpack(data, start * bits, bits, cb, n - start, generic=True)
        np.testing.assert_array_equal(generic, cb[idx[start:]])
        np.testing.assert_array_equal(fast, generic)
        np.testing.assert_array_equal(portable, generic)


def test_pack_layout_bit_order():
    # index i at bits [i*b, (i+1)*b), LSB first: 3-bit [5, 2, 7] -> 0b11_010_101, 0b1
    assert pack_indices([5, 2, 7], 3) == bytes([0b11010101, 0b1])
    assert pack_indices([1, 0, 0, 0, 0, 0, 0, 1, 1], 1) == bytes([0b10000001, 0b1])
    assert pack_indices([0xA, 0x3], 4) == bytes([0x3A])


# ---------------------------------------------------------------------------------------------
# handler contract: emitted statements and constants


def test_conv_paths_all_exercised():
    """The property test's shapes reach every conv strategy (guards the strategy above)."""
    base = dict(in_c=20, filter_in_c=20, k_h=3, k_w=3, out_c=5)
    assert conv_2d.shallow_mode(base) == 1
    assert conv_2d.shallow_mode(dict(base, in_c=40, filter_in_c=40)) == 0
    assert conv_2d.shallow_mode(dict(base, in_c=40, filter_in_c=20)) == 0  # groups
    assert conv_2d.shallow_mode(dict(base, in_c=3, filter_in_c=3, k_h=3, k_w=3, out_c=16)) == 1
    assert conv_2d.shallow_mode(dict(base, in_c=7, filter_in_c=7, k_h=4, k_w=4, out_c=30)) == 2
    # int8 filters of an even depth: input-channel pairs on x86 hosts with AVX2
    assert conv_2d.shallow_mode(dict(base, in_c=16, filter_in_c=16, k_h=3, k_w=3, out_c=16)) == 2
    # the all-filters scratch is bounded: a wide shallow layer takes the per-filter path
    wide = dict(base, in_c=3, filter_in_c=3, k_h=7, k_w=7, out_c=512)
    assert conv_2d.shallow_mode(wide) == 0 and conv_2d.scratch_size(wide) < 4096
    # kws conv 0 (10x4 on 1 channel, 64 outputs): int8 filters fit the bound, int16 pairs would not
    kws_conv0 = dict(base, in_c=1, filter_in_c=1, k_h=10, k_w=4, out_c=64)
    assert conv_2d.shallow_mode(kws_conv0) == 2 and conv_2d.scratch_size(kws_conv0) <= 4096 + 3 + 40


@pytest.mark.parametrize("portable", [False, True])
def test_conv_int8_shallow_mode_kws_first_layer(portable):
    """kws_ref_model's first layer geometry (10x4 kernel on 1 channel, 64 outputs, stride 2):
    all filters as int8 (mode 2), full call and row by row."""
    rng = np.random.default_rng(9)
    ih, iw, ic, oc, kh, kw, s = 13, 10, 1, 64, 10, 4, 2
    oh, ow = pc.out_size("SAME", ih, kh, s, 1), pc.out_size("SAME", iw, kw, s, 1)
    p = dict(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=kh, k_w=kw, filter_in_c=ic, stride_h=s, stride_w=s,
             dil_h=1, dil_w=1, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, 1, ih, kh, oh),
             pad_left=pc.pad_before(s, 1, iw, kw, ow), input_offset=83, output_offset=-128, act_min=-128,
             act_max=127, mult=rng.integers(1 << 30, 1 << 31, size=oc).tolist(),
             shift=rng.integers(-10, -5, size=oc).tolist(), requant_per_channel=1)
    assert conv_2d.shallow_mode(p) == 2
    idx = rng.integers(0, 16, size=(oc, kh, kw, ic))
    lay = pc.PackedLayout(idx.reshape(-1), 4, rng.integers(-128, 128, size=16 * oc).astype(np.int8), 16, None, 16)
    w = lay.values((oc, kh, kw, ic), 0)
    x = rng.integers(-128, 128, size=(1, ih, iw, ic)).astype(np.int8)
    bias = rng.integers(-3000, 3000, size=oc)
    node = Node(index=0, op="CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("CONV_2D").reference(node, None, [x, w, bias])[0]
    fields = conv_2d.struct_fields(p, lay)
    assert conv_2d.scratch_size(p) == H.scratch_size("conv", fields)
    got = H.run_conv("conv", p, lay, x, bias, fields, 0, oh, portable=portable)
    np.testing.assert_array_equal(got, ref.reshape(-1))
    got = H.run_rowwise("conv", p, lay, x, bias, fields, 0, oh, portable=portable)
    np.testing.assert_array_equal(got, ref.reshape(-1))


def test_emit_rows_declares_constants_once():
    from tinycluster.emit_context import EmitContext
    from tinycluster.ir import Clustering, Graph, QuantParams, Tensor

    rng = np.random.default_rng(1)
    q = lambda s, z=0: QuantParams(np.array([s], np.float32), np.array([z]))  # noqa: E731
    w = rng.integers(-127, 128, size=(4, 3, 3, 2)).astype(np.int8)
    tensors = [
        Tensor(0, "in", (1, 6, 6, 2), "int8", q(0.05, 3)),
        Tensor(1, "w", w.shape, "int8", QuantParams(np.full(4, 0.01, np.float32), np.zeros(4, int)), data=w),
        Tensor(2, "b", (4,), "int32", q(0.0005), data=np.arange(4, dtype=np.int32)),
        Tensor(3, "out", (1, 6, 6, 4), "int8", q(0.1, -2)),
    ]
    cb = np.array([[-100, -10, 10, 100]], np.int8)
    tensors[1].clustering = Clustering(indices=rng.integers(0, 4, size=w.shape), codebooks=cb, bits=2,
                                       channel_axis=None)
    node = Node(0, "CONV_2D", [0, 1, 2], [3], attrs={"padding": "SAME", "stride_h": 1, "stride_w": 1,
                                                      "dil_h": 1, "dil_w": 1, "activation": "RELU6"})
    g = Graph(tensors, [node], [0], [3])
    h = get_handler("CONV_2D")
    h.resolve(node, g)
    assert node.params["requant_per_channel"] == 0 and len(node.params["mult"]) == 1
    ctx = EmitContext(prefix="m", graph=g)
    ctx.tensor_exprs = {0: "(TC_ARENA + 0)", 3: "(TC_ARENA + 100)"}
    ctx.current_node = node
    s1 = h.emit_rows(node, ctx, "ring", "oy", "oy + 1")
    n_decls = len(ctx.decls)
    s2 = h.emit(node, ctx)
    assert len(ctx.decls) == n_decls  # constants declared once per node
    # a shallow layer (2 input channels): decode at row 0, then rows from the scratch
    assert conv_2d.is_shallow(node.params)
    assert s1[0] == "if ((oy) == 0) {"
    assert s1[1].strip().startswith("(void)tc_conv2d_packed_decode(&m_conv0_params, m_conv0_idx, m_conv0_cb, NULL, ")
    assert s1[3].startswith("tc_conv2d_packed_rows(&m_conv0_params, (TC_ARENA + 0), ")
    assert s1[3].endswith("oy, oy + 1, ring, (int8_t *)0);")
    assert s2[0].startswith("tc_conv2d_packed(&m_conv0_params, (TC_ARENA + 0), m_conv0_idx, m_conv0_cb, NULL, ")
    assert ", 0, 6, (TC_ARENA + 100), " in s2[0]
    roles = {d.role: d.nbytes for d in ctx.decls}
    assert roles["indices"] == packed_size(w.size, 2)
    assert roles["codebook"] == 4
    # the Python mirror of the scratch size equals the C *_get_buffer_size() (shallow path here)
    ffi, L = H.lib()
    layout = pc.packed_layout(node, g, tensors[1], 0, 4)
    ps = H._struct(ffi, "tc_conv_packed_params", conv_2d.struct_fields(node.params, layout))
    # 3x3 filters on 2 input channels, 4 outputs: the Arm form (flag, 12 B per channel, int8
    # filters, a two-position patch) is larger than the portable int16 pairs (3 + 2*3*3*2*4 + 18)
    assert h.scratch_bytes(node, g) == L.tc_conv2d_packed_get_buffer_size(ps) == 3 + 4 + 12 * 4 + 72 + 4 * 20
    assert h.macs(node, g) == 6 * 6 * 4 * 3 * 3 * 2


def test_depthwise_emit_rows_decodes_at_row_zero():
    from tinycluster.emit_context import EmitContext
    from tinycluster.ir import Graph, QuantParams, Tensor

    rng = np.random.default_rng(2)
    q = lambda s, z=0: QuantParams(np.array([s], np.float32), np.array([z]))  # noqa: E731
    w = rng.integers(-127, 128, size=(1, 3, 3, 8)).astype(np.int8)
    tensors = [Tensor(0, "in", (1, 5, 5, 8), "int8", q(0.05, 3)),
               Tensor(1, "w", w.shape, "int8", QuantParams(np.full(8, 0.01, np.float32), np.zeros(8, int), 3),
                      data=w),
               Tensor(2, "out", (1, 5, 5, 8), "int8", q(0.1, -2))]
    node = Node(4, "DEPTHWISE_CONV_2D", [0, 1, -1], [2], attrs={"padding": "SAME", "stride_h": 1, "stride_w": 1,
                                                                 "dil_h": 1, "dil_w": 1, "activation": "NONE",
                                                                 "depth_multiplier": 1})
    g = Graph(tensors, [node], [0], [2])
    h = get_handler("DEPTHWISE_CONV_2D")
    h.resolve(node, g)
    ctx = EmitContext(prefix="m", graph=g)
    ctx.tensor_exprs = {0: "IN", 2: "OUT"}
    ctx.scratch_exprs = {4: "SCR"}
    ctx.current_node = node
    lines = h.emit_rows(node, ctx, "RING", "oy", "oy + 1")
    assert lines[0] == "if ((oy) == 0) {"
    assert lines[1].strip().startswith("tc_depthwise_conv2d_packed_decode(&m_dw4_params, m_dw4_idx, NULL, NULL, SCR)")
    assert lines[3].startswith("tc_depthwise_conv2d_packed_rows(&m_dw4_params, IN, NULL, ")
    assert lines[3].endswith("oy, oy + 1, RING, SCR);")
    full = h.emit(node, ctx)
    assert full[0].endswith(", 0, 5, OUT, SCR);") and full[0].startswith("tc_depthwise_conv2d_packed(")
    # unclustered 8-bit weights: stored raw, no codebook
    assert not [d for d in ctx.decls if d.role == "codebook"]


# ---------------------------------------------------------------------------------------------
# numpy references vs TensorFlow Lite Micro on single-op models


def _tflm_models():
    """(name, keras layer factory, input shape) of small single-op models."""
    return [
        ("conv_same_s2_relu6", lambda L: L.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu6"),
         (7, 6, 3)),
        ("conv_valid_dil2", lambda L: L.Conv2D(4, 3, padding="valid", dilation_rate=2), (9, 8, 2)),
        ("conv_1x1_relu", lambda L: L.Conv2D(6, 1, activation="relu"), (4, 5, 8)),
        ("dw_same_s2_dm2", lambda L: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2), (7, 7, 3)),
        ("dw_valid_relu6", lambda L: L.DepthwiseConv2D((2, 3), padding="valid", activation="relu6"), (6, 5, 4)),
        ("fc_relu", lambda L: L.Dense(10, activation="relu"), (37,)),
        ("fc_rows", lambda L: L.Dense(7), (3, 16)),
    ]


@pytest.fixture(scope="module")
def tflm_models(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    out = {}
    d = tmp_path_factory.mktemp("tflm_models")
    for i, (name, make, shape) in enumerate(_tflm_models()):
        tf.keras.utils.set_random_seed(100 + i)
        inp = tf.keras.Input(shape=shape, batch_size=1)
        model = tf.keras.Model(inp, make(tf.keras.layers)(inp))
        # non-trivial biases
        for v in model.weights:
            if "bias" in v.name:
                v.assign(np.random.default_rng(i).normal(0, 0.3, v.shape).astype(np.float32))
        rng = np.random.default_rng(i)

        def rep():
            for _ in range(16):
                yield [rng.normal(0, 1, (1,) + shape).astype(np.float32)]

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        p = d / f"{name}.tflite"
        p.write_bytes(conv.convert())
        out[name] = p
    return out


@pytest.mark.parametrize("name", [m[0] for m in _tflm_models()])
def test_references_match_tflite_micro(tflm_models, name):
    from tflite_micro.python.tflite_micro import runtime

    from tinycluster.importers.tflite import load_tflite, resolve_graph

    path = tflm_models[name]
    g = resolve_graph(load_tflite(path))
    weighted = [n for n in g.nodes if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(weighted) == 1, [n.op for n in g.nodes]
    node = weighted[0]
    assert len(g.nodes) == 1 or node.op == "FULLY_CONNECTED"
    h = get_handler(node.op)
    interp = runtime.Interpreter.from_bytes(path.read_bytes(), arena_size=256 * 1024)
    rng = np.random.default_rng(7)
    tin = g.tensors[g.inputs[0]]
    mism = 0
    for i in range(12):
        if i == 0:
            x = np.full(tin.shape, -128, np.int8)
        elif i == 1:
            x = np.full(tin.shape, 127, np.int8)
        else:
            x = rng.integers(-128, 128, size=tin.shape).astype(np.int8)
        interp.set_input(x, 0)
        interp.invoke()
        want = interp.get_output(0)
        ins = [x if k == 0 else (g.tensors[t].data if t >= 0 else None) for k, t in enumerate(node.inputs)]
        got = h.reference(node, g, ins)[0]
        mism += int(np.count_nonzero(got.reshape(-1) != want.reshape(-1)))
    assert mism == 0
    # and the C kernel on the same layer (8-bit layout of the original weights) equals TFLM too
    wt = g.tensors[node.inputs[1]]
    layout = pc.packed_layout(node, g, wt, h.weight_channel_axis, int(wt.shape[h.weight_channel_axis]))
    bias = g.tensors[node.inputs[2]].data if len(node.inputs) > 2 and node.inputs[2] >= 0 else None
    x = rng.integers(-128, 128, size=tin.shape).astype(np.int8)
    interp.set_input(x, 0)
    interp.invoke()
    want = interp.get_output(0).reshape(-1)
    p = node.params
    if node.op == "FULLY_CONNECTED":
        got = H.run_fc(p, layout, x, bias, fully_connected.struct_fields(p, layout))
        if bias is not None:  # and as emitted, with the input offset folded into the bias
            pf, bf = fully_connected.fold_input_offset(p, layout.values(tuple(wt.shape), 0), bias)
            np.testing.assert_array_equal(H.run_fc(pf, layout, x, bf, fully_connected.struct_fields(pf, layout)),
                                          want)
    elif node.op == "CONV_2D":
        got = H.run_conv("conv", p, layout, x, bias, conv_2d.struct_fields(p, layout), 0, p["out_h"])
        if conv_2d.never_pads(p):  # and as emitted, with the input offset folded into the bias
            pf, bf = conv_2d.fold_input_offset(p, layout.values(tuple(wt.shape), 0), bias)
            np.testing.assert_array_equal(
                H.run_conv("conv", pf, layout, x, bf, conv_2d.struct_fields(pf, layout), 0, p["out_h"]), want)
    else:
        got = H.run_conv("dw", p, layout, x, bias, depthwise_conv_2d.struct_fields(p, layout), 0, p["out_h"])
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# sanitizers: the kernels as a standalone executable under -fsanitize=address,undefined, every
# buffer heap-allocated at its exact size (so any read past packed weights, codebooks, input,
# scratch or the output rows is reported), results compared with the numpy references


def _c_vals(values) -> str:
    v = [str(int(x)) for x in np.asarray(values).reshape(-1)]
    return ", ".join(v) if v else "0"


def _sanitizer_cases():
    rng = np.random.default_rng(2024)
    cases = []

    def layout_for(shape, axis, n_ch, bits, k, mode, lo=-128):
        if mode == "raw":
            lay = pc.raw_layout(rng.integers(-128, 128, size=shape))
            return lay, lay.values(shape, axis)
        idx = rng.integers(0, k, size=shape)
        n_cb = {"tensor": 1, "channel": n_ch, "shared": 2}[mode]
        cbs = rng.integers(lo, 128, size=(n_cb, k)).astype(np.int8)
        if mode == "tensor":
            lay = pc.PackedLayout(idx.reshape(-1), bits, cbs[0], 0, None, k)
        elif mode == "channel":
            lay = pc.PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1), k, None, k)
        else:
            lay = pc.PackedLayout(idx.reshape(-1), bits, cbs.reshape(-1), k,
                                  rng.integers(0, n_cb, size=n_ch).astype(np.uint8), k)
        return lay, lay.values(shape, axis)

    def quant(n, per_channel=True):
        m = int(per_channel) * (n - 1) + 1
        return dict(input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
                    act_min=-128, act_max=127, mult=rng.integers(1 << 30, 1 << 31, size=m).tolist(),
                    shift=rng.integers(-12, 0, size=m).tolist(), requant_per_channel=int(per_channel))

    conv_specs = [  # in_h, in_w, in_c, fic, out_c, kh, kw, stride, dil, padding, bits, k, mode, rows
        (7, 6, 20, 20, 5, 3, 3, 1, 1, "SAME", 4, 16, "channel", (0, 7)),
        (9, 8, 3, 3, 19, 3, 2, 2, 1, "SAME", 3, 7, "tensor", (1, 4)),
        (9, 9, 12, 4, 6, 2, 3, 1, 2, "VALID", 2, 3, "shared", (0, 7)),
        (5, 5, 16, 16, 8, 1, 1, 1, 1, "VALID", 8, 256, "tensor", (2, 3)),
        (6, 7, 40, 40, 6, 3, 3, 2, 1, "SAME", 4, 13, "shared", (1, 3)),
        (5, 4, 64, 64, 5, 1, 1, 1, 1, "VALID", 6, 40, "channel", (0, 5)),
        (6, 6, 40, 40, 4, 3, 3, 1, 1, "SAME", 8, 256, "raw", (0, 6)),
        (12, 6, 1, 1, 64, 10, 4, 2, 1, "SAME", 4, 16, "channel", (0, 6)),
    ]
    for (ih, iw, ic, fic, oc, kh, kw, s, d, pad, bits, k, mode, rows) in conv_specs:
        oh, ow = pc.out_size(pad, ih, kh, s, d), pc.out_size(pad, iw, kw, s, d)
        p = dict(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=kh, k_w=kw, filter_in_c=fic, stride_h=s, stride_w=s,
                 dil_h=d, dil_w=d, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, d, ih, kh, oh),
                 pad_left=pc.pad_before(s, d, iw, kw, ow), **quant(oc))
        lay, w = layout_for((oc, kh, kw, fic), 0, oc, bits, k, mode)
        rows = (rows[0], min(rows[1], oh))
        cases.append(("conv", p, lay, w, rows))
    dw_specs = [(8, 7, 20, 1, 3, 3, 1, 1, "SAME", 4, 16, "channel"), (6, 6, 4, 2, 3, 3, 2, 1, "SAME", 1, 2, "tensor"),
                (9, 9, 8, 1, 3, 3, 1, 2, "VALID", 5, 31, "shared"), (7, 9, 8, 1, 3, 3, 1, 1, "SAME", 4, 15, "channel")]
    for (ih, iw, ic, dm, kh, kw, s, d, pad, bits, k, mode) in dw_specs:
        oc = ic * dm
        oh, ow = pc.out_size(pad, ih, kh, s, d), pc.out_size(pad, iw, kw, s, d)
        p = dict(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=kh, k_w=kw, depth_multiplier=dm, stride_h=s, stride_w=s,
                 dil_h=d, dil_w=d, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, d, ih, kh, oh),
                 pad_left=pc.pad_before(s, d, iw, kw, ow), **quant(oc))
        lay, w = layout_for((1, kh, kw, oc), 3, oc, bits, k, mode)
        cases.append(("dw", p, lay, w, (0, oh)))
    fc_specs = [(640, 9, 1, 4, 16, "tensor", False), (300, 5, 2, 4, 15, "channel", True),
                (131, 7, 1, 3, 8, "shared", True), (200, 4, 3, 2, 4, "tensor", False), (77, 3, 1, 1, 2, "channel", True),
                (150, 6, 2, 8, 256, "raw", True)]
    for (n_in, n_out, rows, bits, k, mode, per_ch) in fc_specs:
        p = dict(in_features=n_in, out_features=n_out, batches=rows, filter_offset=0, **quant(n_out, per_ch))
        lay, w = layout_for((n_out, n_in), 0, n_out, bits, k, mode)
        cases.append(("fc", p, lay, w, (0, rows)))
    # what the x86 AVX2 paths take (input offset folded, codebooks without -128): every width,
    # the last rows of the stream (whole steps would read past it)
    for (n_in, n_out, bits, k, mode) in [(8, 9, 7, 127, "tensor"), (40, 6, 7, 128, "shared"), (128, 7, 6, 63, "channel"),
                                         (96, 5, 5, 32, "shared"), (24, 10, 3, 7, "tensor"), (64, 5, 4, 16, "tensor"),
                                         (48, 6, 2, 3, "channel"), (32, 5, 1, 2, "shared"), (136, 5, 8, 256, "tensor")]:
        p = dict(in_features=n_in, out_features=n_out, batches=1, filter_offset=0, **dict(quant(n_out), input_offset=0))
        lay, w = layout_for((n_out, n_in), 0, n_out, bits, k, mode, lo=-127)
        cases.append(("fc", p, lay, w, (0, 1)))
    return cases


def _sanitizer_source(cases, rng):
    from tinycluster.packing import pack_indices as pack

    lines = ["#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", '#include "tc_kernels.h"',
             "static void *dup(const void *src, size_t n) { void *p = malloc(n ? n : 1); memcpy(p, src, n); return p; }",
             "static void dump(const int8_t *o, int n) { int i; for (i = 0; i < n; i++) printf(\"%d \", o[i]); printf(\"\\n\"); }",
             "int main(void) {"]
    inputs = []
    for i, (kind, p, lay, w, (oy0, oy1)) in enumerate(cases):
        if kind == "fc":
            x = rng.integers(-128, 128, size=(p["batches"], p["in_features"])).astype(np.int8)
            ctype, fields = "tc_fc_packed_params", fully_connected.struct_fields(p, lay)
            n_out = p["batches"] * p["out_features"]
        else:
            x = rng.integers(-128, 128, size=(1, p["in_h"], p["in_w"], p["in_c"])).astype(np.int8)
            mod = conv_2d if kind == "conv" else depthwise_conv_2d
            ctype = "tc_conv_packed_params" if kind == "conv" else "tc_dw_packed_params"
            fields = mod.struct_fields(p, lay)
            n_out = (oy1 - oy0) * p["out_w"] * p["out_c"]
        bias = rng.integers(-5000, 5000, size=len(p["mult"]) if p["requant_per_channel"] else
                            (p["out_features"] if kind == "fc" else p["out_c"]))
        inputs.append((x, bias))
        packed = np.frombuffer(pack(lay.indices, lay.bits), np.uint8)
        cb = lay.codebook_array() if not lay.raw else np.zeros(0, np.int8)
        inits = ", ".join(f".{n} = {int(v)}" for n, _, v in fields)
        lines += [
            "  {",
            f"    static const {ctype} prm = {{ {inits} }};",
            f"    static const int8_t x_[] = {{ {_c_vals(x)} }};",
            f"    static const uint8_t pk_[] = {{ {_c_vals(packed)} }};",
            f"    static const int8_t cb_[] = {{ {_c_vals(cb)} }};",
            f"    static const int32_t b_[] = {{ {_c_vals(bias)} }};",
            f"    static const int32_t m_[] = {{ {_c_vals(p['mult'])} }};",
            f"    static const int8_t s_[] = {{ {_c_vals(p['shift'])} }};",
            "    int8_t *x = dup(x_, sizeof x_); uint8_t *pk = dup(pk_, sizeof pk_);",
            "    int8_t *cb = " + ("NULL; (void)cb_;" if lay.raw else "dup(cb_, sizeof cb_);"),
            "    int32_t *b = dup(b_, sizeof b_); int32_t *m = dup(m_, sizeof m_); int8_t *s = dup(s_, sizeof s_);",
            f"    int8_t *out = malloc({n_out});",
        ]
        if lay.cmap is not None:
            lines += [f"    static const uint8_t map_[] = {{ {_c_vals(lay.cmap)} }};",
                      "    uint8_t *map = dup(map_, sizeof map_);"]
        else:
            lines += ["    uint8_t *map = NULL;"]
        if kind == "fc":
            lines += ["    int32_t ns = tc_fully_connected_packed_get_buffer_size(&prm);",
                      "    int8_t *scr_block = malloc((size_t)ns + 1), *scr = scr_block + 1;",
                      "    tc_fully_connected_packed(&prm, x, pk, cb, map, NULL, b, m, s, out, scr);",
                      "    free(scr_block);"]
        else:
            fn = "tc_conv2d_packed" if kind == "conv" else "tc_depthwise_conv2d_packed"
            lines += [f"    int32_t ns = {fn}_get_buffer_size(&prm);",
                      "    int8_t *scr_block = malloc((size_t)ns + 1), *scr = scr_block + 1;",
                      f"    {fn}(&prm, x, pk, cb, map, b, m, s, {oy0}, {oy1}, out, scr);",
                      "    free(scr_block);"]
        lines += [f"    dump(out, {n_out});",
                  "    free(x); free(pk); free(cb); free(b); free(m); free(s); free(out); free(map);", "  }"]
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n", inputs


@pytest.mark.parametrize("portable", [False, True], ids=["host-simd", "portable"])
def test_kernels_clean_under_sanitizers(tmp_path, portable):
    from tinycluster.builders.host import build_executable
    from tinycluster.paths import RUNTIME_SRC

    if sys.platform != "linux":
        pytest.skip("sanitizer runtime checked on Linux hosts")
    cases = _sanitizer_cases()
    src, inputs = _sanitizer_source(cases, np.random.default_rng(5))
    (tmp_path / "san.c").write_text(src)
    exe = build_executable([tmp_path / "san.c"] + [RUNTIME_SRC / s for s in H.SOURCES], tmp_path / "san",
                           sanitize=True, opt="-O1", extra_cflags=["-DTC_PORTABLE"] if portable else [])
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr[-3000:]
    outs = r.stdout.strip().split("\n")
    assert len(outs) == len(cases)
    for (kind, p, lay, w, (oy0, oy1)), (x, bias), line in zip(cases, inputs, outs):
        got = np.array([int(v) for v in line.split()], np.int64)
        op = {"fc": "FULLY_CONNECTED", "conv": "CONV_2D", "dw": "DEPTHWISE_CONV_2D"}[kind]
        node = Node(index=0, op=op, inputs=[0, 1, 2], outputs=[3], params=p)
        ref = get_handler(op).reference(node, None, [x, w, bias])[0]
        want = ref.reshape(-1) if kind == "fc" else ref[0, oy0:oy1].reshape(-1)
        np.testing.assert_array_equal(got, want, err_msg=f"{kind} {p}")


@pytest.mark.parametrize("shape", [(9, 7, 16, 16, 3, 1), (9, 9, 16, 24, 3, 2), (8, 8, 32, 34, 3, 1),
                                   (6, 5, 8, 17, 1, 1), (7, 7, 3, 16, 3, 2)])
def test_host_simd_conv_shapes(shape):
    """Model-like conv shapes through the host (x86 AVX2 / SSE2) paths and the portable build
    against the numpy reference: int8 input-channel pairs (even depth, int8 filters), int16
    pairs, deep two-channel blocks with odd channel counts, pointwise, first layers."""
    ih, iw, ic, oc, k, s = shape
    rng = np.random.default_rng(ic * oc + k)
    oh, ow = pc.out_size("SAME", ih, k, s, 1), pc.out_size("SAME", iw, k, s, 1)
    p = dict(in_h=ih, in_w=iw, in_c=ic, out_c=oc, k_h=k, k_w=k, filter_in_c=ic, stride_h=s, stride_w=s,
             dil_h=1, dil_w=1, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, 1, ih, k, oh),
             pad_left=pc.pad_before(s, 1, iw, k, ow), input_offset=128, output_offset=-3, act_min=-128,
             act_max=127, requant_per_channel=1, mult=list(rng.integers(1 << 30, 1 << 31, oc)),
             shift=list(rng.integers(-12, -6, oc)))
    layout = pc.PackedLayout(rng.integers(0, 16, size=oc * k * k * ic), 4,
                             rng.integers(-127, 128, 16).astype(np.int8), 0, None, 16)
    w = layout.values((oc, k, k, ic), 0)
    bias = rng.integers(-3000, 3000, oc)
    x = rng.integers(-128, 128, size=(1, ih, iw, ic)).astype(np.int8)
    node = Node(index=0, op="CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("CONV_2D").reference(node, None, [x, w, bias])[0].reshape(-1)
    fields = conv_2d.struct_fields(p, layout)
    for portable in (False, True):
        np.testing.assert_array_equal(H.run_conv("conv", p, layout, x, bias, fields, 0, oh, portable=portable), ref)
        if conv_2d.is_shallow(p):
            np.testing.assert_array_equal(H.run_rowwise("conv", p, layout, x, bias, fields, 0, oh,
                                                        portable=portable), ref)


@pytest.mark.parametrize("shape", [(9, 7, 64, 3, 1), (8, 8, 40, 3, 2), (6, 5, 27, 3, 1), (7, 7, 8, 3, 1),
                                   (5, 9, 8, 3, 2)])
def test_host_simd_depthwise_shapes(shape):
    """Model-like depthwise shapes (multiplier 1) through the host (x86 AVX2) path and the portable
    build against the numpy reference: several 16-channel blocks, 16 + 8 + tail, the 8-channel
    two-position blocks (stride 1) and 8 channels at stride 2; one call and decode + row by row."""
    ih, iw, c, k, s = shape
    rng = np.random.default_rng(c * k + s)
    oh, ow = pc.out_size("SAME", ih, k, s, 1), pc.out_size("SAME", iw, k, s, 1)
    p = dict(in_h=ih, in_w=iw, in_c=c, out_c=c, k_h=k, k_w=k, depth_multiplier=1, stride_h=s, stride_w=s,
             dil_h=1, dil_w=1, out_h=oh, out_w=ow, pad_top=pc.pad_before(s, 1, ih, k, oh),
             pad_left=pc.pad_before(s, 1, iw, k, ow), input_offset=128, output_offset=-3, act_min=-128,
             act_max=127, requant_per_channel=1, mult=list(rng.integers(1 << 30, 1 << 31, c)),
             shift=list(rng.integers(-10, -4, c)))
    layout = pc.PackedLayout(rng.integers(0, 16, size=k * k * c), 4,
                             np.array([-128] + list(rng.integers(-127, 128, 15)), dtype=np.int8), 0, None, 16)
    w = layout.values((1, k, k, c), 3)
    bias = rng.integers(-3000, 3000, c)
    x = rng.integers(-128, 128, size=(1, ih, iw, c)).astype(np.int8)
    x[0, 0, 0, :] = -128  # x + io = 0 and the extreme products
    node = Node(index=0, op="DEPTHWISE_CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    ref = get_handler("DEPTHWISE_CONV_2D").reference(node, None, [x, w, bias])[0].reshape(-1)
    fields = depthwise_conv_2d.struct_fields(p, layout)
    for portable in (False, True):
        np.testing.assert_array_equal(H.run_conv("dw", p, layout, x, bias, fields, 0, oh, portable=portable), ref)
        np.testing.assert_array_equal(H.run_rowwise("dw", p, layout, x, bias, fields, 0, oh, portable=portable), ref)

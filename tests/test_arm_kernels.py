"""The packed-weight kernels as Cortex-M runs them == the portable kernels on the host, byte for byte.

One ELF per core family holds the runtime cross-compiled as a board build compiles it (board
profile flags; the Arm fast paths selected inside each kernel file at compile time):
ARMv7E-M with DSP (cortex-m4 profile: M4, and the code family of M7/M33) and ARMv6-M (rp2040
profile: M0+). Random cases (hypothesis; the strategies of test_kernels_packed.py: shapes,
strides, paddings, dilations, groups, depth multipliers, widths 1..8, codebook sizes, per-tensor /
shared / per-channel codebooks, raw 8-bit weights, extreme requantization and zero points, row
ranges with unneeded input rows poisoned, misaligned scratch) run in unicorn by calling the
kernels directly, and are compared with the host build of the same sources with -DTC_PORTABLE
(the reference code path) and with the numpy reference. Every call also checks the guard bytes
around the output and the stack it used (<= 2 KiB per kernel call, measured by painting the
emulator's stack region).
"""
from __future__ import annotations

import ctypes
import functools
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import packed_harness as H  # noqa: E402
from conftest import require_tool  # noqa: E402
from test_kernels_packed import (_acc_bound, _bias, _bias_bits, _geometry, _layout, _poison_unneeded_rows,  # noqa: E402
                                 _quant, _rows, _zp)

from tinycluster.emit_context import CTYPES  # noqa: E402
from tinycluster.ir import Node  # noqa: E402
from tinycluster.ops import _packed_common as pc  # noqa: E402
from tinycluster.ops import conv_2d, depthwise_conv_2d, fully_connected, get_handler  # noqa: E402
from tinycluster.packing import pack_indices  # noqa: E402

FAMILIES = {"armv7em-dsp": "cortex-m4", "armv6m": "rp2040"}
STACK_LIMIT = 2048
GUARD = 16
KERNELS = ["tc_fully_connected_packed", "tc_conv2d_packed", "tc_conv2d_packed_decode", "tc_conv2d_packed_rows",
           "tc_depthwise_conv2d_packed", "tc_depthwise_conv2d_packed_decode", "tc_depthwise_conv2d_packed_rows",
           "tc_unpack_lut", "tc_unpack_lut_generic", "tc_conv2d_packed_get_buffer_size",
           "tc_depthwise_conv2d_packed_get_buffer_size", "tc_fully_connected_packed_get_buffer_size"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.function_scoped_fixture])
STATS = {}


@functools.lru_cache(maxsize=None)
def _machine(family: str, out_dir: str):
    from tinycluster.boards import load_board
    from tinycluster.builders import kernel_elf as KE
    board = load_board(FAMILIES[family])
    rt = KE.runtime_objects(board)
    elf = KE.link([], [KE.archive(rt, f"tc-{board.name}")], board, Path(out_dir) / f"arm_kernels_{board.name}.elf",
                  keep=KERNELS)
    return KE.KernelMachine(elf, board)


@pytest.fixture(scope="module", params=list(FAMILIES))
def arm(request, tmp_path_factory):
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn", reason="unicorn (PyPI) runs the Cortex-M code")
    pytest.importorskip("elftools", reason="pyelftools reads the ELF")
    m = _machine(request.param, str(tmp_path_factory.mktemp(request.param)))
    STATS.setdefault(request.param, {"cases": 0, "max_stack": 0})
    return request.param, m


def _struct_bytes(fields) -> bytes:
    S = type("S", (ctypes.Structure,), {"_fields_": [(n, CTYPES[t][0]) for n, t, _ in fields]})
    s = S(**{n: int(v) for n, _, v in fields})
    return bytes(s)


def _weights(m, layout):
    pk = m.put(pack_indices(layout.indices, layout.bits) or b"\0")
    cb = 0 if layout.raw else m.put(np.asarray(layout.codebook_array(), np.int8))
    cmap = 0 if layout.cmap is None else m.put(np.asarray(layout.cmap, np.uint8))
    return pk, cb, cmap


def _requant(m, p, bias):
    b = 0 if bias is None else m.put(pc.bias_storage(bias, p.get("bias_bits", 32))[1])
    return b, m.put(np.asarray(p["mult"], np.int32)), m.put(np.asarray(p["shift"], np.int8))


def _out(m, n):
    a = m.alloc(n + 2 * GUARD)
    m.write(a, bytes([0x5A]) * (n + 2 * GUARD))
    return a


def _read_out(m, a, n):
    raw = m.read(a, n + 2 * GUARD)
    assert raw[:GUARD] == bytes([0x5A]) * GUARD and raw[GUARD + n:] == bytes([0x5A]) * GUARD, \
        "the kernel wrote outside its output rows"
    return np.frombuffer(raw[GUARD:GUARD + n], np.int8)


def _call(arm, fn, *args):
    family, m = arm
    m.call(fn, *args, stack=True)
    st_ = STATS[family]
    st_["max_stack"] = max(st_["max_stack"], m.stack_used)
    assert m.stack_used <= STACK_LIMIT, f"{fn} used {m.stack_used} B of stack on {family} (limit {STACK_LIMIT} B)"
    return m


def _ret(m) -> int:
    import unicorn.arm_const as A
    v = m.uc.reg_read(A.UC_ARM_REG_R0)
    return v - (1 << 32) if v >= (1 << 31) else v


@functools.lru_cache(maxsize=None)
def _fc_takes_scratch() -> bool:
    """Whether tc_fully_connected_packed's prototype (tc_kernels.h) ends in a scratch argument."""
    from tinycluster.paths import RUNTIME_INCLUDE
    text = (RUNTIME_INCLUDE / "tc_kernels.h").read_text()
    proto = re.search(r"void\s+tc_fully_connected_packed\s*\(([^)]*)\)", text).group(1)
    return "scratch" in proto


def arm_fc(arm, p, layout, x, bias, fields, null_scratch=False, flash_tables=False):
    """flash_tables: pass the precomputed pair tables (fully_connected.pair_tables; NULL where the
    layout takes none), as the generated code does where the planner granted them."""
    _, m = arm
    m.reset_heap()
    ps = m.put(_struct_bytes(fields))
    pk, cb, cmap = _weights(m, layout)
    tabs = fully_connected.pair_tables(layout) if flash_tables else None
    pt = 0 if tabs is None else m.put(tabs)
    b, mu, sh = _requant(m, p, bias)
    xin = m.put(np.asarray(x, np.int8))
    n = p["batches"] * p["out_features"]
    out = _out(m, n)
    m.call("tc_fully_connected_packed_get_buffer_size", ps)
    nscr = _ret(m)
    args = [ps, xin, pk, cb, cmap, pt, b, mu, sh, out + GUARD]
    if _fc_takes_scratch() and null_scratch:
        args.append(0)  # NULL: the table-free paths (the planner found no room for the tables)
    elif _fc_takes_scratch():
        scr = m.alloc(nscr + 1) + 1  # misaligned by one byte on purpose
        m.write(scr, bytes([0xA5]) * nscr)  # poisoned: the kernel must write before it reads
        args.append(scr)
    else:
        assert nscr == 0
    _call(arm, "tc_fully_connected_packed", *args)
    return _read_out(m, out, n)


def arm_conv(arm, kind, p, layout, x, bias, fields, oy0, oy1, rowwise):
    _, m = arm
    m.reset_heap()
    ps = m.put(_struct_bytes(fields))
    pk, cb, cmap = _weights(m, layout)
    b, mu, sh = _requant(m, p, bias)
    xin = m.put(np.asarray(x, np.int8))
    pre = "tc_conv2d_packed" if kind == "conv" else "tc_depthwise_conv2d_packed"
    m.call(f"{pre}_get_buffer_size", ps)
    nscr = _ret(m)
    assert nscr == (conv_2d.scratch_size(p) if kind == "conv" else depthwise_conv_2d.scratch_size(p))
    scr = m.alloc(nscr + 1) + 1  # misaligned by one byte on purpose
    row = p["out_w"] * p["out_c"]
    if not rowwise:
        out = _out(m, (oy1 - oy0) * row)
        _call(arm, pre, ps, xin, pk, cb, cmap, b, mu, sh, oy0, oy1, out + GUARD, scr)
        return _read_out(m, out, (oy1 - oy0) * row)
    _call(arm, f"{pre}_decode", ps, pk, cb, cmap, scr)
    rows = []
    for oy in range(oy0, oy1):
        out = _out(m, row)
        _call(arm, f"{pre}_rows", ps, xin, b, mu, sh, oy, oy + 1, out + GUARD, scr)
        rows.append(_read_out(m, out, row))
    return np.concatenate(rows) if rows else np.zeros(0, np.int8)


def _count(arm):
    STATS[arm[0]]["cases"] += 1


# ---------------------------------------------------------------------------------------------

@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_arm_conv2d_matches_portable(arm, data):
    in_h, in_w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    groups = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    fic = data.draw(st.one_of(st.integers(1, 7), st.integers(8, 20), st.integers(32, 40)))
    in_c, out_c = fic * groups, groups * data.draw(st.one_of(st.integers(1, 5), st.integers(6, 40)))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    if data.draw(st.booleans()):  # pointwise layers (the 1x1 fast path) often
        kh = kw = 1
    p = _geometry(data, in_h, in_w, kh, kw)
    p.update(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=kh, k_w=kw, filter_in_c=fic)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias = _bias(data, rng, out_c)
    p.update(_quant(data, out_c, _acc_bound(bias, kh * kw * fic)))
    layout, w = _layout(data, (out_c, kh, kw, fic), 0, out_c)
    x = rng.integers(-128, 128, size=(1, in_h, in_w, in_c)).astype(np.int8)
    node = Node(index=0, op="CONV_2D", inputs=[0, 1, 2], outputs=[3], params=p)
    oy0, oy1 = _rows(data, p["out_h"])
    ref = get_handler("CONV_2D").reference(node, None, [x, w, bias])[0][0, oy0:oy1].reshape(-1)
    if conv_2d.never_pads(p) and data.draw(st.booleans()):  # as emitted: input offset in the bias
        p, bias = conv_2d.fold_input_offset(p, w, bias)
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    fields = conv_2d.struct_fields(p, layout)
    rowwise = conv_2d.is_shallow(p) and data.draw(st.booleans())
    host = (H.run_rowwise if rowwise else H.run_conv)("conv", p, layout, xp, bias, fields, oy0, oy1, portable=True)
    got = arm_conv(arm, "conv", p, layout, xp, bias, fields, oy0, oy1, rowwise)
    np.testing.assert_array_equal(host, ref)
    np.testing.assert_array_equal(got, host)
    _count(arm)


@settings(max_examples=110, **SETTINGS)
@given(data=st.data())
def test_arm_depthwise_matches_portable(arm, data):
    in_h, in_w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    in_c = data.draw(st.one_of(st.integers(1, 20), st.just(8), st.sampled_from([16, 32, 64])))
    dm = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    out_c = in_c * dm
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    if data.draw(st.booleans()):  # 3x3, the common depthwise filter
        kh = kw = 3
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
    p = _bias_bits(data, p, bias)
    xp = _poison_unneeded_rows(x, p, oy0, oy1, rng)
    fields = depthwise_conv_2d.struct_fields(p, layout)
    rowwise = data.draw(st.booleans())
    host = (H.run_rowwise if rowwise else H.run_conv)("dw", p, layout, xp, bias, fields, oy0, oy1, portable=True)
    got = arm_conv(arm, "dw", p, layout, xp, bias, fields, oy0, oy1, rowwise)
    np.testing.assert_array_equal(host, ref[0, oy0:oy1].reshape(-1))
    np.testing.assert_array_equal(got, host)
    _count(arm)


@settings(max_examples=110, **SETTINGS)
@given(data=st.data())
def test_arm_fully_connected_matches_portable(arm, data):
    n_in = data.draw(st.one_of(st.integers(1, 80), st.integers(80, 700), st.sampled_from([64, 128, 512, 640])))
    n_out = data.draw(st.one_of(st.integers(1, 12), st.integers(13, 40)))
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
    ref = get_handler("FULLY_CONNECTED").reference(node, None, [x, w, bias])[0].reshape(-1)
    if bias is not None and data.draw(st.booleans()):  # as emitted: input offset folded into the bias
        p, bias = fully_connected.fold_input_offset(p, w, bias)
    p = _bias_bits(data, p, bias)
    fields = fully_connected.struct_fields(p, layout)
    null_scratch = data.draw(st.integers(0, 3)) == 0  # NULL scratch: the table-free paths
    # flash pair tables (the DSP cores read them; ARMv6-M ignores them) at any scratch level
    flash = fully_connected.pair_tables(layout) is not None and data.draw(st.booleans())
    host = H.run_fc(p, layout, x, bias, fields, portable=True)
    got = arm_fc(arm, p, layout, x, bias, fields, null_scratch, flash_tables=flash)
    STATS[arm[0]]["fc_flash_tables"] = STATS[arm[0]].get("fc_flash_tables", 0) + int(flash)
    np.testing.assert_array_equal(host, ref)
    np.testing.assert_array_equal(got, host)
    _count(arm)


@settings(max_examples=60, **SETTINGS)
@given(bits=st.integers(1, 8), count=st.integers(0, 300), first=st.integers(0, 70), raw=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_arm_unpack_matches_portable(arm, bits, count, first, raw, seed):
    _, m = arm
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 1 << bits, size=first + count)
    data = pack_indices(idx, bits)
    cb = None if raw else rng.integers(-128, 128, size=1 << bits).astype(np.int8)
    host = H.unpack(data, first * bits, bits, cb, count, portable=True)
    for fn in ("tc_unpack_lut", "tc_unpack_lut_generic"):
        m.reset_heap()
        pk = m.put(data or b"\0")
        cba = 0 if cb is None else m.put(cb)
        out = _out(m, count)
        _call(arm, fn, pk, first * bits, bits, cba, count, out + GUARD)
        np.testing.assert_array_equal(_read_out(m, out, count), host)
    _count(arm)


def test_arm_case_count_per_family():
    """At least 300 random cases per core family per run: the property tests above run for each
    family (module fixture) with these example counts (hypothesis runs exactly max_examples)."""
    tests = [test_arm_conv2d_matches_portable, test_arm_depthwise_matches_portable,
             test_arm_fully_connected_matches_portable, test_arm_unpack_matches_portable]
    total = sum(t._hypothesis_internal_use_settings.max_examples for t in tests)
    assert total >= 300, total
    for family, s in STATS.items():  # the families this process ran: stack within the limit
        assert s["max_stack"] <= STACK_LIMIT

"""C kernels of the non-weighted ops vs their numpy references (hypothesis; ADD and MUL also as
Cortex-M4 and M0+ run them, in unicorn), the numpy references (and the C kernels) vs TensorFlow
Lite Micro on small converted models, and a sanitizer run of the kernels.

Ops: ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D, SOFTMAX, LOGISTIC, TANH, RELU, RELU6, QUANTIZE,
DEQUANTIZE, PAD, MEAN, CONCATENATION, RESHAPE (runtime_c/src/tc_*_s8.c, tinycluster/ops/*.py).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinycluster.errors import TinyClusterError
from tinycluster.ir import Graph, Node, QuantParams, Tensor
from tinycluster.ops import get_handler
from tinycluster.ops import add as add_mod
from tinycluster.ops import concatenation as concat_mod
from tinycluster.ops import logistic as logistic_mod
from tinycluster.ops import mean as mean_mod
from tinycluster.ops import mul as mul_mod
from tinycluster.ops import pad as pad_mod
from tinycluster.ops import pool as pool_mod
from tinycluster.ops import quantize as quantize_mod
from tinycluster.ops import relu as relu_mod
from tinycluster.ops import softmax as softmax_mod
from tinycluster.ops import tanh as tanh_mod
from tinycluster.paths import RUNTIME_INCLUDE, RUNTIME_SRC

KERNELS = ["tc_add_s8", "tc_mul_s8", "tc_avgpool_s8", "tc_maxpool_s8", "tc_softmax_s8", "tc_logistic_s8",
           "tc_tanh_s8", "tc_requant_s8", "tc_clamp_s8", "tc_pad_s8", "tc_mean_s8", "tc_concat_s8", "tc_copy_s8",
           "tc_dequantize_s8_f32", "tc_quantize_f32_s8"]
SOURCES = [RUNTIME_SRC / f"{k}.c" for k in KERNELS]
N = int(os.environ.get("TC_HYPOTHESIS_EXAMPLES", "150"))  # examples per property (11 properties)
HSET = settings(max_examples=N, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


# ---- C module ---------------------------------------------------------------------------------
def _ops_section() -> str:
    """The "Other ops" section of tc_kernels.h (structs + prototypes, no macros): the cffi cdef."""
    text = (RUNTIME_INCLUDE / "tc_kernels.h").read_text()
    start = text.index("/* ===== Other ops")
    end = text.index("#ifdef __cplusplus", start)
    return text[start:end]


@pytest.fixture(scope="module")
def clib():
    """The kernels as a cffi module. Built under a file lock: with pytest-xdist two workers would
    otherwise build the same cached module at once and one could load a half-written .so."""
    from tinycluster.builders.host import build_host_module
    from tinycluster.paths import CACHE_DIR

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "tc_ops_build.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (non-POSIX)
            pass
        return build_host_module(SOURCES, _ops_section(), header='#include "tc_kernels.h"', name_hint="tc_ops")


def c_struct(ffi, ctype, fields, params):
    return ffi.new(f"{ctype} *", {n: int(params[n]) for n, _ in fields})


def c_ptr(ffi, arr, ctype="int8_t"):
    return ffi.cast(f"{ctype} *", ffi.from_buffer(arr))


def run_c(clib, node, graph, inputs, inplace=False):
    """Run one node through its C kernel exactly as the emitted code calls it; inplace: the
    output buffer is input 0's buffer (as the planner's elementwise in-place execution)."""
    ffi, lib = clib
    p = node.params
    ot = graph.tensors[node.outputs[0]]
    out = np.zeros(ot.shape, dtype=np.float32 if ot.dtype == "float32" else np.int8)
    ins = [np.ascontiguousarray(np.asarray(x)) for x in inputs]
    i8 = [np.ascontiguousarray(x.astype(np.int8)) if x.dtype != np.float32 else x for x in ins]
    if inplace:
        assert i8[0].dtype == out.dtype and i8[0].size == out.size
        out = i8[0].reshape(ot.shape)
    o = c_ptr(ffi, out, "float" if out.dtype == np.float32 else "int8_t")
    op = node.op
    if op in ("ADD", "MUL"):
        mod, ct, fn = (add_mod, "tc_add_params", lib.tc_add_s8) if op == "ADD" else \
            (mul_mod, "tc_mul_params", lib.tc_mul_s8)
        fn(c_struct(ffi, ct, mod.FIELDS, p), c_ptr(ffi, i8[0]), c_ptr(ffi, i8[1]), o)
    elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        fn = lib.tc_avgpool_s8 if op == "AVERAGE_POOL_2D" else lib.tc_maxpool_s8
        fn(c_struct(ffi, "tc_pool_params", pool_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "SOFTMAX":
        lib.tc_softmax_s8(c_struct(ffi, "tc_softmax_params", softmax_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "LOGISTIC":
        lib.tc_logistic_s8(c_struct(ffi, "tc_logistic_params", logistic_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "TANH":
        lib.tc_tanh_s8(c_struct(ffi, "tc_tanh_params", tanh_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op in ("RELU", "RELU6", "QUANTIZE") and p.get("kind") in ("requant", "clamp"):
        if p["kind"] == "requant":
            lib.tc_requant_s8(c_struct(ffi, "tc_requant_params", relu_mod.REQUANT_FIELDS, p), c_ptr(ffi, i8[0]), o)
        else:
            lib.tc_clamp_s8(c_struct(ffi, "tc_clamp_params", relu_mod.CLAMP_FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "QUANTIZE":
        lib.tc_quantize_f32_s8(c_struct(ffi, "tc_quantize_params", quantize_mod.FLOAT_FIELDS, p),
                               c_ptr(ffi, ins[0].astype(np.float32), "float"), o)
    elif op == "DEQUANTIZE":
        lib.tc_dequantize_s8_f32(c_struct(ffi, "tc_dequantize_params", quantize_mod.FLOAT_FIELDS, p),
                                 c_ptr(ffi, i8[0]), o)
    elif op == "PAD":
        lib.tc_pad_s8(c_struct(ffi, "tc_pad_params", pad_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "MEAN":
        lib.tc_mean_s8(c_struct(ffi, "tc_mean_params", mean_mod.FIELDS, p), c_ptr(ffi, i8[0]), o)
    elif op == "CONCATENATION":
        for k, part in enumerate(p["parts"]):
            lib.tc_concat_s8(c_struct(ffi, "tc_concat_params", concat_mod.FIELDS, part), c_ptr(ffi, i8[k]), o)
    elif op == "RESHAPE":
        lib.tc_copy_s8(int(p["size"]), c_ptr(ffi, i8[0]), o)
    else:
        raise AssertionError(f"no C dispatch for {op}")
    return out


# ---- graph construction -----------------------------------------------------------------------
def qt(tid, shape, scale, zp, dtype="int8", data=None):
    q = QuantParams(np.array([scale], dtype=np.float32), np.array([zp], dtype=np.int64))
    return Tensor(id=tid, name=f"t{tid}", shape=tuple(int(d) for d in shape), dtype=dtype, quant=q, data=data)


def single_node(op, tensors, inputs, outputs, attrs=None):
    node = Node(index=0, op=op, inputs=list(inputs), outputs=list(outputs), attrs=dict(attrs or {}), name="n0")
    g = Graph(tensors=list(tensors), nodes=[node], inputs=[t for t in inputs if tensors[t].data is None],
              outputs=list(outputs), source="", name="t")
    return g, node


def resolved(op, tensors, inputs, outputs, attrs=None):
    g, node = single_node(op, tensors, inputs, outputs, attrs)
    try:
        get_handler(op).resolve(node, g)
    except TinyClusterError as e:
        msg = str(e)
        assert "\n" not in msg and f"operator 0 ({op})" in msg, msg  # one line, names the op
        assume(False)
    return g, node


def check(clib, g, node, inputs, inplace=None):
    """C == reference; elementwise in-place ops are also run in place when input 0 has the
    output's size (every second call, chosen by `inplace` or by the data)."""
    want = get_handler(node.op).reference(node, g, inputs)[0]
    h = get_handler(node.op)
    can = h.inplace == "elementwise" and np.asarray(inputs[0]).size == want.size and \
        np.asarray(inputs[0]).dtype == want.dtype
    if inplace is None:
        inplace = can and int(np.asarray(inputs[0]).view(np.uint8).sum()) % 2 == 0
    got = run_c(clib, node, g, inputs, inplace=inplace and can)
    if want.dtype == np.float32:
        assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), (node.op, node.params)
    else:
        assert want.dtype == np.int8 and want.shape == got.shape
        bad = np.flatnonzero(want.reshape(-1) != got.reshape(-1))
        assert bad.size == 0, f"{node.op} {node.params}: {bad.size} mismatches, first at {bad[:5]}: " \
                              f"ref {want.reshape(-1)[bad[:5]]} C {got.reshape(-1)[bad[:5]]}"


# ---- strategies -------------------------------------------------------------------------------
scales = st.floats(min_value=-5.0, max_value=1.5).map(lambda e: float(np.float32(10.0 ** e)))
zps = st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127))
acts = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])


def int8_data(draw, shape, extreme=True):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    mode = draw(st.sampled_from(["uniform", "uniform", "min", "max", "narrow"])) if extreme else "uniform"
    if mode == "min":
        return np.full(shape, -128, np.int8)
    if mode == "max":
        return np.full(shape, 127, np.int8)
    if mode == "narrow":
        c = int(rng.integers(-128, 128))
        return np.clip(c + rng.integers(-3, 4, size=shape), -128, 127).astype(np.int8)
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


@st.composite
def broadcast_shapes(draw):
    rank = draw(st.integers(1, 4))
    out = [draw(st.integers(1, 5)) for _ in range(rank)]

    def sub():
        r = draw(st.integers(1, rank))
        return [d if draw(st.booleans()) else 1 for d in out[rank - r:]]

    a, b = sub(), sub()
    if draw(st.booleans()):
        a = list(out)
    full = list(np.broadcast_shapes(tuple(a), tuple(b)))
    return a, b, full


# ---- properties: C == numpy reference ---------------------------------------------------------
@HSET
@given(st.data())
def test_add_c_matches_reference(clib, data):
    d = data.draw
    a, b, o = d(broadcast_shapes())
    ts = [qt(0, a, d(scales), d(zps)), qt(1, b, d(scales), d(zps)), qt(2, o, d(scales), d(zps))]
    g, node = resolved("ADD", ts, [0, 1], [2], {"activation": d(acts)})
    check(clib, g, node, [int8_data(d, a), int8_data(d, b)])


@HSET
@given(st.data())
def test_add_c_same_shapes_matches_reference(clib, data):
    """Equal shapes (no broadcast) of 8 to 300 elements: the x86 AVX2 path (eight lanes, then
    the scalar tail) against the reference, in place every second call."""
    d = data.draw
    shape = (1, d(st.integers(1, 6)), d(st.integers(1, 10)), d(st.integers(8, 5 * 8 + 3)))
    ts = [qt(0, shape, d(scales), d(zps)), qt(1, shape, d(scales), d(zps)), qt(2, shape, d(scales), d(zps))]
    g, node = resolved("ADD", ts, [0, 1], [2], {"activation": d(acts)})
    check(clib, g, node, [int8_data(d, shape), int8_data(d, shape)])


@HSET
@given(st.data())
def test_mul_c_matches_reference(clib, data):
    d = data.draw
    a, b, o = d(broadcast_shapes())
    ts = [qt(0, a, d(scales), d(zps)), qt(1, b, d(scales), d(zps)), qt(2, o, d(scales), d(zps))]
    g, node = resolved("MUL", ts, [0, 1], [2], {"activation": d(acts)})
    check(clib, g, node, [int8_data(d, a), int8_data(d, b)])


# ---- ADD / MUL as Cortex-M runs them (unicorn) --------------------------------------------------
ARM_BOARDS = ["cortex-m4", "cortex-m0plus"]  # ARMv7E-M DSP at -O2, ARMv6-M at -Os (board profiles)
ARM_EXAMPLES = max(N // 3, 10)  # per board
ARM_HARNESS = r"""
#include "tc_kernels.h"
tc_add_params PA;
tc_mul_params PM;
int8_t IN1[640], IN2[640], OUT[16 + 640 + 16];
void tc_harness_entry(void) {}
void run_add(void) { tc_add_s8(&PA, IN1, IN2, OUT + 16); }
void run_mul(void) { tc_mul_s8(&PM, IN1, IN2, OUT + 16); }
"""


@pytest.fixture(scope="module", params=ARM_BOARDS)
def arm_ops(request):
    """tc_add_s8 / tc_mul_s8 cross-compiled with a board's flags, in unicorn."""
    from conftest import require_tool
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn", reason="unicorn (PyPI) runs the Cortex-M code")
    from arm_harness import build_machine
    return build_machine(request.param, ARM_HARNESS, ["tc_add_s8.c", "tc_mul_s8.c"])


def _c_struct_bytes(fields, params) -> bytes:
    """A params struct as the C compiler lays it out (natural alignment, as on Arm EABI)."""
    import ctypes

    from tinycluster.emit_context import CTYPES
    S = type("S", (ctypes.Structure,), {"_fields_": [(n, CTYPES[t][0]) for n, t in fields]})
    return bytes(S(**{n: int(params[n]) for n, _ in fields}))


@settings(max_examples=ARM_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(st.data())
def test_add_mul_on_cortex_m_match_reference(arm_ops, data):
    """Broadcasting ADD / MUL (the tc_bcast_rows walk and the no-broadcast loop) on Cortex-M give
    the numpy reference's bytes and write nothing outside the output."""
    from arm_harness import read, write
    d = data.draw
    op = d(st.sampled_from(["ADD", "MUL"]))
    a, b, o = d(broadcast_shapes())
    ts = [qt(0, a, d(scales), d(zps)), qt(1, b, d(scales), d(zps)), qt(2, o, d(scales), d(zps))]
    g, node = resolved(op, ts, [0, 1], [2], {"activation": d(acts)})
    x1, x2 = int8_data(d, a), int8_data(d, b)
    want = get_handler(op).reference(node, g, [x1, x2])[0].reshape(-1)
    mod, var = (add_mod, "PA") if op == "ADD" else (mul_mod, "PM")
    m, n = arm_ops, want.size
    write(m, var, _c_struct_bytes(mod.FIELDS, node.params))
    write(m, "IN1", x1.tobytes())
    write(m, "IN2", x2.tobytes())
    write(m, "OUT", bytes([0x5A]) * (n + 32))
    m.call("run_" + op.lower(), limit=50_000_000)
    raw = np.frombuffer(read(m, "OUT", n + 32), np.int8)
    assert np.all(raw[:16] == 0x5A) and np.all(raw[16 + n:] == 0x5A), "kernel wrote outside its output"
    assert np.array_equal(raw[16:16 + n], want), (op, a, b, node.params)


@HSET
@given(st.data(), st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]))
def test_pool_c_matches_reference(clib, data, op):
    d = data.draw
    n, h, w, c = d(st.integers(1, 2)), d(st.integers(1, 9)), d(st.integers(1, 9)), d(st.integers(1, 4))
    fh, fw, sh, sw = d(st.integers(1, 4)), d(st.integers(1, 4)), d(st.integers(1, 3)), d(st.integers(1, 3))
    padding = d(st.sampled_from(["SAME", "VALID"]))
    oh, ow = pool_mod.out_size(padding, h, fh, sh), pool_mod.out_size(padding, w, fw, sw)
    assume(oh >= 1 and ow >= 1)
    s, z = d(scales), d(zps)
    ts = [qt(0, (n, h, w, c), s, z), qt(1, (n, oh, ow, c), s, z)]
    attrs = dict(padding=padding, stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw, activation=d(acts))
    g, node = resolved(op, ts, [0], [1], attrs)
    check(clib, g, node, [int8_data(d, (n, h, w, c))])


@HSET
@given(st.data())
def test_softmax_c_matches_reference(clib, data):
    d = data.draw
    shape = [d(st.integers(1, 4)) for _ in range(d(st.integers(0, 2)))] + [d(st.integers(1, 40))]
    beta = d(st.sampled_from([1.0, 1.0, 0.5, 2.0, 1e-3, 40.0]))
    ts = [qt(0, shape, d(scales), d(zps)), qt(1, shape, 1.0 / 256, -128)]
    g, node = resolved("SOFTMAX", ts, [0], [1], {"beta": float(np.float32(beta))})
    check(clib, g, node, [int8_data(d, shape)])


@HSET
@given(st.data(), st.sampled_from(["LOGISTIC", "TANH"]))
def test_sigmoid_tanh_c_matches_reference(clib, data, op):
    d = data.draw
    shape = [d(st.integers(1, 300))]
    ts = [qt(0, shape, d(scales), d(zps)), qt(1, shape, 1.0 / 256 if op == "LOGISTIC" else 1.0 / 128,
                                             -128 if op == "LOGISTIC" else 0)]
    g, node = resolved(op, ts, [0], [1])
    x = np.arange(-128, 128, dtype=np.int8) if d(st.booleans()) else int8_data(d, shape)
    if x.shape != tuple(shape):
        g.tensors[0].shape = g.tensors[1].shape = x.shape
        get_handler(op).resolve(node, g)
    check(clib, g, node, [x])


@HSET
@given(st.data(), st.sampled_from(["RELU", "RELU6", "QUANTIZE"]))
def test_requant_clamp_c_matches_reference(clib, data, op):
    d = data.draw
    shape = [d(st.integers(1, 8)) for _ in range(d(st.integers(1, 3)))]
    sx = d(scales)
    so = d(st.one_of(st.just(sx), scales))
    ts = [qt(0, shape, sx, d(zps)), qt(1, shape, so, d(zps))]
    g, node = resolved(op, ts, [0], [1])
    check(clib, g, node, [int8_data(d, shape)])


@HSET
@given(st.data())
def test_float_quantize_dequantize_c_matches_reference(clib, data):
    d = data.draw
    n = d(st.integers(1, 64))
    s, z = d(scales), d(zps)
    rng = np.random.default_rng(d(st.integers(0, 2 ** 32 - 1)))
    ts = [Tensor(id=0, name="f", shape=(n,), dtype="float32"), qt(1, (n,), s, z)]
    g, node = resolved("QUANTIZE", ts, [0], [1])
    x = (rng.standard_normal(n) * s * d(st.sampled_from([1.0, 50.0, 300.0]))).astype(np.float32)
    x[: n // 4] = np.round(x[: n // 4] / np.float32(s) * 2) / 2 * np.float32(s)  # near ties
    check(clib, g, node, [x])
    ts2 = [qt(0, (n,), s, z), Tensor(id=1, name="f", shape=(n,), dtype="float32")]
    g2, node2 = resolved("DEQUANTIZE", ts2, [0], [1])
    check(clib, g2, node2, [int8_data(d, (n,))])


@HSET
@given(st.data())
def test_pad_c_matches_reference(clib, data):
    d = data.draw
    rank = d(st.integers(1, 4))
    shape = [d(st.integers(1, 5)) for _ in range(rank)]
    pads = np.array([[d(st.integers(0, 3)), d(st.integers(0, 3))] for _ in range(rank)], dtype=np.int32)
    out = [s + int(p.sum()) for s, p in zip(shape, pads)]
    z = d(zps)
    ts = [qt(0, shape, 0.1, z), Tensor(id=1, name="pads", shape=(rank, 2), dtype="int32", data=pads),
          qt(2, out, 0.1, d(st.one_of(st.just(z), zps)))]
    g, node = resolved("PAD", ts, [0, 1], [2])
    check(clib, g, node, [int8_data(d, shape)])


@HSET
@given(st.data())
def test_mean_c_matches_reference(clib, data):
    d = data.draw
    rank = d(st.integers(1, 4))
    shape = [d(st.integers(1, 6)) for _ in range(rank)]
    axes = sorted(set(d(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank))))
    keep = d(st.booleans())
    red = {a % rank for a in axes}
    out = [1 if k in red else s for k, s in enumerate(shape) if keep or k not in red] or [1]
    sx, zx = d(scales), d(zps)
    same = d(st.booleans())
    ts = [qt(0, shape, sx, zx), Tensor(id=1, name="axis", shape=(len(axes),), dtype="int32",
                                       data=np.array(axes, np.int32)),
          qt(2, out, sx if same else d(scales), zx if same else d(zps))]
    g, node = resolved("MEAN", ts, [0, 1], [2], {"keep_dims": keep})
    check(clib, g, node, [int8_data(d, shape)])


@HSET
@given(st.data())
def test_concatenation_c_matches_reference(clib, data):
    d = data.draw
    rank = d(st.integers(1, 4))
    base = [d(st.integers(1, 4)) for _ in range(rank)]
    axis = d(st.integers(-rank, rank - 1))
    k = d(st.integers(1, 4))
    sizes = [d(st.integers(1, 4)) for _ in range(k)]
    shapes = []
    for s in sizes:
        sh = list(base)
        sh[axis % rank] = s
        shapes.append(sh)
    out = list(base)
    out[axis % rank] = sum(sizes)
    ts = [qt(i, sh, 0.05, 3) for i, sh in enumerate(shapes)] + [qt(k, out, 0.05, 3)]
    g, node = resolved("CONCATENATION", ts, list(range(k)), [k], {"axis": axis, "activation": "NONE"})
    check(clib, g, node, [int8_data(d, sh) for sh in shapes])


@HSET
@given(st.data())
def test_reshape_copy_c_matches_reference(clib, data):
    d = data.draw
    shape = [d(st.integers(1, 6)) for _ in range(d(st.integers(1, 4)))]
    out = [int(np.prod(shape))]
    g, node = resolved("RESHAPE", [qt(0, shape, 0.1, 0), qt(1, out, 0.1, 0)], [0], [1])
    check(clib, g, node, [int8_data(d, shape)])


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("op,tensors,inputs,attrs,needle", [
    ("SOFTMAX", [qt(0, (1, 4), 0.1, 0), qt(1, (1, 4), 0.1, 0)], [0], {"beta": 1.0}, "1/256"),
    ("LOGISTIC", [qt(0, (4,), 0.1, 0), qt(1, (4,), 1 / 256, 0)], [0], {}, "-128"),
    ("CONCATENATION", [qt(0, (1, 4), 0.1, 0), qt(1, (1, 8), 0.1, 0)], [0, 0], {"axis": 1, "activation": "RELU"},
     "activation"),
    ("ADD", [qt(0, (1, 4), 1.0, 0), qt(1, (1, 4), 1.0, 0), qt(2, (1, 4), 1e-7, 0)], [0, 1], {"activation": "NONE"},
     "multiplier"),
    ("ADD", [qt(0, (2, 4), 1.0, 0), qt(1, (3, 4), 1.0, 0), qt(2, (2, 4), 1.0, 0)], [0, 1], {"activation": "NONE"},
     "broadcast"),
    ("CONCATENATION", [qt(0, (1, 4), 0.1, 0), qt(1, (1, 4), 0.2, 0), qt(2, (1, 8), 0.1, 0)], [0, 1],
     {"axis": 1, "activation": "NONE"}, "differs from the output"),
    ("AVERAGE_POOL_2D", [qt(0, (1, 4, 4, 1), 0.1, 0), qt(1, (1, 2, 2, 1), 0.1, 1)], [0],
     dict(padding="VALID", stride_h=2, stride_w=2, filter_h=2, filter_w=2, activation="NONE"), "equal"),
])
def test_bad_parameters_give_one_line_errors(op, tensors, inputs, attrs, needle):
    out = len(tensors) - 1
    g, node = single_node(op, tensors, inputs, [out], attrs)
    g.source = "m.tflite"
    with pytest.raises(TinyClusterError) as ei:
        get_handler(op).resolve(node, g)
    msg = str(ei.value)
    assert msg.startswith("m.tflite: operator 0 (" + op + "):") and "\n" not in msg and needle in msg, msg


def test_handlers_declare_inplace_and_no_scratch():
    assert get_handler("RESHAPE").inplace == "alias"
    for op in ("ADD", "MUL", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE"):
        assert get_handler(op).inplace == "elementwise", op
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "MEAN", "CONCATENATION", "DEQUANTIZE"):
        assert get_handler(op).inplace == "none", op


def test_emit_declares_params_and_calls_kernel():
    from tinycluster.emit_context import EmitContext

    ts = [qt(0, (1, 4, 4, 3), 0.1, 1), qt(1, (3,), 0.2, -3, data=np.arange(3, dtype=np.int8)),
          qt(2, (1, 4, 4, 3), 0.3, 5)]
    g, node = single_node("ADD", ts, [0, 1], [2], {"activation": "RELU"})
    get_handler("ADD").resolve(node, g)
    ctx = EmitContext(prefix="m", graph=g)
    ctx.tensor_exprs = {0: "(TC_ARENA + 0)", 2: "(TC_ARENA + 48)"}
    ctx.current_node = node
    lines = get_handler("ADD").emit(node, ctx)
    assert lines == ["tc_add_s8(&m_n0_add, (TC_ARENA + 0), m_n0_in1, (TC_ARENA + 48));"]
    texts = {dd.ident: dd.text for dd in ctx.decls}
    assert "static const tc_add_params m_n0_add = {" in texts["m_n0_add"]
    # input 2, shape (3,), is broadcast along dims 1 and 2 of the (1, 4, 4, 3) output (bits 1, 2)
    assert ".a_bcast = 0" in texts["m_n0_add"] and ".b_bcast = 6" in texts["m_n0_add"]
    assert ctx.bytes_by("flash", role="params") == 44  # sizeof(tc_add_params)
    assert texts["m_n0_in1"].startswith("static const int8_t m_n0_in1[3]")


# ---- TFLite Micro ties the references to the reference interpreter ----------------------------
def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        from tflite_micro.python.tflite_micro import runtime as tflm  # noqa: F401
    except ImportError as e:  # pragma: no cover
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"TensorFlow / tflite-micro required in CI: {e}")
        pytest.skip(f"TensorFlow / tflite-micro not installed: {e}")
    return tf


def _convert(tf, fn, shapes, ranges, in_float=False, out_float=False):
    rng = np.random.default_rng(0)
    f = tf.function(fn, input_signature=[tf.TensorSpec(s, tf.float32) for s in shapes])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for _ in range(24):
            yield [(rng.standard_normal(s) * r).astype(np.float32) for s, r in zip(shapes, ranges)]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.float32 if in_float else tf.int8
    conv.inference_output_type = tf.float32 if out_float else tf.int8
    return conv.convert()


TFLM_CASES = {
    # name: (function, input shapes, calibration std per input, expected ops, flags)
    "avgpool_same": (lambda x: tf_.nn.avg_pool2d(x, 3, 2, "SAME"), [(1, 9, 9, 3)], [1.0], {"AVERAGE_POOL_2D"}, {}),
    "avgpool_valid": (lambda x: tf_.nn.avg_pool2d(x, (3, 2), (2, 3), "VALID"), [(2, 9, 11, 5)], [2.0],
                      {"AVERAGE_POOL_2D"}, {}),
    "maxpool_relu": (lambda x: tf_.nn.relu(tf_.nn.max_pool2d(x, 3, 2, "SAME")), [(1, 7, 7, 3)], [1.0],
                     {"MAX_POOL_2D"}, {}),
    "add": (lambda x, y: x + y, [(1, 4, 4, 3), (1, 4, 4, 3)], [1.0, 7.0], {"ADD"}, {}),
    "add_broadcast_relu": (lambda x, y: tf_.nn.relu(x + y), [(1, 4, 4, 3), (1, 1, 4, 1)], [1.0, 0.1], {"ADD"}, {}),
    "mul_broadcast": (lambda x, y: x * y, [(2, 4, 1, 3), (1, 4, 5, 1)], [3.0, 0.5], {"MUL"}, {}),
    "mul_relu": (lambda x, y: tf_.nn.relu(x * y), [(1, 4, 4, 3), (1, 4, 4, 3)], [2.0, 2.0], {"MUL"}, {}),
    "softmax": (lambda x: tf_.nn.softmax(x), [(3, 10)], [4.0], {"SOFTMAX"}, {}),
    "logistic": (lambda x: tf_.sigmoid(x), [(1, 256)], [5.0], {"LOGISTIC"}, {}),
    "tanh": (lambda x: tf_.tanh(x), [(1, 256)], [2.0], {"TANH"}, {}),
    "relu": (lambda x: tf_.nn.relu(x), [(1, 256)], [1.0], {"RELU"}, {}),
    "relu6": (lambda x: tf_.nn.relu6(x), [(1, 256)], [5.0], {"RELU6"}, {}),
    "pad": (lambda x: tf_.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]), [(1, 4, 4, 3)], [1.0], {"PAD"}, {}),
    "mean_hw": (lambda x: tf_.reduce_mean(x, axis=[1, 2], keepdims=True), [(1, 5, 5, 8)], [1.0], {"MEAN"}, {}),
    "mean_last": (lambda x: tf_.reduce_mean(x, axis=[-1]), [(1, 6, 7)], [3.0], {"MEAN"}, {}),
    "mean_3_axes": (lambda x: tf_.reduce_mean(x, axis=[0, 1, 2]), [(2, 3, 4, 5)], [1.0], {"MEAN"}, {}),
    "mean_3_axes_keep": (lambda x: tf_.reduce_mean(x, axis=[1, 2, 3], keepdims=True), [(2, 3, 4, 5)], [1.0],
                         {"MEAN"}, {}),
    "concat_requantize": (lambda x, y: tf_.concat([tf_.sigmoid(x), y * 5.0], axis=-1), [(1, 8), (1, 8)],
                          [1.0, 1.0], {"CONCATENATION", "QUANTIZE", "LOGISTIC"}, {}),
    "reshape": (lambda x: tf_.reshape(x, (1, 48)) * 2.0, [(1, 4, 4, 3)], [1.0], {"RESHAPE"}, {}),
    "float_io": (lambda x: tf_.nn.softmax(x), [(1, 10)], [3.0], {"QUANTIZE", "DEQUANTIZE"},
                 {"in_float": True, "out_float": True}),
}
tf_ = None


def _node(g, op):
    return next(n for n in g.nodes if n.op == op)


def _io(g, op, ins=(), out=None):
    """Quantization overrides {tensor id: (scale, zero_point)} for inputs/outputs of the first `op` node."""
    n = _node(g, op)
    d = {n.inputs[k]: v for k, v in enumerate(ins) if v is not None}
    if out is not None:
        d[n.outputs[0]] = out
    return d


def _same_as_input(g, op):
    n = _node(g, op)
    q = g.tensors[n.inputs[0]].quant
    return {n.outputs[0]: (float(q.scale[0]), int(q.zero_point[0]))}


# Patched variants: the converted model with its quantization (or softmax beta) overwritten in the
# flatbuffer, to reach extreme parameters and the code paths a converter does not produce.
TFLM_PATCHED = {
    "mean_same_quantization": ("mean_hw", lambda g: _same_as_input(g, "MEAN"), None),
    "add_extreme": ("add", lambda g: _io(g, "ADD", [(0.003, -128), (0.9, 127)], (0.05, 127)), None),
    "add_broadcast_extreme": ("add_broadcast_relu", lambda g: _io(g, "ADD", [(2e-4, 127), (1.5, -128)], (0.01, -128)),
                              None),
    "mul_extreme": ("mul_broadcast", lambda g: _io(g, "MUL", [(1e-3, 127), (20.0, -128)], (0.01, -128)), None),
    "mul_tiny_multiplier": ("mul_broadcast", lambda g: _io(g, "MUL", [(1e-4, 0), (1e-3, 5)], (3.0, -7)), None),
    "logistic_large_scale": ("logistic", lambda g: _io(g, "LOGISTIC", [(0.4, -100)]), None),
    "logistic_tiny_scale": ("logistic", lambda g: _io(g, "LOGISTIC", [(1e-4, 50)]), None),
    "tanh_large_scale": ("tanh", lambda g: _io(g, "TANH", [(0.9, 127)]), None),
    "tanh_tiny_scale": ("tanh", lambda g: _io(g, "TANH", [(3e-4, -128)]), None),
    "relu_upscale": ("relu", lambda g: _io(g, "RELU", [(1.0, 0)], (0.01, -5)), None),
    "relu_downscale": ("relu", lambda g: _io(g, "RELU", [(0.003, -128)], (0.5, -128)), None),
    "relu6_output_quant_ignored": ("relu6", lambda g: _io(g, "RELU6", [(0.01, -128)], (0.1, 20)), None),
    "relu6_small_scale": ("relu6", lambda g: _io(g, "RELU6", [(0.2, 100)]), None),
    "softmax_beta": ("softmax", lambda g: _io(g, "SOFTMAX", [(0.5, 127)]), 0.25),
    "softmax_large_scale": ("softmax", lambda g: _io(g, "SOFTMAX", [(10.0, -128)]), None),
    "avgpool_scale_within_1e-6": ("avgpool_same", lambda g: _io(g, "AVERAGE_POOL_2D", [(0.1, -128)],
                                                                 (0.1 + 9e-7, -128)), None),
    "quantize_extreme": ("concat_requantize", lambda g: _io(g, "QUANTIZE", [(1e-4, -128)]), None),
    "quantize_upscale": ("concat_requantize", lambda g: _io(g, "QUANTIZE", [(5.0, -128)]), None),
    "pad_zero_point": ("pad", lambda g: _io(g, "PAD", [(0.1, 127)], (0.1, 127)), None),
    # fused activations rewritten in the options (1 RELU, 2 RELU_N1_TO_1, 3 RELU6)
    "add_relu_n1_to_1": ("add_broadcast_relu", lambda g: _io(g, "ADD", [], (0.01, 0)), None, 2),
    "add_relu6": ("add_broadcast_relu", lambda g: _io(g, "ADD", [], (0.05, -128)), None, 3),
    "mul_relu_n1_to_1": ("mul_relu", lambda g: _io(g, "MUL", [], (0.02, 30)), None, 2),
    "mul_relu6": ("mul_relu", lambda g: _io(g, "MUL", [], (0.03, -100)), None, 3),
    "maxpool_relu6": ("maxpool_relu", lambda g: _io(g, "MAX_POOL_2D", [(0.03, -10)], (0.03, -10)), None, 3),
    "maxpool_relu_n1_to_1": ("maxpool_relu", lambda g: _io(g, "MAX_POOL_2D", [(0.02, 5)], (0.02, 5)), None, 2),
}

_ACT_OFFSET = {"AddOptions": 4, "MulOptions": 4, "Pool2DOptions": 14}  # vtable slot of fused_activation_function


def _patch_model(model: bytes, quant: dict, beta=None, act=None) -> bytes:
    """Overwrite tensor scales/zero points (softmax beta, fused activation of ADD/MUL/pooling)
    in place in the flatbuffer."""
    import struct

    import tflite

    buf = bytearray(model)
    sg = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    for tid, (scale, zp) in quant.items():
        q = sg.Tensors(tid).Quantization()
        s, z = q.ScaleAsNumpy(), q.ZeroPointAsNumpy()
        s[:] = np.float32(scale)
        z[:] = zp
    if beta is not None:
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            if op.BuiltinOptionsType() == tflite.BuiltinOptions.SoftmaxOptions:
                tab = op.BuiltinOptions()
                o = tab.Offset(4)
                assert o != 0, "beta stored as default; cannot patch"
                struct.pack_into("<f", buf, tab.Pos + o, float(beta))
    if act is not None:
        names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
        done = 0
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            name = names.get(op.BuiltinOptionsType())
            if name in _ACT_OFFSET:
                tab = op.BuiltinOptions()
                o = tab.Offset(_ACT_OFFSET[name])
                assert o != 0, "activation stored as default (NONE); cannot patch"
                struct.pack_into("<b", buf, tab.Pos + o, int(act))
                done += 1
        assert done, "no op with a fused activation to patch"
    return bytes(buf)


def _compare_with_tflm(clib, name, model, tmp_path, samples=12, expect_ops=()):
    from tflite_micro.python.tflite_micro import runtime as tflm

    from tinycluster.importers.tflite import load_tflite, resolve_graph

    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model)
    g = resolve_graph(load_tflite(path))
    ops = {n.op for n in g.nodes}
    assert set(expect_ops) <= ops, ops
    interp = tflm.Interpreter.from_bytes(model, arena_size=1 << 20)
    rng = np.random.default_rng(sum(map(ord, name)))
    for it in range(samples):
        ins = []
        for i, tid in enumerate(g.inputs):
            t = g.tensors[tid]
            if t.dtype == "int8":
                x = rng.integers(-128, 128, size=t.shape, dtype=np.int8)
                if it == 0:
                    x[...] = -128
                elif it == 1:
                    x[...] = 127
            else:
                x = (rng.standard_normal(t.shape) * 4).astype(np.float32)
            ins.append(x)
            interp.set_input(x, i)
        interp.invoke()
        want = [np.asarray(interp.get_output(i)) for i in range(len(g.outputs))]
        ref = {tid: x for tid, x in zip(g.inputs, ins)}
        cv = dict(ref)
        for t in g.tensors:
            if t.is_const:
                ref[t.id] = cv[t.id] = t.data
        for node in g.nodes:
            h = get_handler(node.op)
            for tid, v in zip(node.outputs, h.reference(node, g, [ref[i] for i in node.inputs])):
                ref[tid] = v
            cv[node.outputs[0]] = run_c(clib, node, g, [cv[i] for i in node.inputs])
        for k, tid in enumerate(g.outputs):
            w = want[k].reshape(-1)
            for label, got in (("numpy reference", ref[tid]), ("C kernels", cv[tid])):
                got = np.asarray(got).reshape(-1)
                assert got.dtype == w.dtype
                same = np.array_equal(w.view(np.uint32), got.view(np.uint32)) if w.dtype == np.float32 \
                    else np.array_equal(w, got)
                assert same, f"{name}: {label} differs from TFLite Micro at {np.flatnonzero(w != got)[:8]}"
    return g


_MODELS: dict = {}


def _model(name):
    global tf_
    tf_ = _tf()
    if name not in _MODELS:
        fn, shapes, ranges, _, flags = TFLM_CASES[name]
        _MODELS[name] = _convert(tf_, fn, shapes, ranges, **flags)
    return _MODELS[name]


@pytest.mark.parametrize("name", sorted(TFLM_CASES))
def test_reference_and_c_match_tflite_micro(clib, name, tmp_path):
    _compare_with_tflm(clib, name, _model(name), tmp_path, expect_ops=TFLM_CASES[name][3])


@pytest.mark.parametrize("name", sorted(TFLM_PATCHED))
def test_extreme_parameters_match_tflite_micro(clib, name, tmp_path):
    from tinycluster.importers.tflite import load_tflite

    base, quant_of, beta, *act = TFLM_PATCHED[name]
    model = _model(base)
    path = tmp_path / "base.tflite"
    path.write_bytes(model)
    patched = _patch_model(model, quant_of(load_tflite(path)), beta, act[0] if act else None)
    g = _compare_with_tflm(clib, name, patched, tmp_path, samples=8)
    if act:
        names = {2: "RELU_N1_TO_1", 3: "RELU6"}
        assert all(n.attrs.get("activation") == names[act[0]] for n in g.nodes if "activation" in n.attrs)
    if beta is not None:
        assert abs(_node(g, "SOFTMAX").attrs["beta"] - beta) < 1e-7


# ---- sanitizers -------------------------------------------------------------------------------
def _c_array(ctype, arr):
    vals = ", ".join(str(int(v)) for v in np.asarray(arr).reshape(-1)) or "0"
    return f"{{{vals}}}"


def test_kernels_under_address_and_undefined_sanitizers(tmp_path):
    """A standalone program (generated here, not committed) runs every kernel on a few cases
    built with -fsanitize=address,undefined; its printed outputs must equal the references."""
    from tinycluster.builders.host import build_executable

    if not Path("/usr/bin/cc").exists() and not any(Path(p, "cc").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("no C compiler")
    rng = np.random.default_rng(7)
    cases = []  # (node, graph, inputs)

    def add_case(op, tensors, inputs, outputs, attrs=None):
        g, node = single_node(op, tensors, inputs, outputs, attrs)
        get_handler(op).resolve(node, g)
        xs = [g.tensors[t].data if g.tensors[t].data is not None else
              rng.integers(-128, 128, size=g.tensors[t].shape, dtype=np.int8) for t in inputs]
        cases.append((node, g, [x for x, t in zip(xs, inputs) if g.tensors[t].data is None or op == "CONCATENATION"]))

    add_case("ADD", [qt(0, (2, 3, 4), 0.1, -128), qt(1, (3, 1), 0.5, 127), qt(2, (2, 3, 4), 0.3, 0)], [0, 1], [2],
             {"activation": "RELU6"})
    add_case("MUL", [qt(0, (5, 7), 0.01, 3), qt(1, (5, 7), 2.0, -1), qt(2, (5, 7), 0.7, 10)], [0, 1], [2],
             {"activation": "NONE"})
    add_case("AVERAGE_POOL_2D", [qt(0, (1, 7, 6, 3), 0.1, 0), qt(1, (1, 3, 2, 3), 0.1, 0)], [0], [1],
             dict(padding="SAME", stride_h=3, stride_w=3, filter_h=4, filter_w=3, activation="NONE"))
    add_case("MAX_POOL_2D", [qt(0, (2, 5, 5, 2), 0.1, 0), qt(1, (2, 2, 2, 2), 0.1, 0)], [0], [1],
             dict(padding="VALID", stride_h=2, stride_w=2, filter_h=2, filter_w=2, activation="RELU"))
    add_case("SOFTMAX", [qt(0, (3, 33), 0.05, 7), qt(1, (3, 33), 1 / 256, -128)], [0], [1], {"beta": 1.0})
    add_case("LOGISTIC", [qt(0, (300,), 0.08, -5), qt(1, (300,), 1 / 256, -128)], [0], [1])
    add_case("TANH", [qt(0, (300,), 0.03, 12), qt(1, (300,), 1 / 128, 0)], [0], [1])
    add_case("RELU", [qt(0, (40,), 0.2, 5), qt(1, (40,), 0.1, -128)], [0], [1])
    add_case("RELU6", [qt(0, (40,), 0.05, -20), qt(1, (40,), 0.05, -20)], [0], [1])
    add_case("QUANTIZE", [qt(0, (40,), 0.05, 1), qt(1, (40,), 0.11, -3)], [0], [1])
    add_case("PAD", [qt(0, (2, 3, 4), 0.1, 9), Tensor(id=1, name="p", shape=(3, 2), dtype="int32",
                                                      data=np.array([[1, 0], [0, 2], [3, 1]], np.int32)),
                     qt(2, (3, 5, 8), 0.1, 9)], [0, 1], [2])
    add_case("MEAN", [qt(0, (2, 4, 5, 3), 0.1, 2), Tensor(id=1, name="a", shape=(2,), dtype="int32",
                                                          data=np.array([1, 2], np.int32)),
                      qt(2, (2, 1, 1, 3), 0.07, -4)], [0, 1], [2], {"keep_dims": True})
    add_case("CONCATENATION", [qt(0, (2, 3, 2), 0.1, 0), qt(1, (2, 3, 5), 0.1, 0), qt(2, (2, 3, 7), 0.1, 0)],
             [0, 1], [2], {"axis": -1, "activation": "NONE"})
    add_case("RESHAPE", [qt(0, (3, 4), 0.1, 0), qt(1, (12,), 0.1, 0)], [0], [1])
    add_case("DEQUANTIZE", [qt(0, (20,), 0.37, -7), Tensor(id=1, name="f", shape=(20,), dtype="float32")], [0], [1])

    fields_of = {
        "ADD": ("tc_add_params", add_mod.FIELDS, "tc_add_s8"), "MUL": ("tc_mul_params", mul_mod.FIELDS, "tc_mul_s8"),
        "AVERAGE_POOL_2D": ("tc_pool_params", pool_mod.FIELDS, "tc_avgpool_s8"),
        "MAX_POOL_2D": ("tc_pool_params", pool_mod.FIELDS, "tc_maxpool_s8"),
        "SOFTMAX": ("tc_softmax_params", softmax_mod.FIELDS, "tc_softmax_s8"),
        "LOGISTIC": ("tc_logistic_params", logistic_mod.FIELDS, "tc_logistic_s8"),
        "TANH": ("tc_tanh_params", tanh_mod.FIELDS, "tc_tanh_s8"),
        "RELU": ("tc_requant_params", relu_mod.REQUANT_FIELDS, "tc_requant_s8"),
        "RELU6": ("tc_clamp_params", relu_mod.CLAMP_FIELDS, "tc_clamp_s8"),
        "QUANTIZE": ("tc_requant_params", relu_mod.REQUANT_FIELDS, "tc_requant_s8"),
        "PAD": ("tc_pad_params", pad_mod.FIELDS, "tc_pad_s8"), "MEAN": ("tc_mean_params", mean_mod.FIELDS, "tc_mean_s8"),
        "DEQUANTIZE": ("tc_dequantize_params", quantize_mod.FLOAT_FIELDS, "tc_dequantize_s8_f32"),
    }
    body, decls, expected = [], [], []
    for ci, (node, g, xs) in enumerate(cases):
        out_t = g.tensors[node.outputs[0]]
        want = get_handler(node.op).reference(node, g, xs)[0].reshape(-1)
        n = want.size
        # exact-size heap buffers so that ASan sees any out-of-bounds access
        for k, x in enumerate(xs):
            decls.append(f"static const int8_t in{ci}_{k}[{max(np.asarray(x).size, 1)}] = {_c_array('int8_t', x)};")
        ins = []
        for k, x in enumerate(xs):
            sz = max(np.asarray(x).size, 1)
            body.append(f"    int8_t *h{ci}_{k} = (int8_t *)malloc({sz}); memcpy(h{ci}_{k}, in{ci}_{k}, {sz});")
            ins.append(f"h{ci}_{k}")
        is_f = out_t.dtype == "float32"
        body.append(f"    {'float' if is_f else 'int8_t'} *o{ci} = malloc({n} * {4 if is_f else 1});")
        if node.op == "CONCATENATION":
            for k, part in enumerate(node.params["parts"]):
                init = ", ".join(f".{f} = {int(part[f])}" for f, _ in concat_mod.FIELDS)
                body.append(f"    {{ const tc_concat_params p = {{ {init} }}; tc_concat_s8(&p, {ins[k]}, o{ci}); }}")
        elif node.op == "RESHAPE":
            body.append(f"    tc_copy_s8({node.params['size']}, {ins[0]}, o{ci});")
        else:
            ctype, fields, fn = fields_of[node.op]
            init = ", ".join(f".{f} = {int(node.params[f])}" + ("u" if t == "uint32_t" else "") for f, t in fields)
            body.append(f"    {{ const {ctype} p = {{ {init} }}; {fn}(&p, {', '.join(ins)}, o{ci}); }}")
        if is_f:
            body.append(f"    for (i = 0; i < {n}; ++i) {{ uint32_t b; memcpy(&b, &o{ci}[i], 4); "
                        f"printf(\"%lu \", (unsigned long)b); }}")
            body.append("    printf(\"\\n\");")
            expected.append(want.view(np.uint32).astype(np.int64))
        else:
            body.append(f"    for (i = 0; i < {n}; ++i) {{ printf(\"%d \", (int)o{ci}[i]); }}")
            body.append("    printf(\"\\n\");")
            expected.append(want.astype(np.int64))
        body.append(f"    free(o{ci});" + "".join(f" free({h});" for h in ins))
    src = ("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"tc_kernels.h\"\n"
           + "\n".join(decls) + "\nint main(void)\n{\n    int i;\n" + "\n".join(body) + "\n    return 0;\n}\n")
    main_c = tmp_path / "ops_main.c"
    main_c.write_text(src)
    exe = build_executable([main_c] + SOURCES, tmp_path / "ops_main", sanitize=True, opt="-O1")
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr[-3000:]
    lines = r.stdout.strip().split("\n")
    assert len(lines) == len(cases)
    for (node, _, _), line, want in zip(cases, lines, expected):
        got = np.array([int(v) for v in line.split()], dtype=np.int64)
        assert np.array_equal(got, want), node.op


@pytest.mark.parametrize("op", ["ADD", "MUL", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE"])
def test_elementwise_ops_run_in_place(clib, op):
    """Ops flagged inplace = "elementwise" give the same bytes when output == input 0."""
    rng = np.random.default_rng(3)
    shape = (3, 5, 7)
    x = rng.integers(-128, 128, size=shape, dtype=np.int8)
    if op in ("ADD", "MUL"):
        ts = [qt(0, shape, 0.05, -7), qt(1, (7,), 0.3, 100), qt(2, shape, 0.2, 3)]
        g, node = single_node(op, ts, [0, 1], [2], {"activation": "RELU"})
        inputs = [x, rng.integers(-128, 128, size=(7,), dtype=np.int8)]
    else:
        out_q = {"SOFTMAX": (1 / 256, -128), "LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}.get(op, (0.07, -20))
        ts = [qt(0, shape, 0.05, -7), qt(1, shape, *out_q)]
        g, node = single_node(op, ts, [0], [1], {"beta": 1.0})
        inputs = [x]
    get_handler(op).resolve(node, g)
    check(clib, g, node, inputs, inplace=True)


def test_rank5_with_leading_ones_is_accepted(clib):
    """Leading size-1 dimensions beyond rank 4 are dropped (PAD, ADD); others are one-line errors."""
    pads = np.array([[0, 0], [0, 0], [1, 0], [0, 2], [1, 1]], np.int32)
    ts = [qt(0, (1, 1, 2, 3, 4), 0.1, 5), Tensor(id=1, name="p", shape=(5, 2), dtype="int32", data=pads),
          qt(2, (1, 1, 3, 5, 6), 0.1, 5)]
    g, node = single_node("PAD", ts, [0, 1], [2])
    get_handler("PAD").resolve(node, g)
    check(clib, g, node, [np.arange(24, dtype=np.int8).reshape(1, 1, 2, 3, 4)])
    ts = [qt(0, (1, 1, 2, 3, 4), 0.1, 5), qt(1, (4,), 0.2, -5), qt(2, (1, 1, 2, 3, 4), 0.3, 0)]
    g, node = single_node("ADD", ts, [0, 1], [2], {"activation": "NONE"})
    get_handler("ADD").resolve(node, g)
    check(clib, g, node, [np.arange(24, dtype=np.int8).reshape(1, 1, 2, 3, 4), np.arange(4, dtype=np.int8)])
    ts = [qt(0, (2, 1, 2, 3, 4), 0.1, 5), qt(1, (4,), 0.2, -5), qt(2, (2, 1, 2, 3, 4), 0.3, 0)]
    g, node = single_node("ADD", ts, [0, 1], [2], {"activation": "NONE"})
    with pytest.raises(TinyClusterError, match="at most 4"):
        get_handler("ADD").resolve(node, g)

"""cffi harness for the packed-weight kernels (runtime_c/src/tc_*packed*.c, tc_unpack_lut*.c).

The cdef is the "Packed-weight kernels" section of runtime_c/include/tc_kernels.h itself
(comments stripped), so the tests exercise exactly the declared structs and prototypes.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from tinycluster.builders.host import build_host_module
from tinycluster.ops import _packed_common as pc
from tinycluster.ops import fully_connected
from tinycluster.packing import pack_indices
from tinycluster.paths import RUNTIME_INCLUDE, RUNTIME_SRC

SOURCES = ["tc_unpack_lut.c", "tc_unpack_lut_generic.c", "tc_fully_connected_packed.c",
           "tc_conv2d_packed.c", "tc_conv2d_packed_decode.c", "tc_conv2d_packed_rows.c",
           "tc_depthwise_conv2d_packed.c", "tc_depthwise_conv2d_packed_decode.c",
           "tc_depthwise_conv2d_packed_rows.c", "tc_requantize_lanes.c"]

# internal helper + the scalar reference it must match, for the tests
INTERNAL_CDEF = """
void tc_requantize_lanes(const int32_t *acc, int32_t n, const int32_t *mult, const int8_t *shift,
                         int per_channel, int32_t c0, int32_t out_offset, int32_t act_min,
                         int32_t act_max, int8_t *out);
int32_t tc_unpack4_s16_host(const uint8_t *p, const int8_t *codebook, int32_t n, int16_t *out);
int8_t tc_test_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset,
                          int32_t act_min, int32_t act_max);
"""
INTERNAL_HEADER = """
#include "tc_packed_internal.h"
static int8_t tc_test_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset,
                                 int32_t act_min, int32_t act_max)
{
    return tc_requantize(acc, mult, shift, out_offset, act_min, act_max);
}
"""


def packed_section() -> str:
    text = (RUNTIME_INCLUDE / "tc_kernels.h").read_text()
    start = text.index("/* ===== Packed-weight kernels")
    end = text.index("/* ===== Other ops")
    sec = text[start:end]
    sec = re.sub(r"/\*.*?\*/", "", sec, flags=re.S)
    return sec


@functools.lru_cache(maxsize=None)
def lib(opt: str = "-O2", portable: bool = False):
    """portable=True: the portable reference code (TC_PORTABLE, docs/design-codebooks-kernels.md;
    TC_NO_HOST_SIMD for the x86 decoders), what the Arm fast paths are compared with."""
    extra = ["-DTC_NO_HOST_SIMD", "-DTC_PORTABLE"] if portable else []
    return build_host_module([RUNTIME_SRC / s for s in SOURCES], packed_section() + INTERNAL_CDEF,
                             header='#include "tc_kernels.h"\n' + INTERNAL_HEADER, opt=opt, extra_cflags=extra,
                             name_hint="tc_packed_portable" if portable else "tc_packed")


def _struct(ffi, ctype, fields):
    s = ffi.new(ctype + " *")
    for name, _, value in fields:
        setattr(s, name, int(value))
    return s


def _arr(ffi, ctype, values):
    a = np.ascontiguousarray(values)
    if a.size == 0:
        return ffi.NULL, None
    buf = ffi.new(f"{ctype}[]", a.size)
    ffi.memmove(buf, a.tobytes(), a.nbytes)
    return buf, a


def _weights(ffi, layout):
    packed = pack_indices(layout.indices, layout.bits)
    pk = ffi.new("uint8_t[]", max(len(packed), 1))
    ffi.memmove(pk, packed, len(packed))
    cb = ffi.NULL if layout.raw else _arr(ffi, "int8_t", layout.codebook_array())[0]
    cmap = ffi.NULL if layout.cmap is None else _arr(ffi, "uint8_t", np.asarray(layout.cmap, np.uint8))[0]
    return pk, cb, cmap


def _requant(ffi, p, bias):
    # stored as the params say (bias_bits: 16, 24 or 32), as the generated code stores it
    b = ffi.NULL if bias is None else _arr(ffi, *pc.bias_storage(bias, p.get("bias_bits", 32)))[0]
    m = _arr(ffi, "int32_t", np.asarray(p["mult"], np.int32))[0]
    s = _arr(ffi, "int8_t", np.asarray(p["shift"], np.int8))[0]
    return b, m, s


GUARD = 16


def _out(ffi, n):
    buf = ffi.new("int8_t[]", n + 2 * GUARD)
    ffi.memmove(buf, bytes([0x5A]) * (n + 2 * GUARD), n + 2 * GUARD)
    return buf


def _read_out(ffi, buf, n):
    raw = np.frombuffer(ffi.buffer(buf, n + 2 * GUARD), np.int8).copy()
    if not (np.all(raw[:GUARD] == 0x5A) and np.all(raw[GUARD + n:] == 0x5A)):
        raise AssertionError("kernel wrote outside its output rows")
    return raw[GUARD:GUARD + n]


def run_fc(p, layout, x, bias, fields, portable=False, null_scratch=False, flash_tables=False):
    """null_scratch: pass NULL (what the generated code passes where the planner grants the
    kernel's optional scratch no room in the arena): the table-free paths. flash_tables: pass
    the precomputed pair tables (fully_connected.pair_tables) as the generated code does where
    they were granted (host builds ignore them: same output)."""
    ffi, L = lib(portable=portable)
    ps = _struct(ffi, "tc_fc_packed_params", fields)
    pk, cb, cmap = _weights(ffi, layout)
    b, m, s = _requant(ffi, p, bias)
    xin, _ = _arr(ffi, "int8_t", np.asarray(x, np.int8).reshape(-1))
    n = p["batches"] * p["out_features"]
    out = _out(ffi, n)
    nscr = L.tc_fully_connected_packed_get_buffer_size(ps)
    assert nscr == fully_connected.scratch_size(p, layout.bits, layout.stride)
    # scratch deliberately misaligned by one byte, poisoned: the kernel must not read before writing
    scr_buf = ffi.new("int8_t[]", nscr + 1)
    ffi.memmove(scr_buf, bytes([0xA5]) * (nscr + 1), nscr + 1)
    tabs = fully_connected.pair_tables(layout) if flash_tables else None
    pt = ffi.NULL if tabs is None else _arr(ffi, "uint32_t", tabs)[0]
    L.tc_fully_connected_packed(ps, xin, pk, cb, cmap, pt, b, m, s, out + GUARD,
                                ffi.NULL if null_scratch else scr_buf + 1)
    return _read_out(ffi, out, n)


def run_conv(kind, p, layout, x, bias, fields, oy0, oy1, portable=False):
    """kind: "conv" or "dw". Returns output rows [oy0, oy1) flattened."""
    ffi, L = lib(portable=portable)
    ctype = "tc_conv_packed_params" if kind == "conv" else "tc_dw_packed_params"
    ps = _struct(ffi, ctype, fields)
    pk, cb, cmap = _weights(ffi, layout)
    b, m, s = _requant(ffi, p, bias)
    xin, _ = _arr(ffi, "int8_t", np.asarray(x, np.int8).reshape(-1))
    if kind == "conv":
        nscr = L.tc_conv2d_packed_get_buffer_size(ps)
    else:
        nscr = L.tc_depthwise_conv2d_packed_get_buffer_size(ps)
    # scratch deliberately misaligned by one byte: the kernels must accept any alignment
    scr_buf = ffi.new("int8_t[]", nscr + 1)
    scr = scr_buf + 1
    n = (oy1 - oy0) * p["out_w"] * p["out_c"]
    out = _out(ffi, n)
    fn = L.tc_conv2d_packed if kind == "conv" else L.tc_depthwise_conv2d_packed
    fn(ps, xin, pk, cb, cmap, b, m, s, oy0, oy1, out + GUARD, scr)
    return _read_out(ffi, out, n)


def run_rowwise(kind, p, layout, x, bias, fields, oy0, oy1, portable=False):
    """As generated in-place code runs it: decode once, then one rows call per output row,
    scratch untouched in between (depthwise, and shallow conv). Returns rows [oy0, oy1)."""
    ffi, L = lib(portable=portable)
    if kind == "conv":
        ps = _struct(ffi, "tc_conv_packed_params", fields)
        get_size, decode, rows_fn = (L.tc_conv2d_packed_get_buffer_size, L.tc_conv2d_packed_decode,
                                     L.tc_conv2d_packed_rows)
    else:
        ps = _struct(ffi, "tc_dw_packed_params", fields)
        get_size, decode, rows_fn = (L.tc_depthwise_conv2d_packed_get_buffer_size,
                                     L.tc_depthwise_conv2d_packed_decode, L.tc_depthwise_conv2d_packed_rows)
    pk, cb, cmap = _weights(ffi, layout)
    b, m, s = _requant(ffi, p, bias)
    xin, _ = _arr(ffi, "int8_t", np.asarray(x, np.int8).reshape(-1))
    nscr = get_size(ps)
    scr_buf = ffi.new("int8_t[]", nscr + 1)
    scr = scr_buf + 1
    row = p["out_w"] * p["out_c"]
    r = decode(ps, pk, cb, cmap, scr)
    assert kind == "dw" or r == 1
    rows = []
    for oy in range(oy0, oy1):
        out = _out(ffi, row)
        rows_fn(ps, xin, b, m, s, oy, oy + 1, out + GUARD, scr)
        rows.append(_read_out(ffi, out, row))
    return np.concatenate(rows) if rows else np.zeros(0, np.int8)


def scratch_size(kind, fields) -> int:
    ffi, L = lib()
    if kind == "conv":
        return L.tc_conv2d_packed_get_buffer_size(_struct(ffi, "tc_conv_packed_params", fields))
    return L.tc_depthwise_conv2d_packed_get_buffer_size(_struct(ffi, "tc_dw_packed_params", fields))


def unpack(data: bytes, bit_offset: int, bits: int, codebook, count: int, generic: bool = False,
           portable: bool = False):
    ffi, L = lib(portable=portable)
    pk = ffi.new("uint8_t[]", max(len(data), 1))
    ffi.memmove(pk, data, len(data))
    cb = ffi.NULL if codebook is None else _arr(ffi, "int8_t", np.asarray(codebook, np.int8))[0]
    out = _out(ffi, count)
    fn = L.tc_unpack_lut_generic if generic else L.tc_unpack_lut
    fn(pk, bit_offset, bits, cb, count, out + GUARD)
    return _read_out(ffi, out, count)

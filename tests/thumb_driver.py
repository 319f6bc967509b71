"""Run the runtime's packed-weight kernels on a Cortex-M core under unicorn, one call at a time.

One driver ELF per board (the runtime cross-compiled with the board's flags by
tests/arm_harness.py, fast paths selected by tc_arch.h, plus ``tc_drv_run(op)`` that calls one
kernel with pointers taken from ``tc_drv_args``), built once and cached by content hash. A case writes its params struct and
arrays into the driver's RAM heap, calls ``tc_drv_run`` and reads the output back: no
compile per case, so hundreds of random cases take seconds. Also reports the instructions
executed by the call (the kernel-level figure of docs/kernels.md) and the stack it used
(the stack area is painted before each call).

Used by tests/test_kernels_arm.py (fast path on the target == portable build on the host, byte
for byte) and benchmarks/conv_kernels_arm.py (instructions per MAC per layer shape).
"""
from __future__ import annotations

import numpy as np

from arm_harness import build_machine
from tinycluster.ops import _packed_common as pc
from tinycluster.paths import runtime_sources

HEAP_BYTES = 1 << 19
STACK_BYTES = 8192

OPS = {"conv": 1, "conv_decode": 2, "conv_rows": 3, "dw": 4, "dw_decode": 5, "dw_rows": 6, "fc": 7,
       "conv_bufsize": 8, "dw_bufsize": 9, "fc_bufsize": 10}

DRIVER_C = r"""
#include <stdint.h>
#include "tc_kernels.h"

uint8_t tc_drv_heap[%(heap)d] __attribute__((aligned(8)));
uint32_t tc_drv_args[16];
extern uint8_t _sstack[];

#define A(i) ((void *)(uintptr_t)tc_drv_args[i])
#define I(i) ((int32_t)tc_drv_args[i])

void tc_harness_entry(void);
void tc_harness_entry(void)
{
}

int32_t tc_drv_run(int32_t op);
int32_t tc_drv_run(int32_t op)
{
    switch (op) {
    case 1:
        tc_conv2d_packed(A(0), A(1), A(2), A(3), A(4), A(5), A(6), A(7), I(8), I(9), A(10), A(11));
        return 0;
    case 2:
        return tc_conv2d_packed_decode(A(0), A(2), A(3), A(4), A(11));
    case 3:
        tc_conv2d_packed_rows(A(0), A(1), A(5), A(6), A(7), I(8), I(9), A(10), A(11));
        return 0;
    case 4:
        tc_depthwise_conv2d_packed(A(0), A(1), A(2), A(3), A(4), A(5), A(6), A(7), I(8), I(9), A(10),
                                   A(11));
        return 0;
    case 5:
        tc_depthwise_conv2d_packed_decode(A(0), A(2), A(3), A(4), A(11));
        return 0;
    case 6:
        tc_depthwise_conv2d_packed_rows(A(0), A(1), A(5), A(6), A(7), I(8), I(9), A(10), A(11));
        return 0;
    case 7:
        tc_fully_connected_packed(A(0), A(1), A(2), A(3), A(4), A(12), A(5), A(6), A(7), A(10), A(11));
        return 0;
    case 8:
        return tc_conv2d_packed_get_buffer_size(A(0));
    case 9:
        return tc_depthwise_conv2d_packed_get_buffer_size(A(0));
    case 10:
        return tc_fully_connected_packed_get_buffer_size(A(0));
    default:
        return -1;
    }
}
"""


def build_driver(board_name: str, extra_cflags=()):
    """The driver loaded in unicorn (tests/arm_harness.py builds and caches it)."""
    src = DRIVER_C % {"heap": HEAP_BYTES}
    return build_machine(board_name, src, sources=[f.name for f in runtime_sources()],
                         extra_cflags=extra_cflags, stack=STACK_BYTES)


class Driver:
    """One board's driver ELF loaded in unicorn."""

    def __init__(self, board_name: str, extra_cflags=()):
        self.m = build_driver(board_name, extra_cflags)
        self.heap = self.m.sym("tc_drv_heap")
        self.args = self.m.sym("tc_drv_args")
        self._top = 0

    # -- heap --------------------------------------------------------------------------------
    def reset(self):
        self._top = 0

    def put(self, data, align: int = 8, skew: int = 0) -> int:
        """Copy bytes (or a numpy array) into the heap; returns the address (0 for None)."""
        if data is None:
            return 0
        b = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        self._top = (self._top + align - 1) // align * align + skew
        addr = self.heap + self._top
        self._top += max(len(b), 1)
        if self._top > HEAP_BYTES:
            raise RuntimeError("driver heap exhausted")
        self.m.uc.mem_write(addr, b)
        return addr

    def alloc(self, n: int, fill: int = 0, align: int = 8, skew: int = 0) -> int:
        return self.put(bytes([fill]) * n, align, skew)

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.m.uc.mem_read(addr, n))

    # -- calls -------------------------------------------------------------------------------
    def profile(self, op: str, args: dict) -> dict:
        """Instructions executed per function (each basic block counted in the nearest Thumb
        function symbol at or below it)."""
        import bisect
        funcs = sorted((a & ~1, n) for n, a in self.m.syms.items() if a & 1)
        starts = [f[0] for f in funcs]
        self._set_args(args)
        self.m.call("tc_drv_run", OPS[op], profile=True)
        prof: dict = {}
        for (addr, size), n in self.m.blocks.items():
            k = bisect.bisect_right(starts, addr) - 1
            name = funcs[k][1] if k >= 0 else "?"
            prof[name] = prof.get(name, 0) + n * self.m._insns_in_block(addr, size)
        return dict(sorted(prof.items(), key=lambda kv: -kv[1]))

    def _set_args(self, args: dict):
        words = np.zeros(16, np.uint32)
        for i, v in args.items():
            words[i] = np.uint32(int(v) & 0xFFFFFFFF)
        self.m.uc.mem_write(self.args, words.tobytes())

    def run(self, op: str, args: dict, count: bool = True):
        """Call tc_drv_run(op) with tc_drv_args[i] = args[i]; returns (return value, instructions,
        stack bytes the call wrote)."""
        import unicorn.arm_const as a
        self._set_args(args)
        n = self.m.call("tc_drv_run", OPS[op], count=count, stack=True)
        ret = self.m.uc.reg_read(a.UC_ARM_REG_R0)
        ret = ret - (1 << 32) if ret >= 1 << 31 else ret
        return ret, n, self.m.stack_used


GUARD = 16


def run_conv(drv: Driver, kind: str, p: dict, layout, x, bias, fields, oy0: int, oy1: int,
             rowwise: bool = False, skew: int = 1, rows_per_call: int = 1):
    """Output rows [oy0, oy1) of a conv ("conv") or depthwise ("dw") layer computed on the
    target, called as the generated code calls it: one call, or (rowwise) one call per
    `rows_per_call` output rows after a decode at the first row (depthwise and shallow conv;
    deep conv decodes inside every call). Scratch starts `skew` bytes past an 8-byte boundary. Returns (output bytes,
    instructions executed, largest stack use of one call in bytes, scratch bytes)."""
    from packed_harness import _struct, lib
    from tinycluster.ops import conv_2d
    from tinycluster.packing import pack_indices

    ffi, _ = lib(portable=True)
    ctype = "tc_conv_packed_params" if kind == "conv" else "tc_dw_packed_params"
    pbytes = bytes(ffi.buffer(_struct(ffi, ctype, fields)))
    drv.reset()
    a = {0: drv.put(pbytes, 4), 1: drv.put(np.asarray(x, np.int8)),
         2: drv.put(pack_indices(layout.indices, layout.bits)),
         3: 0 if layout.raw else drv.put(layout.codebook_array()),
         4: 0 if layout.cmap is None else drv.put(np.asarray(layout.cmap, np.uint8)),
         5: 0 if bias is None else drv.put(pc.bias_storage(bias, p.get("bias_bits", 32))[1]),
         6: drv.put(np.asarray(p["mult"], np.int32)), 7: drv.put(np.asarray(p["shift"], np.int8))}
    nscr = drv.run(kind + "_bufsize", a, count=False)[0]
    row = p["out_w"] * p["out_c"]
    n = (oy1 - oy0) * row
    out = drv.alloc(n + 2 * GUARD, 0x5A)
    a[11] = drv.alloc(nscr, 0xEE, skew=skew)
    total, stack = 0, 0
    if not rowwise:
        a[8], a[9], a[10] = oy0, oy1, out + GUARD
        _, total, stack = drv.run(kind, a)
    else:
        shallow = kind == "conv" and conv_2d.is_shallow(p)
        if kind == "dw" or shallow:
            _, c, st = drv.run(kind + "_decode", a)
            total, stack = c, st
        for oy in range(oy0, oy1, rows_per_call):
            a[8], a[9], a[10] = oy, min(oy + rows_per_call, oy1), out + GUARD + (oy - oy0) * row
            _, c, st = drv.run(kind + "_rows" if (kind == "dw" or shallow) else kind, a)
            total, stack = total + c, max(stack, st)
    raw = np.frombuffer(drv.read(out, n + 2 * GUARD), np.int8)
    if not (np.all(raw[:GUARD] == 0x5A) and np.all(raw[GUARD + n:] == 0x5A)):
        raise AssertionError("kernel wrote outside its output rows")
    return raw[GUARD:GUARD + n].copy(), total, stack, nscr

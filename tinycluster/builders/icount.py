"""Deterministic instruction counting of ``<name>_invoke`` with unicorn (Thumb, M-class).

Debian's QEMU ships without TCG plugins, so QEMU itself cannot count instructions; unicorn (the
QEMU CPU core as a library, PyPI ``unicorn``) runs the *same ELF* that QEMU ran: its loadable
segments are mapped at their addresses (``.data`` at its RAM address, ``.bss`` zeroed: what the
start-up code does), ``<name>_init`` is called once, then ``<name>_invoke(tc_inputs[i], tc_output)``
for each counted sample, returning to a stop address.

Counting: a basic-block hook (one Python call per translated block executed, not per
instruction) adds the number of Thumb instructions in the block; that number is decoded once per
block from its bytes (a halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a
32-bit instruction, any other a 16-bit one). Instructions skipped by an IT block or a failed
condition still count as executed, as on the core's pipeline. ``verify_count`` cross-checks the
figure against unicorn's own instruction limit (``emu_start(count=N)``).

Profiling (``call(..., profile=True)``) keeps, per basic block, how often it ran and how often it
left to a non-sequential address (a taken branch); :mod:`tinycluster.builders.cycles` turns that
and the block's decoded instructions into an instruction mix and estimated cycles. Stack
(``call(..., stack=True)``): a memory-write hook over the stack region records the lowest address
written below the caller's stack pointer, i.e. the call's stack high-water mark in bytes (what
stack painting measures, without depending on the painted region's neighbours).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TinyClusterError

STOP_ADDR = 0x0FFFF000  # never mapped by a board's memory map in this tool; the return address of calls
STACK_TOP_MARGIN = 64


def _cpu_model(name: str):
    import unicorn.arm_const as a
    return {"cortex-m0": a.UC_CPU_ARM_CORTEX_M0, "cortex-m3": a.UC_CPU_ARM_CORTEX_M3,
            "cortex-m4": a.UC_CPU_ARM_CORTEX_M4, "cortex-m7": a.UC_CPU_ARM_CORTEX_M7,
            "cortex-m33": a.UC_CPU_ARM_CORTEX_M33}[name]


def _align_down(x, a=0x1000):
    return x & ~(a - 1)


def _align_up(x, a=0x1000):
    return (x + a - 1) & ~(a - 1)


# A block hook in C: unicorn's Python callbacks cost ~1.4 us per executed block (a profiled
# 3x3 conv on Cortex-M0+ runs millions of blocks), this one tens of ns. It is built once for
# the host through cffi (cached); without a host compiler the Python hook does the same job.
_PROFILER_C = r"""
#include <stdint.h>
#include "tc_uc_profile.h"
void tc_uc_block_hook(void *uc, uint64_t address, uint32_t size, void *user)
{
    tc_uc_profile *p = (tc_uc_profile *)user;
    uint64_t h;
    uint32_t i;
    (void)uc;
    if (address == p->stop || size == 0u) {
        return;
    }
    h = (address * 0x9E3779B97F4A7C15ull) ^ (uint64_t)size;
    i = (uint32_t)(h >> 32) & (p->cap - 1u);
    for (;;) {
        tc_uc_block *b = &p->tab[i];
        if (!b->used) {
            if (2u * (p->n + 1u) > p->cap) {
                p->overflow = 1u;
                return;
            }
            b->used = 1u;
            p->order[p->n] = i;
            b->addr = address;
            b->size = size;
            p->n++;
            break;
        }
        if (b->addr == address && b->size == size) {
            break;
        }
        i = (i + 1u) & (p->cap - 1u);
    }
    p->tab[i].count++;
    if (p->prev >= 0 && p->prev_end != address) {
        p->tab[p->prev].taken++;
    }
    p->prev = (int64_t)i;
    p->prev_end = address + size;
}

void tc_uc_reset(tc_uc_profile *p)
{
    uint32_t k;
    for (k = 0; k < p->n; ++k) {
        tc_uc_block *b = &p->tab[p->order[k]];
        b->used = 0u;
        b->count = 0u;
        b->taken = 0u;
    }
    p->n = 0u;
    p->overflow = 0u;
    p->prev = -1;
    p->prev_end = 0u;
}
"""
_PROFILER_CDEF = """
typedef struct { uint64_t addr; uint64_t count; uint64_t taken; uint32_t size; uint32_t used; } tc_uc_block;
typedef struct { tc_uc_block *tab; uint32_t *order; uint32_t cap; uint32_t n; uint32_t overflow; int64_t prev;
                 uint64_t prev_end; uint64_t stop; } tc_uc_profile;
void tc_uc_block_hook(void *uc, uint64_t address, uint32_t size, void *user);
void tc_uc_reset(tc_uc_profile *p);
"""
_native = []


def _native_profiler():
    """(ffi, lib) of the C block hook, or None when it cannot be built here."""
    if not _native:
        try:
            import tempfile
            from .host import build_host_module
            d = Path(tempfile.mkdtemp(prefix="tc_ucprof_"))
            (d / "tc_uc_profile.h").write_text("#include <stdint.h>\n" + _PROFILER_CDEF)
            (d / "tc_uc_profile.c").write_text(_PROFILER_C)
            _native.append(build_host_module([d / "tc_uc_profile.c"], _PROFILER_CDEF, header='#include "tc_uc_profile.h"',
                                             include_dirs=[d], name_hint="tc_uc_profile"))
        except Exception:  # no host compiler / cffi: fall back to the Python hook
            _native.append(None)
    return _native[0]



class ThumbMachine:
    """An ELF loaded into unicorn, with helpers to call its functions and count instructions.

    regions: [(origin, length), ...] to map (default: the board's QEMU flash and RAM)."""

    def __init__(self, elf: Path, board, regions=None):
        import unicorn
        from elftools.elf.elffile import ELFFile

        self.elf = Path(elf)
        self.board = board
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(_cpu_model(board.unicorn_cpu))
        self.syms = {}
        self.sym_sizes = {}
        mapped = []

        def map_range(lo, hi):
            lo, hi = _align_down(lo), _align_up(hi)
            for a, b in mapped:  # merge with existing mappings
                if lo < b and a < hi:
                    if lo < a:
                        map_range(lo, a)
                    if hi > b:
                        map_range(b, hi)
                    return
            self.uc.mem_map(lo, hi - lo)
            mapped.append((lo, hi))

        if regions is None:
            regions = [(board.qemu_flash_origin, board.qemu_flash_size), (board.qemu_ram_origin, board.qemu_ram_size)]
        for origin, length in regions:
            map_range(origin, origin + length)
        map_range(STOP_ADDR, STOP_ADDR + 0x1000)
        self.uc.mem_write(STOP_ADDR, b"\x00\xbf" * 8)  # nops (never executed: emulation stops there)
        with open(elf, "rb") as f:
            ef = ELFFile(f)
            for seg in ef.iter_segments():
                if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                    continue
                data = seg.data()
                # the start-up code's job: .data at its RAM address, .bss zero
                self.uc.mem_write(seg["p_vaddr"], data + b"\0" * (seg["p_memsz"] - len(data)))
                if seg["p_paddr"] != seg["p_vaddr"] and data:
                    self.uc.mem_write(seg["p_paddr"], data)
            for sym in ef.get_section_by_name(".symtab").iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                    self.syms.setdefault(sym.name, sym["st_value"])
                    self.sym_sizes.setdefault(sym.name, sym["st_size"])
        self._block_counts = {}
        self._count = 0
        self._hook = None
        self.blocks = {}   # (addr, size) -> executions (profile)
        self.taken = {}    # (addr, size) -> executions that continued at a non-sequential address
        self._prev = None
        self.stack_low = None

    def sym(self, name: str) -> int:
        if name not in self.syms:
            raise TinyClusterError(f"symbol '{name}' not found in the harness ELF")
        return self.syms[name]

    def _insns_in_block(self, address, size) -> int:
        key = (address, size)
        n = self._block_counts.get(key)
        if n is None:
            code = self.uc.mem_read(address, size)
            n, i = 0, 0
            while i < size:
                hw = code[i] | (code[i + 1] << 8)
                i += 4 if (hw >> 11) in (0b11101, 0b11110, 0b11111) else 2
                n += 1
            self._block_counts[key] = n
        return n

    def block_addresses(self, address, size) -> list:
        """Start addresses of the instructions of a block (decoded from its bytes)."""
        code = self.uc.mem_read(address, size)
        out, i = [], 0
        while i < size:
            out.append(address + i)
            hw = code[i] | (code[i + 1] << 8)
            i += 4 if (hw >> 11) in (0b11101, 0b11110, 0b11111) else 2
        return out

    def _on_block(self, uc, address, size, _user):
        if address == STOP_ADDR or not size:
            return
        key = (address, size)
        b = self.blocks
        b[key] = b.get(key, 0) + 1
        p = self._prev
        if p is not None and p[0] + p[1] != address:
            self.taken[p] = self.taken.get(p, 0) + 1
        self._prev = key

    STACK_PAINT = 0x5AC3E11D

    def stack_region(self) -> tuple:
        """(lowest, top) addresses of the stack: _sstack.._estack of the harness linker script."""
        top = self.sym("_estack")
        low = self.syms.get("_sstack", top - 0x10000)
        return low, top

    def _install_block_hook(self):
        import ctypes

        import unicorn
        native = _native_profiler()
        if native is None:
            self._hook = self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
            self._prof = None
            return
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib
        ffi, lib = native
        cap = 1 << 16
        self._prof_keep = [ffi.new("tc_uc_block[]", cap), ffi.new("uint32_t[]", cap)]
        prof = ffi.new("tc_uc_profile *")
        prof.tab, prof.order, prof.cap, prof.prev, prof.stop = self._prof_keep[0], self._prof_keep[1], cap, -1, STOP_ADDR
        self._prof = prof
        handle = uc_hook_h()
        fptr = int(ffi.cast("uintptr_t", ffi.addressof(lib, "tc_uc_block_hook")))
        status = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), unicorn.UC_HOOK_BLOCK, ctypes.c_void_p(fptr),
                                   ctypes.c_void_p(int(ffi.cast("uintptr_t", prof))), ctypes.c_uint64(1),
                                   ctypes.c_uint64(0))
        if status != 0:
            raise TinyClusterError(f"unicorn refused the native block hook (status {status})")
        self.uc._callbacks[handle.value] = None
        self._hook = handle.value

    def _collect_native(self):
        ffi, lib = _native_profiler()
        p = self._prof
        if p.overflow:
            raise TinyClusterError("instruction counter: more than 32768 distinct basic blocks in one call")
        blocks, taken = {}, {}
        for k in range(p.n):
            b = p.tab[p.order[k]]
            key = (int(b.addr), int(b.size))
            blocks[key] = int(b.count)
            if b.taken:
                taken[key] = int(b.taken)
        lib.tc_uc_reset(p)
        self.blocks, self.taken = blocks, taken

    def call(self, func: str, *args, count: bool = False, limit: int = 0, profile: bool = False,
             stack: bool = False) -> int:
        """Call ``func(args...)`` (integer/pointer args; the 5th and later go on the stack as AAPCS
        says). Returns the instructions executed when count or profile (else 0); with profile,
        ``self.blocks`` / ``self.taken`` hold this call's block profile; with stack,
        ``self.stack_used`` is the bytes of stack the call wrote below the caller's SP (the
        stack region below SP is painted before the call and scanned after it)."""
        import unicorn
        import unicorn.arm_const as a
        uc = self.uc
        top = self.sym("_estack") - STACK_TOP_MARGIN
        extra = [int(v) & 0xFFFFFFFF for v in args[4:]]
        sp = (top - 4 * len(extra)) & ~7
        for i, v in enumerate(extra):
            uc.mem_write(sp + 4 * i, v.to_bytes(4, "little"))
        uc.reg_write(a.UC_ARM_REG_SP, sp)
        uc.reg_write(a.UC_ARM_REG_LR, STOP_ADDR | 1)
        for r, v in zip((a.UC_ARM_REG_R0, a.UC_ARM_REG_R1, a.UC_ARM_REG_R2, a.UC_ARM_REG_R3), args[:4]):
            uc.reg_write(r, int(v) & 0xFFFFFFFF)
        want_blocks = count or profile
        self.blocks, self.taken, self._prev = {}, {}, None
        # unicorn inserts hook calls when it translates a block: code translated while the hook
        # was absent would run without it, so the translation cache is flushed on every change
        if want_blocks and self._hook is None:
            self._install_block_hook()
            uc.ctl_flush_tb()
        if not want_blocks and self._hook is not None:
            uc.hook_del(self._hook)
            self._hook = None
            uc.ctl_flush_tb()
        if stack:
            low, _ = self.stack_region()
            paint = self.STACK_PAINT.to_bytes(4, "little") * ((sp - low) // 4)
            uc.mem_write(low, paint)
        try:
            uc.emu_start(self.sym(func) | 1, STOP_ADDR, count=limit)
        except unicorn.UcError as e:
            pc = uc.reg_read(a.UC_ARM_REG_PC)
            raise TinyClusterError(f"unicorn could not run {func} (pc=0x{pc:08x}): {e}") from None
        finally:
            if want_blocks and getattr(self, "_prof", None) is not None:
                self._collect_native()
        self.stack_used = 0
        if stack:
            low, _ = self.stack_region()
            mem = np.frombuffer(bytes(uc.mem_read(low, sp - low)), np.uint32)
            changed = np.nonzero(mem != self.STACK_PAINT)[0]
            if changed.size:
                if changed[0] == 0:
                    raise TinyClusterError(f"{func} used the whole {sp - low} B stack region of the harness")
                self.stack_used = sp - (low + 4 * int(changed[0]))
        self._count = sum(n * self._insns_in_block(*k) for k, n in self.blocks.items()) if want_blocks else 0
        return self._count

    def estimate(self, cpu: str = None):
        """Instruction mix and estimated cycles of the last profiled call (see builders/cycles.py)."""
        from .cycles import disassembly, estimate
        dis = disassembly(self.elf)
        insns = {}
        for key in self.blocks:
            insns[key] = [dis[a] for a in self.block_addresses(*key) if a in dis]
        return estimate(insns, self.blocks, self.taken, cpu or self.board.cpu)

    def pc(self) -> int:
        import unicorn.arm_const as a
        return self.uc.reg_read(a.UC_ARM_REG_PC)


def count_invoke_instructions(elf: Path, name: str, board, inputs: np.ndarray, profile: bool = False):
    """Instructions executed by each ``<name>_invoke`` on the harness's first len(inputs) samples.

    Returns (counts, outputs) where outputs[i] are the output bytes unicorn computed (compared
    with the host by the caller, so the counted run is known to be the right computation).
    With profile=True returns (counts, outputs, estimates, stacks): the instruction mix and
    estimated cycles of each invoke (:mod:`tinycluster.builders.cycles`) and the stack bytes
    each invoke wrote below the caller's stack pointer (painted stack region)."""
    m = ThumbMachine(elf, board)
    m.call(f"{name}_init", stack=profile)
    init_stack = m.stack_used if profile else 0
    base_in, out_addr = m.sym("tc_inputs"), m.sym("tc_output")
    in_size = inputs.shape[1]
    out_size = _obj_size(elf, "tc_output")
    counts, outs, ests, stacks = [], [], [], []
    for i in range(len(inputs)):
        src = base_in + i * in_size
        if bytes(m.uc.mem_read(src, in_size)) != inputs[i].tobytes():
            raise TinyClusterError("internal: harness inputs in the ELF differ from the generated inputs")
        n = m.call(f"{name}_invoke", src, out_addr, count=True, profile=profile, stack=profile)
        counts.append(n)
        outs.append(bytes(m.uc.mem_read(out_addr, out_size)))
        if profile:
            ests.append(m.estimate(board.cpu))
            stacks.append(max(m.stack_used, init_stack))
    if profile:
        return counts, outs, ests, stacks
    return counts, outs


def verify_count(elf: Path, name: str, board, sample: int = 0) -> tuple:
    """Cross-check the block-hook count N of one invoke with unicorn's own instruction limit:
    with count=N the call must return to the stop address, with count=N-1 it must not.
    Returns (N, returned_with_N, returned_with_N_minus_1)."""
    m = ThumbMachine(elf, board)
    m.call(f"{name}_init")
    in_size = _input_size(elf)
    src, out = m.sym("tc_inputs") + sample * in_size, m.sym("tc_output")
    n = m.call(f"{name}_invoke", src, out, count=True)
    results = []
    for limit in (n, n - 1):
        m2 = ThumbMachine(elf, board)
        m2.call(f"{name}_init")
        m2.call(f"{name}_invoke", src, out, count=False, limit=limit)
        results.append(m2.pc() & ~1 == STOP_ADDR)
    return n, results[0], results[1]


def _obj_size(elf: Path, symbol: str) -> int:
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            if sym.name == symbol:
                return sym["st_size"]
    raise TinyClusterError(f"symbol '{symbol}' not found in {elf}")


def _input_size(elf: Path) -> int:
    """Bytes per input of the harness: tc_inputs is [TC_SAMPLES][input size] (main.c next to the ELF)."""
    import re
    src = (Path(elf).parent / "main.c").read_text()
    samples = int(re.search(r"#define TC_SAMPLES (\d+)", src).group(1))
    return _obj_size(elf, "tc_inputs") // samples

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


class ThumbMachine:
    """An ELF loaded into unicorn, with helpers to call its functions and count instructions."""

    def __init__(self, elf: Path, board):
        import unicorn
        from elftools.elf.elffile import ELFFile

        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(_cpu_model(board.unicorn_cpu))
        self.syms = {}
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

        map_range(board.qemu_flash_origin, board.qemu_flash_origin + board.qemu_flash_size)
        map_range(board.qemu_ram_origin, board.qemu_ram_origin + board.qemu_ram_size)
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
        self._block_counts = {}
        self._count = 0
        self._hook = None

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

    def _on_block(self, uc, address, size, _user):
        if address != STOP_ADDR and size:
            self._count += self._insns_in_block(address, size)

    def call(self, func: str, *args, count: bool = False, limit: int = 0) -> int:
        """Call ``func(args...)`` (up to 4 integer/pointer args); returns instructions executed (if count)."""
        import unicorn
        import unicorn.arm_const as a
        uc = self.uc
        sp = self.sym("_estack") - STACK_TOP_MARGIN
        uc.reg_write(a.UC_ARM_REG_SP, sp)
        uc.reg_write(a.UC_ARM_REG_LR, STOP_ADDR | 1)
        for r, v in zip((a.UC_ARM_REG_R0, a.UC_ARM_REG_R1, a.UC_ARM_REG_R2, a.UC_ARM_REG_R3), args):
            uc.reg_write(r, v)
        self._count = 0
        if count and self._hook is None:
            self._hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        if not count and self._hook is not None:
            uc.hook_del(self._hook)
            self._hook = None
        try:
            uc.emu_start(self.sym(func) | 1, STOP_ADDR, count=limit)
        except unicorn.UcError as e:
            pc = uc.reg_read(a.UC_ARM_REG_PC)
            raise TinyClusterError(f"unicorn could not run {func} (pc=0x{pc:08x}): {e}") from None
        return self._count

    def pc(self) -> int:
        import unicorn.arm_const as a
        return self.uc.reg_read(a.UC_ARM_REG_PC)


def count_invoke_instructions(elf: Path, name: str, board, inputs: np.ndarray):
    """Instructions executed by each ``<name>_invoke`` on the harness's first len(inputs) samples.

    Returns (counts, outputs) where outputs[i] are the output bytes unicorn computed (compared
    with the host by the caller, so the counted run is known to be the right computation).
    """
    m = ThumbMachine(elf, board)
    m.call(f"{name}_init")
    base_in, out_addr = m.sym("tc_inputs"), m.sym("tc_output")
    in_size = inputs.shape[1]
    out_size = _obj_size(elf, "tc_output")
    counts, outs = [], []
    for i in range(len(inputs)):
        src = base_in + i * in_size
        if bytes(m.uc.mem_read(src, in_size)) != inputs[i].tobytes():
            raise TinyClusterError("internal: harness inputs in the ELF differ from the generated inputs")
        n = m.call(f"{name}_invoke", src, out_addr, count=True)
        counts.append(n)
        outs.append(bytes(m.uc.mem_read(out_addr, out_size)))
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

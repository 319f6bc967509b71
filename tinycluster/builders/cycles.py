"""Estimated cycles on Cortex-M from the executed instruction mix (see docs/benchmarks.md).

The instruction counter (:mod:`tinycluster.builders.icount`) records how often each basic block
ran and how often each block left to a non-sequential address (a taken branch). Each block's
instructions are decoded once, from ``arm-none-eabi-objdump -d`` of the same ELF, into classes:

    alu     data processing, moves, shifts, extends, SIMD adds, saturation, IT, ...
    mul     MUL/MLA/MLS, long multiplies, DSP multiply(-accumulate)s (SMLAD, SMLABB, SMMUL, ...)
    div     SDIV/UDIV
    load    single loads (LDR, LDRB, LDRSB, LDRH, ...)
    store   single stores
    ldm     LDM/POP/LDRD (N registers)
    stm     STM/PUSH/STRD (N registers)
    branch  B, BL, BX, BLX, CBZ/CBNZ, TBB/TBH (and loads into PC, counted as loads + a taken branch)
    fp      VFP instructions

Cycles = the sum over executed instructions of their documented issue cost, plus a pipeline
refill for every taken branch. The tables below are the processors' documented timings for
zero-wait-state memory (flash and SRAM as fast as the core; caches hit), without stalls for
register dependencies:

* Cortex-M0+ (Arm DDI 0484C, Cortex-M0+ TRM, table "Cortex-M0+ instruction summary"; also
  the Cortex-M0+ Devices Generic User Guide DUI 0662): ALU 1, MULS 1 (the fast multiplier that
  RP2040 and SAMD21 implement), LDR*/STR* 2, LDM/STM/PUSH/POP 1+N, B taken 2 (not taken 1),
  BL 3, BX/BLX 2, POP {..., pc} 3+N.
* Cortex-M4 (Arm DDI 0439B, Cortex-M4 TRM, table 3-1): ALU 1, every multiply and DSP
  multiply-accumulate 1 (MLA, SMLAD, SMLABB, SMULL, SMLAL, ...), SDIV/UDIV 2..12 (7 used),
  LDR*/STR* 2 except that a single load/store directly after another one pipelines and costs 1,
  LDM/STM/PUSH/POP 1+N, LDRD/STRD 1+2, taken branch 1+P where P (pipeline refill) is 1..3 (2
  used), POP/LDR into PC 1+N+P.
* Cortex-M33: the M4 table (same 3-stage pipeline class and single-cycle 32x32 / DSP MAC;
  Arm's M33 TRM gives no complete cycle table).
* Cortex-M7: Arm publishes no cycle table. Coarse model: every instruction issues in 1 cycle
  (loads/stores hit the caches or TCM), LDM/STM 1+N/2 (64-bit bus), a taken branch costs 1 more
  (branch predictor hit), SDIV 7; no credit for dual issue, so the M7 figure is an upper bound
  (measured pairs of independent instructions often issue together: see the Quinapalus
  "Cortex-M7 instruction cycle counts" measurements on STM32H7).

Estimated milliseconds = cycles / the board's clock (``clock_hz`` in the board profile).
"""
from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinyClusterError

OBJDUMP = "arm-none-eabi-objdump"
CLASSES = ("alu", "mul", "div", "load", "store", "ldm", "stm", "branch", "fp")

_CONDS = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"}
_LOADS = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex", "ldrexb", "ldrexh", "ldrt", "ldrbt", "ldrht",
          "ldrsbt", "ldrsht", "lda", "ldab", "ldah", "ldaex", "pld", "pli"}
_STORES = {"str", "strb", "strh", "strex", "strexb", "strexh", "strt", "strbt", "strht", "stl", "stlb", "stlh"}
_LDM = {"ldm", "ldmia", "ldmfd", "ldmdb", "ldmea", "pop", "ldrd"}
_STM = {"stm", "stmia", "stmea", "stmdb", "stmfd", "push", "strd"}
_MUL = {"mul", "mla", "mls", "smull", "umull", "smlal", "umlal", "umaal",
        "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt",
        "smlabb", "smlabt", "smlatb", "smlatt", "smlawb", "smlawt",
        "smlalbb", "smlalbt", "smlaltb", "smlaltt",
        "smuad", "smuadx", "smusd", "smusdx", "smlad", "smladx", "smlsd", "smlsdx",
        "smlald", "smlaldx", "smlsld", "smlsldx", "smmul", "smmulr", "smmla", "smmlar", "smmls", "smmlsr",
        "usad8", "usada8"}
_DIV = {"sdiv", "udiv"}
_BRANCH = {"b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh"}
_KNOWN = _LOADS | _STORES | _LDM | _STM | _MUL | _DIV | _BRANCH


def base_mnemonic(m: str) -> str:
    """'ldrsb.w' -> 'ldrsb', 'bne.n' -> 'b', 'muls' -> 'mul', 'popeq' -> 'pop' (others unchanged)."""
    m = m.lower().split(".")[0]
    if m in _KNOWN:
        return m
    if len(m) > 2 and m[-2:] in _CONDS and m[:-2] in _KNOWN:
        return m[:-2]
    if m.endswith("s") and m[:-1] in _KNOWN:
        return m[:-1]
    return m


def _reg_count(ops: str) -> int:
    m = re.search(r"\{([^}]*)\}", ops)
    if not m:
        return 1
    n = 0
    for part in m.group(1).split(","):
        part = part.strip()
        r = re.fullmatch(r"[rd](\d+)-[rd](\d+)", part)
        n += int(r.group(2)) - int(r.group(1)) + 1 if r else 1
    return max(n, 1)


@dataclass(frozen=True)
class Insn:
    cls: str
    mnemonic: str
    nregs: int = 1       # ldm/stm
    writes_pc: bool = False
    is_call: bool = False


def classify(mnemonic: str, ops: str) -> Insn:
    b = base_mnemonic(mnemonic)
    ops_l = ops.lower()
    if b.startswith("v") or b in ("fmstat", "fmrs", "fmsr"):
        return Insn("fp", b)
    if b in _BRANCH:
        return Insn("branch", b, is_call=b in ("bl", "blx"))
    if b in _LDM:
        n = 2 if b == "ldrd" else _reg_count(ops_l)
        return Insn("ldm", b, n, writes_pc=bool(re.search(r"\{[^}]*\bpc\b", ops_l)))
    if b in _STM:
        return Insn("stm", b, 2 if b == "strd" else _reg_count(ops_l))
    if b in _LOADS:
        return Insn("load", b, writes_pc=ops_l.split(",")[0].strip() == "pc")
    if b in _STORES:
        return Insn("store", b)
    if b in _MUL:
        return Insn("mul", b)
    if b in _DIV:
        return Insn("div", b)
    first = ops_l.split(",")[0].strip()
    return Insn("alu", b, writes_pc=first == "pc" and b in ("mov", "add"))


@functools.lru_cache(maxsize=16)
def _disassemble(elf: str, mtime: float) -> dict:
    try:
        r = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", elf], capture_output=True, text=True)
    except FileNotFoundError:
        raise TinyClusterError(f"{OBJDUMP} not found; install the Arm cross toolchain (binutils-arm-none-eabi)") \
            from None
    if r.returncode != 0:
        raise TinyClusterError(f"{OBJDUMP} could not disassemble {elf}: {r.stderr.strip()[:200]}")
    out = {}
    line_re = re.compile(r"^\s*([0-9a-f]+):\s+([a-z][a-z0-9.]*)\s*(.*)$")
    for line in r.stdout.splitlines():
        m = line_re.match(line)
        if m:
            out[int(m.group(1), 16)] = classify(m.group(2), m.group(3).split(";")[0].split("@")[0])
    return out


def disassembly(elf) -> dict:
    """{address: Insn} of every instruction in the ELF's code sections (cached per file version)."""
    p = Path(elf)
    return _disassemble(str(p), p.stat().st_mtime)


# -- per-core cost tables ---------------------------------------------------------------------

@dataclass(frozen=True)
class CoreTiming:
    name: str
    alu: float
    mul: float
    div: float
    load: float
    store: float
    ldm_base: float       # LDM/STM/PUSH/POP: ldm_base + ldm_per_reg * N
    ldm_per_reg: float
    pipelined_ls: float   # cost of a single load/store directly after another (M4: 1); 0 = no pipelining
    taken: float          # extra cycles of a taken branch (pipeline refill)
    taken_pc_load: float  # extra cycles of a load into PC (POP {pc}, LDR pc)
    call: float           # BL/BLX issue cost before the refill
    fp: float = 1.0
    source: str = ""


TIMINGS = {
    "cortex-m0plus": CoreTiming("cortex-m0plus", alu=1, mul=1, div=0, load=2, store=2, ldm_base=1, ldm_per_reg=1,
                                pipelined_ls=0, taken=1, taken_pc_load=2, call=2,
                                source="Arm DDI 0484C (Cortex-M0+ TRM), instruction summary; zero wait states"),
    "cortex-m4": CoreTiming("cortex-m4", alu=1, mul=1, div=7, load=2, store=2, ldm_base=1, ldm_per_reg=1,
                            pipelined_ls=1, taken=2, taken_pc_load=2, call=1,
                            source="Arm DDI 0439B (Cortex-M4 TRM) table 3-1, P = 2; zero wait states"),
    "cortex-m33": CoreTiming("cortex-m33", alu=1, mul=1, div=7, load=2, store=2, ldm_base=1, ldm_per_reg=1,
                             pipelined_ls=1, taken=2, taken_pc_load=2, call=1,
                             source="Cortex-M4 table (Arm DDI 0439B) applied to the M33; zero wait states"),
    "cortex-m7": CoreTiming("cortex-m7", alu=1, mul=1, div=7, load=1, store=1, ldm_base=1, ldm_per_reg=0.5,
                            pipelined_ls=0, taken=1, taken_pc_load=1, call=1,
                            source="coarse single-issue model (no public Arm table); upper bound, no dual issue"),
}
TIMINGS["cortex-m0"] = TIMINGS["cortex-m0plus"]
TIMINGS["cortex-m3"] = TIMINGS["cortex-m4"]


def timing_for(cpu: str) -> CoreTiming:
    if cpu not in TIMINGS:
        raise TinyClusterError(f"no cycle model for cpu '{cpu}' (known: {', '.join(sorted(TIMINGS))})")
    return TIMINGS[cpu]


def block_cost(insns: list, t: CoreTiming) -> float:
    """Static cycles of a basic block (branches counted as not taken)."""
    c, prev_ls = 0.0, False
    for i in insns:
        k = i.cls
        if k in ("load", "store"):
            c += t.pipelined_ls if (prev_ls and t.pipelined_ls) else (t.load if k == "load" else t.store)
            prev_ls = True
            continue
        prev_ls = False
        if k in ("ldm", "stm"):
            c += t.ldm_base + t.ldm_per_reg * i.nregs
        elif k == "branch":
            c += t.call if i.is_call else 1
        elif k == "mul":
            c += t.mul
        elif k == "div":
            c += t.div or 1
        elif k == "fp":
            c += t.fp
        else:
            c += t.alu
    return c


def taken_cost(last: "Insn", t: CoreTiming) -> float:
    """Extra cycles when the block ending in ``last`` continued at a non-sequential address."""
    if last is None:
        return t.taken
    if last.writes_pc and last.cls in ("ldm", "load"):
        return t.taken_pc_load
    return t.taken


@dataclass
class Estimate:
    instructions: int
    cycles: float
    mix: dict         # class -> executed instructions
    taken_branches: int
    core: str

    def to_dict(self) -> dict:
        return {"instructions": self.instructions, "cycles": int(round(self.cycles)), "core_model": self.core,
                "mix": {k: int(v) for k, v in self.mix.items() if v}, "taken_branches": int(self.taken_branches)}


def estimate(block_insns: dict, block_counts: dict, taken_counts: dict, cpu: str) -> Estimate:
    """block_insns: {(addr, size): [Insn]}; block_counts: {(addr, size): executions};
    taken_counts: {(addr, size): executions that left to a non-sequential address}."""
    t = timing_for(cpu)
    mix = dict.fromkeys(CLASSES, 0)
    cycles, n, taken = 0.0, 0, 0
    for key, cnt in block_counts.items():
        insns = block_insns[key]
        cycles += cnt * block_cost(insns, t)
        n += cnt * len(insns)
        for i in insns:
            mix[i.cls] = mix.get(i.cls, 0) + cnt
    for key, cnt in taken_counts.items():
        insns = block_insns.get(key)
        cycles += cnt * taken_cost(insns[-1] if insns else None, t)
        taken += cnt
    return Estimate(n, cycles, mix, taken, t.name)

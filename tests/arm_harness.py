"""Cortex-M unit-test harness: a small C file + runtime sources, cross-compiled with a board's
compiler flags, loaded into unicorn (tinycluster.builders.icount.ThumbMachine).

The harness C defines its data as globals and `void f(void)` entry points; the test writes the
globals through `write()`, calls an entry point (`m.call(name, count=...)`) and reads results
back with `read()`. Builds are cached under .tc_cache/armtest/ by content hash.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess

from tinycluster.boards import load_board
from tinycluster.builders.board import STRICT
from tinycluster.builders.icount import ThumbMachine
from tinycluster.paths import CACHE_DIR, RUNTIME_INCLUDE, RUNTIME_SRC

GCC = "arm-none-eabi-gcc"

LINK = """ENTRY(tc_harness_entry)
MEMORY {{ FLASH (rx) : ORIGIN = 0x{flash:x}, LENGTH = 0x100000
         RAM (rwx) : ORIGIN = 0x{ram:x}, LENGTH = 0x{ram_len:x} }}
SECTIONS {{
 .text : {{ *(.text .text.*) . = ALIGN(4); }} > FLASH
 .rodata : {{ *(.rodata .rodata.*) . = ALIGN(4); }} > FLASH
 .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
 .data : {{ *(.data .data.*) }} > RAM AT > FLASH
 .bss (NOLOAD) : {{ *(.bss .bss.* COMMON) }} > RAM
 .stack (NOLOAD) : {{ . = ALIGN(8); _sstack = .; . = . + {stack}; _estack = .; }} > RAM
}}
"""


def build_machine(board_name: str, harness_c: str, sources=(), extra_cflags=(), opt=None,
                  stack: int = 8192) -> ThumbMachine:
    """Cross-compile `harness_c` + runtime_c/src/<sources> for the board and load the ELF.
    The harness must define `void tc_harness_entry(void)` (the ELF entry, may be empty)."""
    board = load_board(board_name)
    cflags = [*board.cflags, opt or board.opt, *STRICT, *extra_cflags]
    h = hashlib.sha256()
    gccv = subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout
    for part in [gccv, " ".join(cflags), harness_c, str(stack), "v1"]:
        h.update(part.encode() + b"\0")
    srcs = [RUNTIME_SRC / s for s in sources]
    for f in srcs + sorted(RUNTIME_INCLUDE.glob("*.h")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    d = CACHE_DIR / "armtest" / f"{board.name}-{h.hexdigest()[:16]}"
    elf = d / "h.elf"
    if not elf.exists():
        tmp = d.with_name(d.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "h.c").write_text(harness_c)
        ram_len = min(board.qemu_ram_size, 0x100000)
        (tmp / "link.ld").write_text(LINK.format(flash=board.qemu_flash_origin, ram=board.qemu_ram_origin,
                                                 ram_len=ram_len, stack=stack))
        cmd = [GCC, *cflags, f"-I{RUNTIME_INCLUDE}", "-nostartfiles", "--specs=nano.specs", "-T",
               str(tmp / "link.ld"), str(tmp / "h.c"), *[str(s) for s in srcs], "-lgcc", "-o", str(tmp / "h.elf")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"cross-compile for {board.name} failed:\n{r.stderr}")
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
    return ThumbMachine(elf, board)


def write(m: ThumbMachine, name: str, data: bytes):
    m.uc.mem_write(m.sym(name), bytes(data))


def read(m: ThumbMachine, name: str, n: int) -> bytes:
    return bytes(m.uc.mem_read(m.sym(name), n))

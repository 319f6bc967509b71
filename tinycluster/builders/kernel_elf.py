"""Bare-metal ELFs of C kernels for one board, and calling them from Python under unicorn.

Used by ``benchmarks/vs_cmsis_nn.py`` (our kernels and CMSIS-NN's, side by side) and by the
Arm-path property tests: one ELF per board holds every kernel; Python writes inputs, params
structs and weights into the ELF's RAM (a bump allocator above ``.bss``) and calls the kernel
functions directly (:class:`tinycluster.builders.icount.ThumbMachine`), so thousands of cases
need one build, not one each.

Objects are compiled with the board profile's flags (``cross_cflags``: ``-mcpu``, float ABI,
``[compiler] opt``) and cached by content in ``.tc_cache/kernel-elf/`` (``TC_CACHE_DIR``
overrides the cache folder).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import TinyClusterError
from ..paths import CACHE_DIR, RUNTIME_INCLUDE, runtime_sources
from .board import GCC, SECTION_FLAGS, STRICT, _gcc_errors, _require
from .icount import ThumbMachine

FLASH = (0x00000000, 32 << 20)
RAM = (0x20000000, 32 << 20)
STACK_BYTES = 64 << 10

LINK_LD = """/* kernel ELF for unicorn: no start-up code (unicorn loads .data at its RAM address). */
MEMORY
{{
    FLASH (rx)  : ORIGIN = 0x{fo:08x}, LENGTH = 0x{fl:x}
    RAM   (rwx) : ORIGIN = 0x{ro:08x}, LENGTH = 0x{rl:x}
}}
SECTIONS
{{
    .text : {{ *(.text .text.*) . = ALIGN(4); }} > FLASH
    .rodata : {{ *(.rodata .rodata.*) . = ALIGN(4); }} > FLASH
    .ARM.exidx : {{ *(.ARM.exidx* .gnu.linkonce.armexidx.*) }} > FLASH
    .data : {{ . = ALIGN(4); *(.data .data.*) . = ALIGN(4); }} > RAM AT > FLASH
    .bss (NOLOAD) : {{ . = ALIGN(4); *(.bss .bss.* COMMON) . = ALIGN(8); _sheap = .; }} > RAM
    _estack = ORIGIN(RAM) + LENGTH(RAM);
    _sstack = _estack - {stack};
}}
"""


def cache_dir() -> Path:
    return Path(os.environ.get("TC_CACHE_DIR") or CACHE_DIR) / "kernel-elf"


def _gcc_version() -> str:
    return subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _headers_digest(include_dirs) -> str:
    h = hashlib.sha256()
    for d in include_dirs:
        for f in sorted(Path(d).rglob("*.h")):
            h.update(str(f.relative_to(d)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def compile_objects(sources, cflags, include_dirs, tag: str) -> list:
    """Compile C sources (cached by source, headers, flags and compiler); returns object paths."""
    _require(GCC)
    gv = _gcc_version()
    hd = _headers_digest(include_dirs)
    out = cache_dir() / "obj"
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for src in sources:
        src = Path(src)
        key = _hash(gv, " ".join(cflags), hd, src.name, src.read_bytes())
        obj = out / f"{tag}-{src.stem}-{key}.o"
        jobs.append((src, obj))

    def one(job):
        src, obj = job
        if obj.exists():
            return obj
        tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
        cmd = [GCC, *cflags, *[f"-I{d}" for d in include_dirs], "-c", str(src), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise TinyClusterError(f"cross-compile of {src.name} ({tag}) failed: {_gcc_errors(r.stderr)}")
        os.replace(tmp, obj)
        return obj

    with ThreadPoolExecutor(max_workers=2) as ex:
        return list(ex.map(one, jobs))


def runtime_objects(board, defines=()) -> list:
    """tinycluster's runtime for the board, compiled as the board build compiles it
    (``defines``: e.g. ``["-DTC_PORTABLE"]`` for the portable reference on the target)."""
    cflags = [*board.cflags, board.opt, *STRICT, *SECTION_FLAGS, *defines]
    return compile_objects(runtime_sources(), cflags, [RUNTIME_INCLUDE], f"tc-{board.name}")


def archive(objs, name: str) -> Path:
    """A static library of objects (the linker then takes only the members it needs)."""
    key = _hash(*[o.name for o in objs])
    lib = cache_dir() / "lib" / f"{name}-{key}.a"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run(["arm-none-eabi-ar", "rcs", str(tmp), *map(str, objs)], capture_output=True, text=True)
        if r.returncode != 0:
            raise TinyClusterError(f"arm-none-eabi-ar failed: {r.stderr.strip()[:200]}")
        os.replace(tmp, lib)
    return lib


def link(objs, libs, board, out: Path, keep=()) -> Path:
    """Link for the unicorn memory map; ``keep``: symbols to keep although nothing calls them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ld = out.with_suffix(".ld")
    ld.write_text(LINK_LD.format(fo=FLASH[0], fl=FLASH[1], ro=RAM[0], rl=RAM[1], stack=STACK_BYTES))
    cmd = [GCC, *board.cflags, board.opt, "-nostartfiles", "--specs=nano.specs", "-T", str(ld),
           "-Wl,--gc-sections", "-Wl,-e,0", *[f"-Wl,-u,{s}" for s in keep], f"-Wl,-Map={out.with_suffix('.map')}",
           *map(str, objs), *map(str, libs), "-lc", "-lgcc", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        undef = sorted({ln.split("undefined reference to")[1].strip(" `'") for ln in r.stderr.splitlines()
                        if "undefined reference to" in ln})
        detail = f"undefined: {', '.join(undef[:6])}" if undef else _gcc_errors(r.stderr)
        raise TinyClusterError(f"link of {out.name} for board '{board.name}' failed: {detail}")
    return out


class KernelMachine(ThumbMachine):
    """A kernel ELF in unicorn, with a bump allocator over the RAM above .bss."""

    def __init__(self, elf, board):
        super().__init__(elf, board, regions=[FLASH, RAM])
        self.heap0 = self.sym("_sheap")
        self.heap = self.heap0

    def reset_heap(self):
        self.heap = self.heap0

    def alloc(self, n: int, align: int = 8) -> int:
        a = (self.heap + align - 1) & ~(align - 1)
        self.heap = a + max(int(n), 1)
        if self.heap > self.sym("_sstack"):
            raise TinyClusterError("kernel ELF heap exhausted (raise kernel_elf.RAM)")
        return a

    def put(self, data, align: int = 8, offset: int = 0) -> int:
        """Copy bytes (or a numpy array's bytes) into fresh RAM; returns the address (+offset:
        deliberately misaligned buffers)."""
        b = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
        a = self.alloc(len(b) + offset, align) + offset
        if b:
            self.uc.mem_write(a, b)
        return a

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.uc.mem_read(addr, n))

    def write(self, addr: int, data) -> None:
        self.uc.mem_write(addr, data.tobytes() if hasattr(data, "tobytes") else bytes(data))


def clean_cache():
    shutil.rmtree(cache_dir(), ignore_errors=True)

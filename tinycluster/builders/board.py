"""Cross-compile a generated model for a board, check its budget and placement, run it in QEMU.

``build_for_board(dir, board)``: compiles ``DIR/<name>.c`` + ``DIR/runtime/*.c`` (the runtime copy
written by ``compile``) + a minimal
bare-metal application with ``arm-none-eabi-gcc`` (board flags, ``-std=c99 -Wall -Wextra -Werror
-pedantic``), links it for the board's memory map, reports text/rodata/data/bss and flash/SRAM use
against the board, checks from the ELF symbol table that every ``static const`` object of the
generated C (index arrays, params, const codebooks) is in flash and every mutable one (SRAM
codebooks, the arena) in SRAM, and writes ``DIR/build.json``. Over budget: TinyClusterError with the
numbers (build.json is still written, with ``"fits": false``).

``run_on_board(dir, board, samples)``: builds a harness image for the board's QEMU machine with
``samples`` seeded int8 inputs as flash data, runs it under ``qemu-system-arm`` (semihosting),
compares every output byte with the host build of the same C (cffi), counts executed instructions
per invoke by running the same ELF's ``<name>_invoke`` in ``unicorn`` (see
:mod:`tinycluster.builders.icount`), and writes ``DIR/run.json``.

Everything produced goes to ``DIR/board-<board>/`` (sources, linker script, objects, map, ELF).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boards import Board, load_board
from ..errors import TinyClusterError
from ..c_runtime import RUNTIME_SUBDIR, check_abi, output_runtime_sources
from ..paths import TEMPLATES_DIR, cache_dir

GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SECTION_FLAGS = ["-ffunction-sections", "-fdata-sections"]
BOARD_TEMPLATES = TEMPLATES_DIR / "board"
MEASURE_REGION = 64 << 20  # region length used when linking the measurement image (budget checked after)


# ----------------------------------------------------------------------------------------------
# the generated model in an output folder
# ----------------------------------------------------------------------------------------------
@dataclass
class GeneratedModel:
    dir: Path
    name: str
    c_file: Path
    h_file: Path
    input_size: int
    output_size: int
    report: dict
    runtime_sources: list = None  # the output folder's runtime/ copy (.c files)

    @property
    def NAME(self) -> str:  # noqa: N802 (the C macro prefix)
        return self.name.upper()

    @property
    def macs(self) -> int:
        return int(self.report.get("totals", {}).get("macs", 0) or 0)


def find_model(out_dir) -> GeneratedModel:
    """The model written by ``tinycluster compile`` into ``out_dir``."""
    d = Path(out_dir)
    if not d.is_dir():
        raise TinyClusterError(f"{d} is not a folder; pass the output folder of 'tinycluster compile'")
    report = {}
    rp = d / "report.json"
    if rp.exists():
        try:
            report = json.loads(rp.read_text())
        except json.JSONDecodeError as e:
            raise TinyClusterError(f"{rp} is not valid JSON ({e}); re-run 'tinycluster compile'") from None
    name = report.get("name")
    if not name:
        pairs = sorted(h.stem for h in d.glob("*.h") if (d / (h.stem + ".c")).exists())
        if len(pairs) != 1:
            raise TinyClusterError(f"{d} holds no report.json and {len(pairs)} <name>.c/<name>.h pairs; "
                                   "pass the output folder of 'tinycluster compile'")
        name = pairs[0]
    c_file, h_file = d / f"{name}.c", d / f"{name}.h"
    for f in (c_file, h_file):
        if not f.exists():
            raise TinyClusterError(f"{f} is missing; pass the output folder of 'tinycluster compile'")
    htext = h_file.read_text()
    sizes = {}
    for what in ("INPUT", "OUTPUT"):
        m = re.search(rf"#define\s+{name.upper()}_{what}_SIZE\s+\(?\s*(\d+)", htext)
        if not m:
            raise TinyClusterError(f"{h_file} has no '#define {name.upper()}_{what}_SIZE <bytes>'; "
                                   "re-run 'tinycluster compile'")
        sizes[what] = int(m.group(1))
    rt = output_runtime_sources(d, name)
    check_abi(d, name)
    return GeneratedModel(d, name, c_file, h_file, sizes["INPUT"], sizes["OUTPUT"], report, rt)


# top-level objects of the generated C: static [const] <type> <ident>[...] [attr] (= ...|;)
_DECL_RE = re.compile(
    r"^(?:static\s+)?(const\s+)?(?:(?:struct|union)\s+)?[A-Za-z_][A-Za-z0-9_]*\s+(const\s+)?"
    r"\**\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])*\s*(__attribute__\s*\(\(.*?\)\))?\s*(=|;)",
    re.M)


_AGGREGATE_RE = re.compile(
    r"^(?:static\s+)?(const\s+)?(?:struct|union)\s*(?:[A-Za-z_][A-Za-z0-9_]*)?\s*\{[^{}]*\}\s*(const\s+)?"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])*\s*(__attribute__\s*\(\(.*?\)\))?\s*(=|;)",
    re.M | re.S)


def generated_objects(c_text: str) -> dict:
    """Top-level data objects declared in the generated C: {ident: "flash" | "sram"}.

    ``const`` objects (index arrays, params structs, const codebooks) belong in flash; mutable
    ones (SRAM codebooks as initialized .data, the arena as .bss) in SRAM.
    """
    out = {}
    for m in list(_DECL_RE.finditer(c_text)) + list(_AGGREGATE_RE.finditer(c_text)):
        const = bool(m.group(1) or m.group(2))
        ident = m.group(3)
        if ident in ("return",):
            continue
        out[ident] = "flash" if const else "sram"
    return out


# ----------------------------------------------------------------------------------------------
# toolchain helpers
# ----------------------------------------------------------------------------------------------
def _require(tool: str) -> str:
    p = shutil.which(tool)
    if p is None:
        raise TinyClusterError(f"{tool} not found; install it (Debian/Ubuntu: apt-get install "
                               f"{'gcc-arm-none-eabi libnewlib-arm-none-eabi' if 'gcc' in tool else 'qemu-system-arm'})")
    return p


def _stamp() -> str:
    try:
        from importlib.metadata import version
        v = version("tinycluster")
    except Exception:  # not installed: running from the checkout
        v = "dev"
    return f"Generated by tinycluster {v} (board harness). Do not edit."


def _jinja():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def cross_cflags(board: Board) -> list:
    return [*board.cflags, board.opt, *STRICT, *SECTION_FLAGS]


def _gcc_errors(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if "error" in ln or "warning" in ln]
    lines = lines or [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return "; ".join(lines[:4])


def _compile(src: Path, obj: Path, cflags, include_dirs, board: Board) -> Path:
    cmd = [GCC, *cflags, *[f"-I{d}" for d in include_dirs], "-c", str(src), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TinyClusterError(f"cross-compile of {src.name} for board '{board.name}' failed: {_gcc_errors(r.stderr)}")
    return obj


def _compile_many(jobs, cflags, include_dirs, board):
    with ThreadPoolExecutor(max_workers=2) as ex:
        return list(ex.map(lambda j: _compile(j[0], j[1], cflags, include_dirs, board), jobs))


def _runtime_objects(board: Board, model: "GeneratedModel") -> list:
    """Objects of the output folder's runtime copy for this board, cached in the build cache
    (``cross/``) by content hash (the same copy compiles once for every model)."""
    srcs = model.runtime_sources
    rt_dir = model.dir / RUNTIME_SUBDIR
    cflags = cross_cflags(board)
    h = hashlib.sha256()
    gccv = subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout
    for part in [gccv, " ".join(cflags), "v2"]:
        h.update(part.encode() + b"\0")
    for f in srcs + sorted(rt_dir.glob("*.h")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    d = cache_dir("cross") / f"{board.name}-{h.hexdigest()[:16]}"
    done = d / ".complete"
    objs = [d / (s.stem + ".o") for s in srcs]
    if done.exists():
        return objs
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _compile_many([(s, tmp / (s.stem + ".o")) for s in srcs], cflags, [rt_dir], board)
    try:
        tmp.rename(d)
    except OSError:  # another process published the same objects first
        shutil.rmtree(tmp, ignore_errors=True)
        if not done.exists():
            raise
        return objs
    done.touch()
    return objs


def _link(objs, ldscript: Path, elf: Path, board: Board) -> Path:
    cmd = [GCC, *board.cflags, board.opt, "-nostartfiles", "--specs=nano.specs", "-T", str(ldscript),
           "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}", *[str(o) for o in objs],
           "-lgcc", "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TinyClusterError(f"link for board '{board.name}' failed: {_gcc_errors(r.stderr)}")
    return elf


def _write_harness(work: Path, board: Board, model: GeneratedModel, purpose: str, memory: dict,
                   main_template: str, **extra) -> list:
    env = _jinja()
    ctx = dict(stamp=_stamp(), board=board, name=model.name, NAME=model.NAME, purpose=purpose,
               index_section=board.index_section, codebook_section=board.codebook_section,
               stack_reserve=board.stack_reserve, **memory, **extra)
    (work / "link.ld").write_text(env.get_template("board/link.ld.j2").render(**ctx))
    (work / "startup.c").write_text(env.get_template("board/startup.c.j2").render(**ctx))
    (work / "main.c").write_text(env.get_template(f"board/{main_template}").render(**ctx))
    shutil.copy(BOARD_TEMPLATES / "tc_harness.h", work / "tc_harness.h")
    return [work / "startup.c", work / "main.c"]


def _build_image(model: GeneratedModel, board: Board, work: Path, purpose: str, memory: dict,
                 main_template: str, **extra) -> tuple:
    _require(GCC)
    work.mkdir(parents=True, exist_ok=True)
    for o in work.glob("*.o"):
        o.unlink()
    harness = _write_harness(work, board, model, purpose, memory, main_template, **extra)
    cflags = cross_cflags(board)
    incs = [model.dir, work]
    rt = _runtime_objects(board, model)
    own = _compile_many([(model.c_file, work / f"model_{model.name}.o")] + [(s, s.with_suffix(".o")) for s in harness],
                        cflags, incs, board)
    elf = _link(own + rt, work / "link.ld", work / f"{model.name}.elf", board)
    return elf, own[0], rt


# ----------------------------------------------------------------------------------------------
# ELF analysis
# ----------------------------------------------------------------------------------------------
def _section_class(name: str) -> str:
    if name in (".text", ".ARM.exidx", ".vectors") or name.startswith((".text", ".ARM.exidx")):
        return "text"
    if name.startswith(".rodata"):
        return "rodata"
    if name.startswith(".data"):
        return "data"
    if name.startswith(".bss"):
        return "bss"
    if name == ".stack":
        return "stack"
    return "other"


def elf_sections(elf: Path) -> dict:
    """Sizes of the allocated sections grouped as text/rodata/data/bss (+ stack, other)."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "stack": 0, "other": 0}
    with open(elf, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"]:
                sizes[_section_class(s.name)] += s["sh_size"]
    return sizes


def elf_symbols(elf: Path) -> dict:
    """{name: (address, size, binding)} of the data objects (and functions) in the ELF."""
    from elftools.elf.elffile import ELFFile
    out = {}
    with open(elf, "rb") as f:
        tab = ELFFile(f).get_section_by_name(".symtab")
        if tab is None:
            raise TinyClusterError(f"{elf} has no symbol table; cannot check placement")
        for sym in tab.iter_symbols():
            if sym["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC") and sym.name:
                out.setdefault(sym.name, (sym["st_value"], sym["st_size"], sym["st_info"]["bind"]))
    return out


def _undefined_externals(model_obj, runtime_objs) -> list:
    """Symbols the model needs from libc/libgcc: the model object's undefined symbols, closed
    over the runtime objects that define them (as the linker pulls objects), minus what those
    objects define."""
    from elftools.elf.elffile import ELFFile

    def table(o):
        d, u = set(), set()
        with open(o, "rb") as f:
            for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
                if not sym.name or sym["st_info"]["type"] == "STT_FILE":
                    continue
                if sym["st_shndx"] == "SHN_UNDEF":
                    u.add(sym.name)
                elif sym["st_info"]["bind"] != "STB_LOCAL":
                    d.add(sym.name)
        return d, u

    tables = {o: table(o) for o in [model_obj, *runtime_objs]}
    used, todo = {model_obj}, [model_obj]
    while todo:
        for name in tables[todo.pop()][1]:
            for o, (d, _) in tables.items():
                if name in d and o not in used:
                    used.add(o)
                    todo.append(o)
    defined = set().union(*(tables[o][0] for o in used))
    needed = set().union(*(tables[o][1] for o in used))
    return sorted(needed - defined)


def check_placement(elf: Path, model: GeneratedModel, flash: tuple, ram: tuple) -> dict:
    """Check from the ELF's symbol table where the generated C's objects landed.

    flash/ram: (origin, length). Every const object of the generated C must be in flash, every
    mutable one in RAM; index arrays (``*_idx``) must exist. Returns a summary; raises
    TinyClusterError naming the symbol and its address otherwise.
    """
    objs = generated_objects(model.c_file.read_text())
    syms = elf_symbols(elf)

    def inside(addr, region):
        return region[0] <= addr < region[0] + region[1]

    summary = {"flash": [], "sram": [], "index_arrays": 0, "codebooks_sram": 0, "codebooks_flash": 0,
               "sram_initialized": 0, "sram_zeroed": 0, "arena": None}
    c_text = model.c_file.read_text()
    for ident, want in sorted(objs.items()):
        if ident not in syms:
            continue  # removed by the compiler (unused) or folded into code
        addr, size, _ = syms[ident]
        where = "flash" if inside(addr, flash) else "sram" if inside(addr, ram) else "elsewhere"
        if where != want:
            raise TinyClusterError(
                f"placement check failed for '{ident}' of {model.c_file.name}: declared "
                f"{'const' if want == 'flash' else 'mutable'} so it belongs in {want}, but the ELF "
                f"puts it at 0x{addr:08x} ({where}); check [placement] in the board profile")
        summary[want].append({"symbol": ident, "address": addr, "size": size})
        if ident.endswith("_idx"):  # the emitter's naming (EmitContext.packed_indices)
            summary["index_arrays"] += 1
        if ident.endswith("_cb"):  # the emitter's naming of codebooks
            summary[f"codebooks_{want}"] += 1
        if want == "sram":
            initialized = re.search(rf"\b{re.escape(ident)}\s*(\[[^\]]*\])*\s*(__attribute__\s*\(\(.*?\)\))?\s*=",
                                    c_text) is not None
            summary["sram_initialized" if initialized else "sram_zeroed"] += 1
            if not initialized and (summary["arena"] is None or size > summary["arena"]["size"]):
                summary["arena"] = {"symbol": ident, "address": addr, "size": size}
    idx_declared = [i for i in objs if i.endswith("_idx")]
    if idx_declared and summary["index_arrays"] == 0:
        raise TinyClusterError(f"placement check: none of the {len(idx_declared)} index arrays of "
                               f"{model.c_file.name} is in the ELF symbol table of {elf.name}")
    return summary


def check_sections(model_obj: Path, board: Board) -> tuple:
    """In the model's object file, index arrays (``*_idx``) should sit in the profile's
    ``index_section`` and SRAM codebooks (``*_cb``) in its ``codebook_section`` when set.
    Returns ({symbol: section} of the symbols that do, [notes about those that do not]): a model
    compiled without ``--board`` lacks the section attributes, which is legal (flash/SRAM placement
    is checked separately) but worth saying."""
    from elftools.elf.elffile import ELFFile
    want = {"_idx": board.index_section, "_cb": board.codebook_section if board.codebook_in == "sram" else ""}
    seen, misses = {}, {}
    with open(model_obj, "rb") as f:
        ef = ELFFile(f)
        for sym in ef.get_section_by_name(".symtab").iter_symbols():
            if sym["st_info"]["type"] != "STT_OBJECT" or not isinstance(sym["st_shndx"], int):
                continue
            sec = ef.get_section(sym["st_shndx"]).name
            for suffix, section in want.items():
                if section and sym.name.endswith(suffix):
                    if suffix == "_cb" and sec.startswith(".rodata"):
                        continue  # const codebooks (compiled with --codebooks flash) stay in flash
                    if sec != section:
                        misses.setdefault(suffix, []).append(sym.name)
                    else:
                        seen[sym.name] = sec
    notes = [f"{len(v)} {'index arrays' if k == '_idx' else 'codebooks'} are not in section {want[k]} "
             f"(e.g. {v[0]}); compile with --board {board.name} to get the profile's section attributes"
             for k, v in misses.items()]
    return seen, notes


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------
def _fmt_kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def build_for_board(out_dir, board, *, write_json: bool = True) -> dict:
    """Cross-compile the model in ``out_dir`` for ``board`` (name, path or Board); returns build.json's dict.

    Raises TinyClusterError on a compile error, a placement error, or when flash or SRAM use
    exceeds the board (after writing build.json with ``"fits": false``).
    """
    board = load_board(board)
    model = find_model(out_dir)
    work = model.dir / f"board-{board.name}" / "build"
    memory = dict(flash_origin=board.flash_origin, flash_length=max(board.flash_size, MEASURE_REGION),
                  ram_origin=board.sram_origin, ram_length=max(board.sram_size, MEASURE_REGION))
    elf, model_obj, rt_objs = _build_image(model, board, work, "measurement image, the chip's memory map",
                                           memory, "main_build.c.j2")
    sec = elf_sections(elf)
    flash_used = sec["text"] + sec["rodata"] + sec["data"]
    sram_used = sec["data"] + sec["bss"] + board.stack_reserve
    placement = check_placement(elf, model, (board.flash_origin, memory["flash_length"]),
                                (board.sram_origin, memory["ram_length"]))
    sections_checked, notes = check_sections(model_obj, board)
    fits = flash_used <= board.flash_size and sram_used <= board.sram_size
    totals = model.report.get("totals", {})
    result = {
        "board": board.name,
        "cpu": board.cpu,
        "flash_used": flash_used,
        "flash_size": board.flash_size,
        "sram_used": sram_used,
        "sram_size": board.sram_size,
        "fits": fits,
        "sections": {"text": sec["text"], "rodata": sec["rodata"], "data": sec["data"], "bss": sec["bss"],
                     "stack_reserve": board.stack_reserve},
        "placement": {
            "codebook_in": board.codebook_in,
            "index_arrays_in_flash": placement["index_arrays"],
            "codebooks_in_sram": placement["codebooks_sram"],
            "codebooks_in_flash": placement["codebooks_flash"],
            "arena": placement["arena"],
            "section_attributes_checked": len(sections_checked),
            "flash_objects": len(placement["flash"]),
            "sram_objects": len(placement["sram"]),
            "sram_initialized_objects": placement["sram_initialized"],
            "sram_zeroed_objects": placement["sram_zeroed"],
        },
        "report_totals": {k: totals[k] for k in ("flash_bytes", "sram_bytes", "arena_bytes", "codebook_bytes")
                          if k in totals},
        "notes": notes,
        "libc_symbols": _undefined_externals(model_obj, rt_objs),
        "cflags": cross_cflags(board),
        "elf": str(elf.relative_to(model.dir)),
    }
    if write_json:
        (model.dir / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    if not fits:
        over = []
        if flash_used > board.flash_size:
            over.append(f"flash {_fmt_kb(flash_used)} > {_fmt_kb(board.flash_size)}")
        if sram_used > board.sram_size:
            over.append(f"SRAM {_fmt_kb(sram_used)} (data {sec['data']:,} + bss {sec['bss']:,} + stack "
                        f"{board.stack_reserve:,}) > {_fmt_kb(board.sram_size)}")
        raise TinyClusterError(f"model '{model.name}' does not fit board '{board.name}': {'; '.join(over)}; "
                               "use fewer bits/clusters or a bigger board")
    return result


def format_build(result: dict) -> str:
    s, p = result["sections"], result["placement"]
    lines = [
        f"board {result['board']} ({result['cpu']}): text {s['text']:,}  rodata {s['rodata']:,}  "
        f"data {s['data']:,}  bss {s['bss']:,}  stack reserve {s['stack_reserve']:,} (bytes)",
        f"flash {result['flash_used']:,} / {result['flash_size']:,} B "
        f"({100 * result['flash_used'] / result['flash_size']:.1f}%)   "
        f"SRAM {result['sram_used']:,} / {result['sram_size']:,} B "
        f"({100 * result['sram_used'] / result['sram_size']:.1f}%)",
        f"placement (from the ELF): {p['index_arrays_in_flash']} index arrays in flash, "
        f"{p['codebooks_in_sram']} codebooks in SRAM, {p['codebooks_in_flash']} in flash, "
        + (f"arena {p['arena']['symbol']} ({p['arena']['size']:,} B) in SRAM" if p["arena"] else "no arena"),
    ]
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------
def seeded_inputs(n: int, size: int, seed: int) -> np.ndarray:
    """The deterministic int8 inputs of ``run`` (numpy PCG64 with ``seed``)."""
    return np.random.default_rng(seed).integers(-128, 128, size=(n, size), dtype=np.int16).astype(np.int8)


def host_outputs(model: GeneratedModel, inputs: np.ndarray) -> np.ndarray:
    """The same generated C built for the host (cffi), run on ``inputs``."""
    from .host import build_host_module
    cdef = f"void {model.name}_init(void); int {model.name}_invoke(const int8_t *, int8_t *);"
    ffi, lib = build_host_module([model.c_file, *model.runtime_sources], cdef, header=f'#include "{model.name}.h"',
                                 include_dirs=[model.dir, model.dir / RUNTIME_SUBDIR], name_hint=f"board_{model.name}",
                                 runtime_include=False)
    getattr(lib, f"{model.name}_init")()
    invoke = getattr(lib, f"{model.name}_invoke")
    outs = np.zeros((len(inputs), model.output_size), np.int8)
    obuf = ffi.new("int8_t[]", model.output_size)
    for i, x in enumerate(inputs):
        ibuf = ffi.new("int8_t[]", bytes(np.ascontiguousarray(x, np.int8).tobytes()))
        rc = invoke(ibuf, obuf)
        if rc != 0:
            raise TinyClusterError(f"host build of {model.name} returned {rc} from invoke on sample {i}")
        outs[i] = np.frombuffer(ffi.buffer(obuf), np.int8)
    return outs


def build_run_image(out_dir, board, samples: int, seed: int = 0) -> tuple:
    """The harness ELF for the board's QEMU machine; returns (elf, model, inputs)."""
    board = load_board(board)
    model = find_model(out_dir)
    inputs = seeded_inputs(samples, model.input_size, seed)
    rows = [", ".join(str(int(v)) for v in r) for r in inputs]
    work = model.dir / f"board-{board.name}" / "run"
    memory = dict(flash_origin=board.qemu_flash_origin, flash_length=board.qemu_flash_size,
                  ram_origin=board.qemu_ram_origin, ram_length=board.qemu_ram_size)
    elf, _, _ = _build_image(model, board, work, f"QEMU {board.qemu_machine} memory map", memory,
                             "main_run.c.j2", samples=samples, seed=seed, inputs=rows)
    check_placement(elf, model, (board.qemu_flash_origin, board.qemu_flash_size),
                    (board.qemu_ram_origin, board.qemu_ram_size))
    return elf, model, inputs


_OUT_RE = re.compile(r"^OUT (\d+) (-?\d+) ([0-9a-f]*)\s*$")


def run_qemu(elf: Path, board: Board, timeout: float = 120.0) -> dict:
    """Run the harness ELF under qemu-system-arm; returns {"outputs": {i: (rc, bytes)}, "stack": n}."""
    _require(QEMU)
    cmd = [QEMU, "-M", board.qemu_machine, *(["-cpu", board.qemu_cpu] if board.qemu_cpu else []),
           "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TinyClusterError(f"QEMU ({board.qemu_machine}) did not finish {elf.name} within {timeout:.0f} s; "
                               "raise --timeout or check the board's [qemu] memory map") from None
    text = r.stdout + "\n" + r.stderr
    outputs, stack, ended = {}, None, False
    for line in text.splitlines():
        m = _OUT_RE.match(line.strip())
        if m:
            outputs[int(m.group(1))] = (int(m.group(2)), bytes.fromhex(m.group(3)))
        elif line.startswith("STACK "):
            stack = int(line.split()[1])
        elif line.strip() == "END":
            ended = True
    if r.returncode != 0 or not ended:
        detail = "CPU fault" if "TC_FAULT" in text else (text.strip().splitlines() or ["no output"])[-1]
        raise TinyClusterError(f"QEMU ({board.qemu_machine}) run of {elf.name} failed (exit {r.returncode}): "
                               f"{detail}")
    return {"outputs": outputs, "stack_used": stack, "seconds": time.monotonic() - t0}


def run_on_board(out_dir, board, samples: int = 20, *, seed: int = 0, timeout: float = 120.0,
                 count: int = 3, write_json: bool = True) -> dict:
    """Run the model in QEMU on ``samples`` seeded inputs, compare with the host, count instructions.

    count: how many of the samples to run through the unicorn instruction counter (0: none).
    Returns run.json's dict; raises TinyClusterError on any mismatch (after writing run.json).
    """
    board = load_board(board)
    if samples < 1:
        raise TinyClusterError("--samples must be at least 1")
    elf, model, inputs = build_run_image(out_dir, board, samples, seed)
    q = run_qemu(elf, board, timeout)
    ref = host_outputs(model, inputs)
    mismatched = []
    for i in range(samples):
        rc, got = q["outputs"].get(i, (None, b""))
        if rc != 0 or got != ref[i].tobytes():
            mismatched.append(i)
    result = {
        "board": board.name,
        "machine": board.qemu_machine,
        "cpu": board.cpu,
        "samples": samples,
        "seed": seed,
        "mismatches": len(mismatched),
        "mismatched_samples": mismatched[:20],
        "stack_used": q["stack_used"],
        "qemu_seconds": round(q["seconds"], 3),
        "instructions_per_invoke": None,
        "instructions_per_mac": None,
        "cycles_per_invoke": None,
        "cycles_per_mac": None,
        "ms_per_invoke": None,
        "clock_hz": board.clock_hz or None,
        "macs": model.macs or None,
        "counter": None,
        "elf": str(elf.relative_to(model.dir)),
    }
    if count > 0:
        from .cycles import timing_for
        from .icount import count_invoke_instructions
        n = min(count, samples)
        counts, outs, ests, stacks = count_invoke_instructions(elf, model.name, board, inputs[:n], profile=True)
        bad = [i for i in range(n) if outs[i] != ref[i].tobytes()]
        result["counter"] = {"method": f"unicorn {board.unicorn_cpu} basic-block hook", "samples": n,
                             "per_sample": counts, "mismatches": len(bad)}
        per = int(np.median(counts))
        result["instructions_per_invoke"] = per
        if model.macs:
            result["instructions_per_mac"] = round(per / model.macs, 3)
        # estimated cycles from the executed instruction mix (docs/benchmarks.md, "Cycle model")
        mid = sorted(range(n), key=lambda i: counts[i])[n // 2]
        est = ests[mid]
        cyc = int(round(est.cycles))
        result["cycles_per_invoke"] = cyc
        result["cycles_per_mac"] = round(cyc / model.macs, 3) if model.macs else None
        result["clock_hz"] = board.clock_hz or None
        result["ms_per_invoke"] = round(1000.0 * cyc / board.clock_hz, 3) if board.clock_hz else None
        result["cycle_model"] = {"core": est.core, "source": timing_for(board.cpu).source,
                                 "assumes": "zero wait states (caches hit), no stalls for register dependencies"}
        result["instruction_mix"] = est.to_dict()["mix"]
        result["taken_branches"] = est.taken_branches
        # stack: the emulator's stack region is painted before init and before each invoke and
        # scanned after it (bytes written below the caller's stack pointer); QEMU's figure is
        # the harness's own painting of the whole run (main + init + invoke)
        result["stack_used_qemu"] = q["stack_used"]
        result["stack_used"] = max(stacks)
        if bad:
            mismatched = sorted(set(mismatched) | set(bad))
            result["mismatches"] = len(mismatched)
    if write_json:
        (model.dir / "run.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["mismatches"]:
        raise TinyClusterError(
            f"board '{board.name}' ({board.qemu_machine}): {result['mismatches']} of {samples} samples differ from "
            f"the host build (first: sample {mismatched[0]}); see {model.dir / 'run.json'}")
    stack = max(v for v in (q["stack_used"], result["stack_used"]) if v is not None) \
        if (q["stack_used"], result["stack_used"]) != (None, None) else None
    if stack is not None and stack > board.stack_reserve:
        raise TinyClusterError(f"board '{board.name}': the run used {stack:,} B of stack, more than the "
                               f"profile's stack_reserve {board.stack_reserve:,} B; raise [memory] stack_reserve")
    return result


def format_run(result: dict) -> str:
    s = (f"board {result['board']} on QEMU {result['machine']}: {result['samples']} samples, "
         f"{result['mismatches']} mismatches vs host; stack used {result['stack_used']} B")
    if result["instructions_per_invoke"] is not None:
        s += f"\ninstructions per invoke {result['instructions_per_invoke']:,}"
        if result["instructions_per_mac"] is not None:
            s += f" ({result['instructions_per_mac']} per MAC, {result['macs']:,} MACs)"
        s += f" [{result['counter']['method']}]"
    if result.get("cycles_per_invoke") is not None:
        s += f"\nestimated cycles per invoke {result['cycles_per_invoke']:,}"
        if result.get("cycles_per_mac") is not None:
            s += f" ({result['cycles_per_mac']} per MAC)"
        if result.get("ms_per_invoke") is not None:
            s += f", {result['ms_per_invoke']:.2f} ms at {result['clock_hz'] / 1e6:g} MHz"
        s += f" [{result['cycle_model']['core']} timings, zero wait states]"
    if result.get("stack_used_qemu") is not None and result.get("stack_used") != result.get("stack_used_qemu"):
        s += f"\nstack: {result['stack_used']} B per invoke (unicorn), {result['stack_used_qemu']} B for the whole QEMU run"
    return s

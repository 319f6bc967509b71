"""Board profiles: one TOML file per board in ``boards/`` (adding a board is adding a file).

A profile says how to compile for the board (``[compiler]``), what it has (``[memory]``: the
real chip's flash/SRAM origins and sizes, the budget ``build`` checks against), where the
generated model's data goes (``[placement]``, passed to the C emitter), and how to run its
code in an emulator (``[qemu]``: machine and that machine's memory map; ``[unicorn]``: the
CPU model used for instruction counting). ``boards/README.md`` documents every key.

:func:`load_board` validates a profile completely and raises a one-line
:class:`TinyClusterError` naming the file and the key for anything wrong.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TinyClusterError
from .paths import BOARDS_DIR

CODEBOOK_PLACES = ("sram", "flash")
OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og")
UNICORN_CPUS = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33")
SECTION_RE = re.compile(r"^\.[A-Za-z0-9_.]+$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

_STR, _INT, _LIST = "string", "integer", "list of strings"

# section -> key -> (type, required)
SCHEMA = {
    "": {"name": (_STR, True), "description": (_STR, True), "cpu": (_STR, True), "arch": (_STR, True),
         "clock_hz": (_INT, False)},
    "compiler": {"cflags": (_LIST, True), "opt": (_STR, True)},
    "memory": {"flash_origin": (_INT, True), "flash_size": (_INT, True), "sram_origin": (_INT, True),
               "sram_size": (_INT, True), "stack_reserve": (_INT, True)},
    "placement": {"codebook_in": (_STR, True), "index_section": (_STR, False),
                  "codebook_section": (_STR, False)},
    "qemu": {"machine": (_STR, True), "cpu": (_STR, False), "flash_origin": (_INT, True),
             "flash_size": (_INT, True), "ram_origin": (_INT, True), "ram_size": (_INT, True)},
    "unicorn": {"cpu": (_STR, True)},
    "firmware": {"sdk": (_STR, False)},
}
OPTIONAL_SECTIONS = ("firmware",)
FIRMWARE_SDKS = ("cmake", "pico")


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    cpu: str
    arch: str
    cflags: tuple
    opt: str
    flash_origin: int
    flash_size: int
    sram_origin: int
    sram_size: int
    stack_reserve: int
    codebook_in: str
    index_section: str
    codebook_section: str
    qemu_machine: str
    qemu_cpu: str
    qemu_flash_origin: int
    qemu_flash_size: int
    qemu_ram_origin: int
    qemu_ram_size: int
    unicorn_cpu: str
    firmware_sdk: str = "cmake"
    clock_hz: int = 0  # core clock for estimated milliseconds (0: unknown)
    path: Path = field(default=None, compare=False)

    @property
    def hard_float(self) -> bool:
        return "-mfloat-abi=hard" in self.cflags

    def emit_options(self) -> dict:
        """Keyword arguments for :class:`tinycluster.emit_context.EmitContext` (placement).

        ``codebook_placement``: "sram" (initialized .data) or "flash" (const);
        ``flash_section`` / ``sram_section``: the C attribute text for index arrays and SRAM
        codebooks ("" = the compiler's default .rodata / .data).
        """
        def attr(sec):
            return f'__attribute__((section("{sec}")))' if sec else ""
        return {"codebook_placement": self.codebook_in,
                "flash_section": attr(self.index_section),
                "sram_section": attr(self.codebook_section) if self.codebook_in == "sram" else ""}

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "path"}
        d["cflags"] = list(self.cflags)
        return d


def board_files() -> list:
    return sorted(BOARDS_DIR.glob("*.toml"))


def available_boards() -> list:
    return [p.stem for p in board_files()]


def _check(path: Path, data: dict) -> None:
    where = path.name

    def bad(msg):
        raise TinyClusterError(f"board profile {where}: {msg}; fix the file (keys are described in boards/README.md)")

    for sec, keys in SCHEMA.items():
        table = data if sec == "" else data.get(sec)
        label = "top level" if sec == "" else f"[{sec}]"
        if table is None and sec in OPTIONAL_SECTIONS:
            continue
        if table is None:
            bad(f"missing section [{sec}]")
        if not isinstance(table, dict):
            bad(f"{sec} must be a table [{sec}]")
        for key, (typ, required) in keys.items():
            if key not in table:
                if required:
                    bad(f"{label} is missing the key '{key}' ({typ})")
                continue
            v = table[key]
            ok = ((typ == _STR and isinstance(v, str))
                  or (typ == _INT and isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                  or (typ == _LIST and isinstance(v, list) and all(isinstance(x, str) for x in v)))
            if not ok:
                bad(f"{label} key '{key}' must be a {'non-negative ' if typ == _INT else ''}{typ}, got {v!r}")
        extra = [k for k in table if k not in keys and not (sec == "" and k in SCHEMA)]
        if extra:
            bad(f"{label} has unknown key(s) {', '.join(sorted(extra))} (known: {', '.join(keys)})")
    unknown_sections = [k for k, v in data.items() if isinstance(v, dict) and k not in SCHEMA]
    if unknown_sections:
        bad(f"unknown section(s) {', '.join(unknown_sections)} (known: {', '.join(s for s in SCHEMA if s)})")

    if not NAME_RE.match(data["name"]):
        bad(f"name {data['name']!r} must be lower case letters, digits, '-' or '_'")
    comp, mem, pl, q, u = (data[s] for s in ("compiler", "memory", "placement", "qemu", "unicorn"))
    if comp["opt"] not in OPT_LEVELS:
        bad(f"[compiler] opt must be one of {', '.join(OPT_LEVELS)}, got {comp['opt']!r}")
    if not any(f.startswith("-mcpu=") for f in comp["cflags"]):
        bad("[compiler] cflags must contain -mcpu=...")
    if "-mthumb" not in comp["cflags"]:
        bad("[compiler] cflags must contain -mthumb (Cortex-M runs Thumb code only)")
    for k in ("flash_size", "sram_size"):
        if mem[k] <= 0:
            bad(f"[memory] {k} must be positive")
    for k in ("flash_size", "ram_size"):
        if q[k] <= 0:
            bad(f"[qemu] {k} must be positive")
    if pl["codebook_in"] not in CODEBOOK_PLACES:
        bad(f"[placement] codebook_in must be one of {', '.join(CODEBOOK_PLACES)}, got {pl['codebook_in']!r}")
    for k in ("index_section", "codebook_section"):
        s = pl.get(k, "")
        if s and not SECTION_RE.match(s):
            bad(f"[placement] {k} {s!r} is not a section name like '.rodata.tc_indices'")
    if pl.get("index_section", "").startswith((".data", ".bss")):
        bad("[placement] index_section must be a flash section (.rodata...), index arrays are const")
    if pl.get("codebook_section", "") and not pl["codebook_section"].startswith(".data"):
        bad("[placement] codebook_section must be a .data... section (initialized SRAM data)")
    sdk = data.get("firmware", {}).get("sdk", "cmake")
    if sdk not in FIRMWARE_SDKS:
        bad(f"[firmware] sdk must be one of {', '.join(FIRMWARE_SDKS)}, got {sdk!r}")
    if u["cpu"] not in UNICORN_CPUS:
        bad(f"[unicorn] cpu must be one of {', '.join(UNICORN_CPUS)}, got {u['cpu']!r}")
    if path.stem != data["name"] and path.parent == BOARDS_DIR:
        bad(f"name {data['name']!r} must equal the file name {path.stem!r}")


def load_board_file(path) -> Board:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TinyClusterError(f"board profile {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise TinyClusterError(f"board profile {path.name}: not valid TOML ({e}); fix the file") from None
    _check(path, data)
    comp, mem, pl, q, u = (data[s] for s in ("compiler", "memory", "placement", "qemu", "unicorn"))
    return Board(
        name=data["name"], description=data["description"], cpu=data["cpu"], arch=data["arch"],
        cflags=tuple(comp["cflags"]), opt=comp["opt"],
        flash_origin=mem["flash_origin"], flash_size=mem["flash_size"], sram_origin=mem["sram_origin"],
        sram_size=mem["sram_size"], stack_reserve=mem["stack_reserve"],
        codebook_in=pl["codebook_in"], index_section=pl.get("index_section", ""),
        codebook_section=pl.get("codebook_section", ""),
        qemu_machine=q["machine"], qemu_cpu=q.get("cpu", ""), qemu_flash_origin=q["flash_origin"],
        qemu_flash_size=q["flash_size"], qemu_ram_origin=q["ram_origin"], qemu_ram_size=q["ram_size"],
        unicorn_cpu=u["cpu"], firmware_sdk=data.get("firmware", {}).get("sdk", "cmake"),
        clock_hz=data.get("clock_hz", 0), path=path)


def load_board(name_or_path) -> Board:
    """A board by name (``boards/<name>.toml``) or by path to a ``.toml`` file."""
    if isinstance(name_or_path, Board):
        return name_or_path
    s = str(name_or_path)
    p = Path(s)
    if s.endswith(".toml") or p.is_file():
        return load_board_file(p)
    f = BOARDS_DIR / f"{s}.toml"
    if not f.exists():
        raise TinyClusterError(f"unknown board '{s}'; available: {', '.join(available_boards())} "
                               f"(or pass the path of a .toml profile)")
    return load_board_file(f)


def load_all_boards() -> list:
    return [load_board_file(p) for p in board_files()]

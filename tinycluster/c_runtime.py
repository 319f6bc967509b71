"""The C runtime a generated model is built with: its ABI version and the copy in each output folder.

``tinycluster compile`` writes the runtime sources the model needs into ``<out>/runtime/`` (every
header, and the ``.c`` files defining the kernels the model calls, closed over the kernels those
call), so that the output folder builds on its own::

    cc -std=c99 -Wall -Wextra -Werror -pedantic out/*.c out/runtime/*.c

The generated ``<name>.c`` includes ``"runtime/tc_kernels.h"`` (found relative to the file, no
``-I`` needed) and refuses to compile (``#error``) against a runtime whose
``TC_RUNTIME_ABI_VERSION`` (``runtime_c/include/tc_common.h``) is not the one it was generated
for. ``verify``, ``build``, ``run`` and the firmware projects build from that copy, never from the
installed package's runtime.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .errors import TinyClusterError
from .paths import RUNTIME_INCLUDE, runtime_headers, runtime_sources

#: folder of the runtime copy inside an output folder (and the prefix of the generated #include)
RUNTIME_SUBDIR = "runtime"
ABI_MACRO = "TC_RUNTIME_ABI_VERSION"
_ABI_RE = re.compile(rf"^\s*#\s*define\s+{ABI_MACRO}\s+\(?\s*(\d+)", re.M)
_IDENT_RE = re.compile(r"\btc_[A-Za-z0-9_]+\b")
# an external function definition: starts in column 0, not static, name before '(' on that line,
# not a prototype (no ';' at the end of the line)
_DEF_RE = re.compile(r"^(?!static\b)(?![ \t#/*])[^\n;]*?\b(tc_[A-Za-z0-9_]+)\s*\([^\n;]*$", re.M)


def abi_version(header: Path = None) -> int:
    """TC_RUNTIME_ABI_VERSION as defined in tc_common.h (the installed runtime's by default)."""
    header = Path(header) if header is not None else RUNTIME_INCLUDE / "tc_common.h"
    try:
        m = _ABI_RE.search(header.read_text())
    except OSError as e:
        raise TinyClusterError(f"cannot read {header} ({e.strerror or e}); the tinycluster installation is "
                               "incomplete: reinstall it") from None
    if not m:
        raise TinyClusterError(f"{header} does not define {ABI_MACRO}")
    return int(m.group(1))


@lru_cache(maxsize=None)
def _definitions() -> dict:
    """{external function name: runtime source file defining it} (every definition, so a
    function defined per architecture in several files pulls in all of them)."""
    defs = {}
    for src in runtime_sources():
        for m in _DEF_RE.finditer(src.read_text()):
            defs.setdefault(m.group(1), []).append(src)
    return defs


_INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"(?:[^"/]*/)?([^"/]+)"', re.M)


def _function_bodies(text: str) -> str:
    """The bodies of the functions defined in a C text (a header's inline functions), without
    its prototypes: a prototype names a kernel without needing it."""
    out, i = [], 0
    for m in re.finditer(r"\)\s*\{", text):
        if m.start() < i:
            continue
        depth, j = 0, m.end() - 1
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(text[m.end():j])
        i = j
    return "\n".join(out)


def _names_used(text: str, header: bool = False) -> set:
    """``tc_*`` identifiers a C text uses, with those the inline functions of the runtime headers
    it includes use (transitively)."""
    names = set(_IDENT_RE.findall(_function_bodies(text) if header else text))
    seen, todo = set(), [text]
    while todo:
        t = todo.pop()
        for inc in _INCLUDE_RE.findall(t):
            h = RUNTIME_INCLUDE / inc
            if inc not in seen and h.is_file():
                seen.add(inc)
                ht = h.read_text()
                names.update(_IDENT_RE.findall(_function_bodies(ht)))
                todo.append(ht)
    return names


def needed_sources(c_text: str) -> list:
    """Runtime .c files a generated model needs: those defining a ``tc_*`` function it (or a
    runtime header it includes) names, closed over the functions those files name. A superset
    is harmless (the linker drops unused code); a missing file fails the stand-alone build test."""
    defs = _definitions()
    todo = _names_used(c_text)
    seen_names, files = set(), set()
    while todo:
        name = todo.pop()
        if name in seen_names:
            continue
        seen_names.add(name)
        for src in defs.get(name, ()):
            if src not in files:
                files.add(src)
                todo.update(_names_used(src.read_text()))
    return sorted(files)


def runtime_files(c_text: str) -> dict:
    """{"runtime/<file>": text} of the runtime copy for a generated model's C source: every
    header (they include each other) and the needed sources."""
    files = {}
    for f in runtime_headers() + needed_sources(c_text):
        files[f"{RUNTIME_SUBDIR}/{f.name}"] = f.read_text()
    return files


def output_runtime_sources(out_dir, name: str) -> list:
    """The runtime copy of an output folder (its .c files), checked: a folder written by an older
    tinycluster (no runtime/ copy) or one whose copy is damaged gets a one-line error."""
    rt = Path(out_dir) / RUNTIME_SUBDIR
    if not (rt / "tc_common.h").is_file() or not (rt / "tc_kernels.h").is_file():
        raise TinyClusterError(f"{out_dir}: no C runtime copy in {RUNTIME_SUBDIR}/ (written by an older tinycluster, "
                               f"or files were removed); run `tinycluster compile` again")
    return sorted(rt.glob("*.c"))


def check_abi(out_dir, name: str) -> int:
    """The ABI version of an output folder's runtime copy, checked against the one its generated
    C was made for (the same check the C does with #error, as a one-line message)."""
    out = Path(out_dir)
    found = abi_version(out / RUNTIME_SUBDIR / "tc_common.h")
    m = re.search(rf"{ABI_MACRO}\s*!=\s*(\d+)", (out / f"{name}.c").read_text())
    want = int(m.group(1)) if m else None
    if want is not None and want != found:
        raise TinyClusterError(f"{out / (name + '.c')} was generated for C runtime ABI {want} but "
                               f"{out / RUNTIME_SUBDIR / 'tc_common.h'} is ABI {found}; use the runtime/ folder "
                               "written with the model, or run `tinycluster compile` again")
    return found

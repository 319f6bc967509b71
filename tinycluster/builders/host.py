"""Host build of C sources through cffi, cached by content hash.

Every host build uses ``-std=c99 -Wall -Wextra -Werror -pedantic``; warnings in the
runtime or in generated code fail the build. ``sanitize=True`` adds
``-fsanitize=address,undefined`` (used for standalone test executables: see
:func:`build_executable`, since a sanitized .so cannot be loaded into a
non-sanitized Python).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TinyClusterError
from ..paths import RUNTIME_INCLUDE, cache_dir

STRICT_CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def _hash(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(str(p.name).encode())
            h.update(p.read_bytes())
        else:
            h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _cc_identity() -> str:
    global _CC_ID
    if _CC_ID is None:
        try:
            _CC_ID = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout
        except OSError:
            raise TinyClusterError("no C compiler 'cc' found; install one (Debian/Ubuntu: apt-get install gcc)") from None
    return _CC_ID


_CC_ID = None


_QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def _included_headers(src: Path, include_dirs) -> list:
    """The quoted headers ``src`` includes, transitively, resolved as the compiler does (the
    including file's folder first, then the -I folders); unresolved ones are skipped."""
    seen, todo = [], [src]
    while todo:
        f = todo.pop()
        for inc in _QUOTED_INCLUDE.findall(f.read_text(errors="replace")):
            for d in [f.parent, *map(Path, include_dirs)]:
                h = (d / inc).resolve()
                if h.is_file():
                    if h not in seen:
                        seen.append(h)
                        todo.append(h)
                    break
    return sorted(seen)


def _compile_object(src: Path, cflags, include_dirs, objdir: Path) -> Path:
    """``src`` compiled to a position-independent object, cached by content (source, the headers
    it includes, flags, compiler): a model's runtime copy is compiled once for all models."""
    key = _hash([src, *_included_headers(src, include_dirs), " ".join(cflags), _cc_identity(), "obj-v1"])
    obj = objdir / f"{src.stem}_{key}.o"
    if obj.exists():
        return obj
    staged = objdir / f"{src.stem}_{key}.{os.getpid()}.tmp.o"
    cmd = ["cc", "-c", "-fPIC", *cflags, *[f"-I{d}" for d in include_dirs], str(src), "-o", str(staged)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        staged.unlink(missing_ok=True)
        raise TinyClusterError(f"host C compile of {src.name} failed:\n{r.stderr.strip()}")
    os.replace(staged, obj)
    return obj


def build_host_module(sources, cdef: str, *, header: str = "", include_dirs=(), opt: str = "-O2",
                      extra_cflags=(), name_hint: str = "tc", runtime_include: bool = True):
    """Compile ``sources`` into a cffi extension module and import it.

    sources: C files (Path); cdef: declarations visible from Python; header: C text placed
    before the declarations in the generated wrapper (usually ``#include "..."`` lines).
    runtime_include: add the installed runtime's include folder (False for a compile output
    folder, which builds with its own runtime/ copy).
    Returns (ffi, lib). Results are cached in the build cache (paths.CACHE_DIR) keyed by all inputs.
    """
    import cffi

    sources = [Path(s).resolve() for s in sources]
    include_dirs = [str(Path(d).resolve()) for d in include_dirs] + ([str(RUNTIME_INCLUDE)] if runtime_include else [])
    headers = []
    # quoted includes resolve in the including file's folder first, then the -I folders
    for d in dict.fromkeys([*(str(s.parent) for s in sources), *include_dirs]):
        headers += sorted(Path(d).glob("*.h"))
    cflags = STRICT_CFLAGS + [opt] + list(extra_cflags)
    key = _hash(sources + headers + [cdef, header, " ".join(cflags), sys.version, "v2"])
    modname = f"_{name_hint}_{key}"
    outdir = cache_dir("host")
    existing = list(outdir.glob(modname + "*.so"))
    if not existing:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        # the cffi wrapper itself is not -pedantic clean; compile our sources strictly in a
        # separate step so that warnings in *our* code fail, then link the objects.
        objdir = cache_dir("host/obj")
        objs = [str(_compile_object(s, cflags, include_dirs, objdir)) for s in sources]
        tmp = Path(tempfile.mkdtemp(prefix="tcbuild_", dir=outdir))
        try:
            ffi.set_source(modname, header, include_dirs=include_dirs, extra_objects=objs,
                           extra_compile_args=[opt, "-std=c99"])
            so = ffi.compile(tmpdir=str(tmp), verbose=False)
            # atomic publish: a concurrent builder (pytest -n) never loads a half-written .so
            staged = outdir / (Path(so).name + f".{os.getpid()}.tmp")
            shutil.copy(so, staged)
            os.replace(staged, outdir / Path(so).name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        existing = list(outdir.glob(modname + "*.so"))
    spec = importlib.util.spec_from_file_location(modname, existing[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


def build_executable(sources, out: Path, *, include_dirs=(), opt: str = "-O2", sanitize: bool = False,
                     extra_cflags=()) -> Path:
    """Compile a standalone host executable (used for sanitizer runs)."""
    include_dirs = [str(Path(d).resolve()) for d in include_dirs] + [str(RUNTIME_INCLUDE)]
    cflags = STRICT_CFLAGS + [opt] + (SANITIZE_FLAGS if sanitize else []) + list(extra_cflags)
    cmd = ["cc", *cflags, *[f"-I{d}" for d in include_dirs], *[str(s) for s in sources], "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TinyClusterError(f"host C build failed:\n{r.stderr.strip()}")
    return out

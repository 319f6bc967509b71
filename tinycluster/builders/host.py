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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TinyClusterError
from ..paths import CACHE_DIR, RUNTIME_INCLUDE

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


def build_host_module(sources, cdef: str, *, header: str = "", include_dirs=(), opt: str = "-O2",
                      extra_cflags=(), name_hint: str = "tc"):
    """Compile ``sources`` into a cffi extension module and import it.

    sources: C files (Path); cdef: declarations visible from Python; header: C text placed
    before the declarations in the generated wrapper (usually ``#include "..."`` lines).
    Returns (ffi, lib). Results are cached in .tc_cache/ keyed by all inputs.
    """
    import cffi

    sources = [Path(s).resolve() for s in sources]
    include_dirs = [str(Path(d).resolve()) for d in include_dirs] + [str(RUNTIME_INCLUDE)]
    headers = []
    for d in include_dirs:
        headers += sorted(Path(d).glob("*.h"))
    cflags = STRICT_CFLAGS + [opt] + list(extra_cflags)
    key = _hash(sources + headers + [cdef, header, " ".join(cflags), sys.version, "v1"])
    modname = f"_{name_hint}_{key}"
    outdir = CACHE_DIR / "host"
    outdir.mkdir(parents=True, exist_ok=True)
    existing = list(outdir.glob(modname + "*.so"))
    if not existing:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        # the cffi wrapper itself is not -pedantic clean; compile our sources strictly in a
        # separate step so that warnings in *our* code fail, then link the objects.
        objs = []
        tmp = Path(tempfile.mkdtemp(prefix="tcbuild_", dir=outdir))
        try:
            for s in sources:
                o = tmp / (s.stem + "_" + hashlib.sha1(str(s).encode()).hexdigest()[:6] + ".o")
                cmd = ["cc", "-c", "-fPIC", *cflags, *[f"-I{d}" for d in include_dirs], str(s), "-o", str(o)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise TinyClusterError(f"host C compile of {s.name} failed:\n{r.stderr.strip()}")
                objs.append(str(o))
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

"""Locations of the non-Python parts of tinycluster (C runtime, templates, board profiles) and of
the build cache.

One mechanism for both ways of running tinycluster:

- **installed** (``pip install .`` or a wheel): the repository's top-level ``runtime_c/``,
  ``templates/`` and ``boards/`` ship inside the package as ``tinycluster/_data/<folder>``
  (``setup.py`` maps them there at build time; nothing is duplicated in the repository);
- **source checkout** (editable install, ``PYTHONPATH=<repo>``): ``tinycluster/_data`` does not
  exist, and the folders are read where they live, next to the package.

The build cache (host cffi modules, cross-compiled runtime objects) lives in the user's cache
folder: ``$TC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tinycluster`` (``~/.cache/tinycluster``;
``~/Library/Caches/tinycluster`` on macOS, ``%LOCALAPPDATA%\\tinycluster\\Cache`` on Windows).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_DATA_DIR = PACKAGE_DIR / "_data"
#: the folder holding runtime_c/, templates/ and boards/: the installed package data first,
#: the source checkout otherwise
DATA_ROOT = INSTALLED_DATA_DIR if (INSTALLED_DATA_DIR / "runtime_c").is_dir() else PACKAGE_DIR.parent
#: True when running from an installed package (wheel / non-editable install)
INSTALLED = DATA_ROOT == INSTALLED_DATA_DIR
RUNTIME_DIR = DATA_ROOT / "runtime_c"
RUNTIME_INCLUDE = RUNTIME_DIR / "include"
RUNTIME_SRC = RUNTIME_DIR / "src"
TEMPLATES_DIR = DATA_ROOT / "templates"
BOARDS_DIR = DATA_ROOT / "boards"

CACHE_ENV = "TC_CACHE_DIR"


def _user_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tinycluster" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "tinycluster"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinycluster"


#: the build cache (created on first use by the builders)
CACHE_DIR = _user_cache_dir()


def cache_dir(sub: str = "") -> Path:
    """The build cache folder (or its subfolder ``sub``), created if needed; a one-line error when
    it cannot be created (read-only home: set TC_CACHE_DIR)."""
    from .errors import TinyClusterError

    d = CACHE_DIR / sub if sub else CACHE_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinyClusterError(f"cannot create the build cache folder {d} ({e.strerror or e}); "
                               f"set {CACHE_ENV} to a writable folder") from None
    return d


def runtime_sources():
    """All C sources of the portable runtime, sorted for deterministic builds."""
    return sorted(RUNTIME_SRC.glob("*.c"))


def runtime_headers():
    """All headers of the portable runtime, sorted."""
    return sorted(RUNTIME_INCLUDE.glob("*.h"))

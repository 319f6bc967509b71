"""Locations of the non-Python parts of tinycluster (C runtime, templates, boards)."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
RUNTIME_DIR = REPO_ROOT / "runtime_c"
RUNTIME_INCLUDE = RUNTIME_DIR / "include"
RUNTIME_SRC = RUNTIME_DIR / "src"
TEMPLATES_DIR = REPO_ROOT / "templates"
BOARDS_DIR = REPO_ROOT / "boards"
CACHE_DIR = REPO_ROOT / ".tc_cache"


def runtime_sources():
    """All C sources of the portable runtime, sorted for deterministic builds."""
    return sorted(RUNTIME_SRC.glob("*.c"))

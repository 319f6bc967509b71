"""One module per op (see base.py for the interface). Importing this package registers all."""
import importlib
import pkgutil

from .base import OpHandler, RawOp, get_handler, register, supported_ops  # noqa: F401

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base" and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

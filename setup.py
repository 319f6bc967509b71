"""Package data mapping (everything else is in pyproject.toml).

The C runtime, the code templates and the board profiles stay at the top level of the repository
(``runtime_c/``, ``templates/``, ``boards/``) and ship inside the wheel as
``tinycluster/_data/<folder>``: every folder below them is mapped as a data-only package, so
``pip install .`` and the built wheel carry them without a second copy in the repository.
``tinycluster/paths.py`` looks there first and falls back to the checkout.
"""
import os

from setuptools import find_packages, setup

DATA_FOLDERS = ("runtime_c", "templates", "boards")
SKIP_SUFFIXES = (".o", ".so", ".pyc", ".elf", ".a")  # build products, never data


def data_packages():
    """{package name: (folder, [data files])} for every folder below DATA_FOLDERS holding data."""
    out = {}
    here = os.path.dirname(os.path.abspath(__file__))
    for top in DATA_FOLDERS:
        for root, dirs, files in os.walk(os.path.join(here, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            rel = os.path.relpath(root, here)
            keep = sorted(f for f in files if not f.startswith(".") and not f.endswith(SKIP_SUFFIXES))
            if keep:
                out["tinycluster._data." + rel.replace(os.sep, ".")] = (rel, keep)
    return out


DATA = data_packages()

setup(
    packages=find_packages(include=["tinycluster", "tinycluster.*"]) + sorted(DATA),
    package_dir={pkg: folder for pkg, (folder, _) in DATA.items()},
    package_data={pkg: files for pkg, (_, files) in DATA.items()},
)

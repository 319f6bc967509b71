"""A user's install: the wheel and `pip install .` (non-editable) in fresh venvs outside the
repository, every command run from a temporary folder; and the compile output building on its
own (no include path, no checkout), with the runtime ABI check."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI, REPO, require_tool, shared_model

# what a source distribution of the project holds (copied, so that the build never writes into
# the checkout: pip builds in the source tree)
SOURCE_ITEMS = ["tinycluster", "runtime_c", "templates", "boards", "setup.py", "pyproject.toml", "README.md",
                "MANIFEST.in"]
DATA_FOLDERS = ["runtime_c", "templates", "boards"]


def _clean_env(**extra):
    """The environment of a user's shell: no PYTHONPATH pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def _run(cmd, cwd, env, timeout=900):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _source_copy(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for item in SOURCE_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dst / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "*.so"))
        else:
            shutil.copy2(src, dst / item)
    return dst


def _fresh_venv(path: Path, env) -> Path:
    _run([sys.executable, "-m", "venv", str(path)], path.parent, env)
    return path / "bin"


def _user_session(bindir: Path, work: Path, env, model: Path, tag: str, evaluate: bool):
    """compile, verify, build, run and evaluate, as a user would, from a folder outside the repo."""
    tc = bindir / "tinycluster"
    # the installed package is the one that runs, with its data inside site-packages
    r = _run([bindir / "python", "-c", "import tinycluster.paths as p; print(p.INSTALLED, p.DATA_ROOT)"], work, env)
    installed, root = r.stdout.split()
    assert installed == "True" and "site-packages" in root and not root.startswith(str(REPO)), r.stdout
    r = subprocess.run([bindir / "python", "-c", "import tensorflow"], cwd=work, env=env, capture_output=True)
    assert r.returncode != 0, "TensorFlow must not be installed by a plain install"
    out = work / f"out_{tag}"
    _run([tc, "compile", model, "--bits", "4", "-o", out.name, "--quiet"], work, env)
    assert (out / "runtime" / "tc_common.h").exists()
    r = _run([tc, "verify", out.name, "--samples", "3"], work, env)
    assert "0 mismatching outputs" in r.stdout
    if evaluate:
        np.savez(work / "data.npz", x=np.random.default_rng(0).uniform(-1, 1, (4, 49, 10, 1)).astype(np.float32),
                 y=np.arange(4) % 12)
        r = _run([tc, "evaluate", out.name, "--data", "data.npz", "--no-plots"], work, env)
        assert "clustered accuracy" in r.stdout
    require_tool("arm-none-eabi-gcc")
    r = _run([tc, "build", out.name, "--board", "cortex-m4"], work, env)
    assert "flash" in r.stdout and "index arrays in flash" in r.stdout
    require_tool("qemu-system-arm")
    r = _run([tc, "run", out.name, "--board", "cortex-m4", "--samples", "1", "--count", "1"], work, env)
    assert "0 mismatches" in r.stdout


@pytest.mark.slow
def test_wheel_and_pip_install_in_fresh_venvs(tmp_path):
    """`pip install <source>` (non-editable) and `pip install <wheel>` each in a fresh venv, then
    compile, verify, evaluate, build and run from a temporary folder. No TensorFlow installed."""
    model = shared_model("kws_ref_model.tflite")
    env = _clean_env(TC_CACHE_DIR=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    src = _source_copy(tmp_path / "src")
    # the wheel, built as a user (or a release job) builds it
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src], tmp_path, env)
    wheels = list((tmp_path / "dist").glob("tinycluster-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for folder in DATA_FOLDERS:  # every data file of the checkout ships, nothing else is needed
        for f in (REPO / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                rel = f.relative_to(REPO).as_posix()
                assert f"tinycluster/_data/{rel}" in names, rel
    assert not any(n.startswith(("runtime_c/", "templates/", "boards/", "tests/")) for n in names)
    work = tmp_path / "work"
    work.mkdir()
    for tag, target in (("wheel", wheels[0]), ("source", src)):
        bindir = _fresh_venv(tmp_path / f"venv_{tag}", env)
        _run([bindir / "python", "-m", "pip", "install", "-q", target], tmp_path, env)
        _user_session(bindir, work, env, model, tag, evaluate=tag == "wheel")


# ---------------------------------------------------------------------------------------------
# the compile output on its own
# ---------------------------------------------------------------------------------------------
CC = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.fixture(scope="module")
def kws_out(tmp_path_factory):
    import tinycluster

    m = tinycluster.compile(shared_model("kws_ref_model.tflite"), bits=4)
    return m.write(tmp_path_factory.mktemp("standalone") / "kws")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_output_builds_alone_and_selftest_passes(kws_out, tmp_path):
    """The issue's command, verbatim, from another folder: no -I, nothing from the checkout."""
    d = _copy(kws_out, tmp_path / "out")
    files = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    assert "runtime/tc_kernels.h" in files and "runtime/tc_common.h" in files and "selftest.c" in files
    # only the kernels the model needs: kws has no ADD/MUL
    assert "runtime/tc_conv2d_packed.c" in files and "runtime/tc_add_s8.c" not in files
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = " ".join(CC) + f" {d}/*.c {d}/runtime/*.c -o {elsewhere}/a.out"
    r = subprocess.run(cmd, shell=True, cwd=elsewhere, capture_output=True, text=True, env=_clean_env())
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(elsewhere / "a.out")], capture_output=True, text=True)
    assert r.returncode == 0 and "2 of 2 self-test outputs bit-exact" in r.stdout, r.stdout


def test_selftest_detects_a_wrong_output(kws_out, tmp_path):
    """The self-test compares real bytes: one expected byte changed, and it fails."""
    d = _copy(kws_out, tmp_path / "out")
    f = d / "selftest.c"
    text = f.read_text()
    patched = re.sub(r"(expected\[N_SAMPLES\]\[\d+\] = \{\s*\{ )(\d+)",
                     lambda m: m.group(1) + str((int(m.group(2)) + 1) % 256), text, count=1)
    assert patched != text
    f.write_text(patched)
    r = subprocess.run(CC + [*map(str, d.glob("*.c")), *map(str, (d / "runtime").glob("*.c")), "-o",
                             str(tmp_path / "a.out")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(tmp_path / "a.out")], capture_output=True, text=True)
    assert r.returncode == 1 and "sample 0: output differs from the reference" in r.stdout
    assert "1 of 2 self-test outputs bit-exact" in r.stdout


def test_other_runtime_abi_fails_with_the_error_message(kws_out, tmp_path):
    from tinycluster.c_runtime import abi_version
    from tinycluster.errors import TinyClusterError
    from tinycluster.verify import verify

    abi = abi_version()
    for other, needle in ((abi + 1, f"is ABI {abi + 1}"), (abi + 57, "is another ABI"), (None, "defines no")):
        d = _copy(kws_out, tmp_path / f"abi{other}")
        h = d / "runtime" / "tc_common.h"
        text = h.read_text()
        new = re.sub(r"(#define TC_RUNTIME_ABI_VERSION) \d+", rf"\1 {other}" if other else r"/* removed */", text)
        assert new != text
        h.write_text(new)
        r = subprocess.run(CC + ["-c", str(d / "kws_ref_model.c"), "-o", str(tmp_path / "m.o")],
                           capture_output=True, text=True)
        assert r.returncode != 0
        assert f"generated for tinycluster C runtime ABI {abi}" in r.stderr and needle in r.stderr, r.stderr
        assert "#error" in r.stderr
        if other is not None:  # verify says it on one line before any compiler runs
            with pytest.raises(TinyClusterError, match=rf"ABI {abi} but .* is ABI {other}"):
                verify(d, samples=1)


def test_folder_without_runtime_copy_is_refused(kws_out, tmp_path):
    from tinycluster.errors import TinyClusterError
    from tinycluster.verify import verify

    d = _copy(kws_out, tmp_path / "old")
    shutil.rmtree(d / "runtime")
    with pytest.raises(TinyClusterError, match="no C runtime copy"):
        verify(d, samples=1)


def test_cache_folder_follows_the_environment(tmp_path):
    code = "import tinycluster.paths as p; print(p.CACHE_DIR)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, TC_CACHE_DIR=str(tmp_path / "c")))
    assert r.stdout.strip() == str(tmp_path / "c")
    env = {k: v for k, v in os.environ.items() if k != "TC_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if sys.platform.startswith("linux"):
        assert r.stdout.strip() == str(tmp_path / "xdg" / "tinycluster")
    assert str(REPO) not in r.stdout

"""The Python API; the CLI is a thin layer over it.

    import tinycluster
    m = tinycluster.compile("model.tflite", bits=4)
    m.write("build/model")          # <name>.c, <name>.h, report.json, report.md, <name>_clustered.tflite
    host = m.build_host()           # the generated C compiled for this machine (cffi)
    y = host.invoke(x)              # int8 in, int8 out
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import TinyClusterError


@dataclass
class CompiledModel:
    name: str
    c_source: str
    header: str
    report: dict
    clustered_tflite: bytes
    graph: object = None
    plan: object = None
    extra_files: dict = field(default_factory=dict)  # relative path -> bytes/str

    def write(self, out_dir) -> Path:
        """Write all outputs into out_dir atomically: all files or none."""
        return write_output_dir(out_dir, self.files())

    def files(self) -> dict:
        """{relative path: content} of the output folder: the model, its C runtime copy
        (``runtime/``), the report, the clustered .tflite and any extra files (firmware/, ...)."""
        from .c_runtime import runtime_files
        from .report import render_markdown

        files = {
            f"{self.name}.c": self.c_source,
            f"{self.name}.h": self.header,
            "report.json": json.dumps(self.report, indent=2, default=str) + "\n",
            "report.md": render_markdown(self.report),
            f"{self.name}_clustered.tflite": self.clustered_tflite,
        }
        files.update(runtime_files(self.c_source))
        files.update(self.extra_files)
        return files

    def build_host(self, opt: str = "-O2"):
        """Compile the generated C for this machine; returns a HostModel."""
        from .c_runtime import RUNTIME_SUBDIR

        tmp = Path(tempfile.mkdtemp(prefix="tc_host_"))
        try:
            for fn, content in self.files().items():
                top = "/" not in fn
                if (top and fn.endswith((".c", ".h"))) or fn.startswith(RUNTIME_SUBDIR + "/"):
                    (tmp / fn).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / fn).write_text(content)
            return HostModel.build(tmp, self.name, self.report, opt=opt)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


_NP_OF = {"int8": np.int8, "float32": np.float32}
_C_OF = {"int8": "int8_t", "float32": "float"}


class HostModel:
    """The generated C built for the host through cffi."""

    def __init__(self, ffi, lib, name, report):
        self.ffi, self.lib, self.name = ffi, lib, name
        self.in_shape = tuple(report["input"]["shape"])
        self.out_shape = tuple(report["output"]["shape"])
        self.in_dtype = _NP_OF[report["input"]["dtype"]]
        self.out_dtype = _NP_OF[report["output"]["dtype"]]
        self._init = getattr(lib, f"{name}_init")
        self._invoke = getattr(lib, f"{name}_invoke")
        self._init()
        self._in_c = _C_OF[report["input"]["dtype"]] + "[]"
        self._out_c = _C_OF[report["output"]["dtype"]] + "[]"

    @classmethod
    def build(cls, src_dir: Path, name: str, report: dict, opt: str = "-O2"):
        """Build ``src_dir/<name>.c`` with the runtime copy in ``src_dir/runtime/`` (what
        ``compile`` wrote there), never with the installed runtime."""
        from .builders.host import build_host_module
        from .c_runtime import RUNTIME_SUBDIR, check_abi, output_runtime_sources

        src_dir = Path(src_dir)
        rt_sources = output_runtime_sources(src_dir, name)
        check_abi(src_dir, name)
        ic, oc = _C_OF[report["input"]["dtype"]], _C_OF[report["output"]["dtype"]]
        cdef = f"void {name}_init(void);\nint {name}_invoke(const {ic} *input, {oc} *output);\n"
        ffi, lib = build_host_module([src_dir / f"{name}.c", *rt_sources], cdef,
                                     header=f'#include "{name}.h"', include_dirs=[src_dir, src_dir / RUNTIME_SUBDIR],
                                     opt=opt, name_hint=f"model_{name}", runtime_include=False)
        return cls(ffi, lib, name, report)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.in_dtype).reshape(self.in_shape)
        out = np.zeros(self.out_shape, dtype=self.out_dtype)
        rc = self._invoke(self.ffi.from_buffer(self._in_c, x), self.ffi.from_buffer(self._out_c, out))
        if rc != 0:
            raise TinyClusterError(f"{self.name}_invoke returned {rc}")
        return out

    def time_invoke(self, x: np.ndarray, repeat: int = 20) -> float:
        """Median seconds per invoke."""
        import time

        x = np.ascontiguousarray(x, dtype=self.in_dtype).reshape(self.in_shape)
        out = np.zeros(self.out_shape, dtype=self.out_dtype)
        px, po = self.ffi.from_buffer(self._in_c, x), self.ffi.from_buffer(self._out_c, out)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            self._invoke(px, po)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))


def check_output_dir(out_dir, marker: str = "report.json") -> Path:
    """Raise unless out_dir may be (re)written: absent, empty, or a previous tinycluster output of
    the same kind (it holds ``marker``). Commands that take long call it before they start."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise TinyClusterError(f"{out} exists and is not a folder; choose another -o")
        if any(out.iterdir()) and not (out / marker).exists():
            raise TinyClusterError(f"{out} exists and is not a tinycluster output folder; choose another -o or remove it")
    return out


def write_output_dir(out_dir, files: dict, marker: str = "report.json") -> Path:
    """Write files into out_dir via a sibling temp folder and a rename: never half-written.

    An existing out_dir is replaced only if it is empty or a previous tinycluster output
    (:func:`check_output_dir`).
    """
    out = check_output_dir(out_dir, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for rel, content in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _validate(bits, clusters, lossless, granularity, codebooks):
    n = sum(x is not None and x is not False for x in (bits, clusters, lossless or None))
    if n > 1:
        raise TinyClusterError("give only one of --bits, --clusters, --lossless")
    if bits is not None and not (1 <= int(bits) <= 8):
        raise TinyClusterError(f"--bits {bits} is out of range: index width must be 1..8 bits")
    if clusters is not None and not (2 <= int(clusters) <= 256):
        raise TinyClusterError(f"--clusters {clusters} is out of range: k must be 2..256 (an int8 weight has at most 256 values)")
    if granularity not in ("per-channel", "per-tensor", "normalized", "auto"):
        raise TinyClusterError(f"--granularity {granularity}: use per-channel, per-tensor, normalized or auto")
    if codebooks not in ("sram", "flash"):
        raise TinyClusterError(f"--codebooks {codebooks}: use sram or flash")


def compile(model, *, bits: Optional[int] = None, clusters: Optional[int] = None, lossless: bool = False,
            granularity: str = "auto", name: Optional[str] = None, codebooks: Optional[str] = None,
            board: Optional[str] = None, seed: int = 0, command: str = "", frontend: Optional[dict] = None,
            flash_tables: Optional[float] = None, quiet: bool = True) -> CompiledModel:
    """Compile a model file into generated C. See the README for the options. ``flash_tables``: the
    flash budget of FULLY_CONNECTED's precomputed pair tables in % of the model's index bytes
    (default ``planner.FLASH_TABLE_PERCENT``; 0: none)."""
    from .emit import emit_model
    from .emit_context import sanitize_identifier
    from .planner import FLASH_TABLE_PERCENT, grant_flash_tables, plan_memory
    from .report import build_report

    board_profile = None
    if board is not None:
        from .boards import load_board

        board_profile = load_board(board)
    if codebooks is None:
        codebooks = (board_profile.codebook_in if board_profile is not None else "sram")
    _validate(bits, clusters, lossless, granularity, codebooks)
    if flash_tables is None:
        flash_tables = FLASH_TABLE_PERCENT
    if isinstance(flash_tables, bool) or not isinstance(flash_tables, (int, float)) or not 0 <= flash_tables <= 100:
        raise TinyClusterError(f"--flash-tables {flash_tables}: give a percentage of the index bytes, 0..100 "
                               "(0: no flash pair tables)")
    if bits is None and clusters is None and not lossless:
        bits = 4
    path = Path(model)
    if not path.exists():
        raise TinyClusterError(f"{path}: no such file or folder")
    name = sanitize_identifier(name or path.stem.split(".")[0])
    from .importers.tflite import resolve_graph

    fe_info = None
    int8_calib = {}
    if path.suffix.lower() == ".tflite" and not _is_float_tflite(path):
        data = path.read_bytes()
        int8_calib = _int8_frontend_options(path, frontend)
    else:
        try:
            from .frontends.pipeline import compress_to_int8_tflite
        except ImportError as e:
            raise TinyClusterError(f"{path}: is not a full-integer int8 .tflite and the Keras/float front end "
                                   f"is unavailable ({e}); install tinycluster[tf]") from None

        fe = dict(frontend or {})
        try:
            data, fe_info = compress_to_int8_tflite(str(path), bits=bits, clusters=clusters, quiet=quiet,
                                                    seed=seed, **fe)
        except TinyClusterError as e:
            if path.name not in str(e):  # every message names the model file
                raise type(e)(f"{path}: {e}") from None
            raise
        if fe_info and fe_info.get("per_layer_bits"):
            lossless, bits, clusters = True, None, None
    graph = _load_graph(path, data)
    graph.name = name
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise TinyClusterError(f"{path}: the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
                               "the generated C API takes exactly one input and one output tensor "
                               "(concatenate inputs or split the model)")
    resolve_graph(graph)
    from .compress.cluster import cluster_graph

    x_cal = None
    if int8_calib:
        from .frontends.calib import load_int8_calibration

        x_cal = load_int8_calibration(int8_calib.get("calib"), graph, calib_random=int8_calib.get("calib_random"),
                                      seed=seed)
    stats = cluster_graph(graph, bits=bits, clusters=clusters, lossless=lossless, granularity=granularity,
                          calib=x_cal, codebooks_in_sram=codebooks == "sram",
                          calib_source=str(int8_calib.get("calib") or ""), seed=seed, flash_tables=flash_tables)
    plan = plan_memory(graph)
    auto = graph.meta.get("clustering", {}).get("auto")
    # with auto, the tables fit in what it kept free under the codebook-economy bound
    room = None if not auto else auto["extra_bytes_allowed"] + auto.get("flash_table_reserve", 0) \
        - auto["extra_bytes_spent"]
    grant_flash_tables(graph, plan, flash_tables, room=room)
    placement = board_profile.emit_options() if board_profile is not None else {}
    placement["codebook_placement"] = codebooks
    if codebooks == "flash":
        placement["sram_section"] = ""
    em = emit_model(graph, plan, name=name, command=command or _default_command(model, bits, clusters, lossless, granularity),
                    source_bytes=data, **placement)
    options = {"bits": bits, "clusters": clusters, "lossless": lossless, "granularity": granularity,
               "codebooks": codebooks, "board": board, "seed": seed, "flash_tables": flash_tables}
    report = build_report(graph, plan, em, cluster_stats=_stats_by_layer(stats), options=options,
                          command=command)
    cmeta = graph.meta.get("clustering", {})
    report["clustering"] = {k: v for k, v in cmeta.items() if k in ("method", "auto")}
    report["clustering"]["calibration_inputs"] = 0 if x_cal is None else int(len(x_cal))
    if fe_info:
        report["frontend"] = fe_info
    from .export.tflite_writer import clustered_model_bytes

    clustered = clustered_model_bytes(graph, data)
    cm = CompiledModel(name, em.c_source, em.header, report, clustered, graph, plan)
    from .emit import emit_selftest

    cm.extra_files[f"{name}_selftest.c"] = emit_selftest(graph, name)
    if board_profile is not None:
        from .builders.firmware import firmware_files

        cm.extra_files.update(firmware_files(board_profile, name, cm))
    if fe_info is not None:
        # what `evaluate` needs (float and unclustered int8 models, plot data), written atomically
        from .frontends.pipeline import artifact_files

        cm.extra_files.update(artifact_files(fe_info))
    return cm


_KERAS_ONLY = {"prune": "--prune", "prune_structured": "--prune-structured", "method": "--method", "heal": "--heal",
               "heal_epochs": "--heal-epochs", "flash_budget": "--flash-budget", "mean_bits": "--mean-bits",
               "weight_dtype": "--weight-dtype"}


def _int8_frontend_options(path: Path, frontend) -> dict:
    """The front-end options an int8 .tflite takes (``calib``, ``calib_random``); any other is a
    one-line error rather than silently ignored."""
    fe = {k: v for k, v in dict(frontend or {}).items() if v is not None and v is not False}
    bad = [flag for key, flag in _KERAS_ONLY.items() if key in fe]
    if bad:
        raise TinyClusterError(f"{path}: {', '.join(bad)} appl{'ies' if len(bad) == 1 else 'y'} to Keras and float "
                               "models; this is an int8 .tflite (its options: --bits/--clusters/--lossless, "
                               "--granularity, --calib)")
    return {k: fe[k] for k in ("calib", "calib_random") if k in fe}


def _stats_by_layer(stats):
    if isinstance(stats, dict) and "layers" in stats:
        stats = stats["layers"]
    if isinstance(stats, list):
        return {s.get("layer") or s.get("name"): s for s in stats if isinstance(s, dict)}
    if isinstance(stats, dict):
        return stats
    return {}


def _is_float_tflite(path: Path) -> bool:
    """True for a float .tflite (float activations): those go through the float front end."""
    from .importers.tflite import is_float_model

    return is_float_model(path)


def _load_graph(path: Path, data: bytes):
    """Import int8 TFLite bytes; bytes made by the front end go through a temp file named like the model."""
    from .importers.tflite import load_tflite

    if path.suffix.lower() == ".tflite" and path.is_file() and path.read_bytes() == data:
        return load_tflite(path)
    tmp = Path(tempfile.mkdtemp(prefix="tc_fe_"))
    try:
        f = tmp / (path.stem + "_int8.tflite")
        f.write_bytes(data)
        g = load_tflite(f)
        g.source = str(path)
        return g
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_command(model, bits, clusters, lossless, granularity):
    parts = ["tinycluster", "compile", str(model)]
    if bits is not None:
        parts += ["--bits", str(bits)]
    if clusters is not None:
        parts += ["--clusters", str(clusters)]
    if lossless:
        parts += ["--lossless"]
    parts += ["--granularity", granularity]
    return " ".join(parts)

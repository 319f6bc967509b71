"""verify: the generated C (host build) against the TFLite Micro interpreter, byte for byte.

Inputs: N seeded random int8 tensors plus all-min, all-max and all-zero-point ones.
The reference runs <name>_clustered.tflite (the model with the clustered weights), so any
difference is the C's fault, never the clustering's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .errors import TinyClusterError, VerificationError


def load_output_dir(out_dir):
    out = Path(out_dir)
    rp = out / "report.json"
    if not rp.exists():
        raise TinyClusterError(f"{out}: not a tinycluster output folder (no report.json); run `tinycluster compile` first")
    try:
        report = json.loads(rp.read_text())
        name = report["name"]
    except (ValueError, KeyError) as e:
        raise TinyClusterError(f"{rp}: unreadable report ({e}); run `tinycluster compile` again") from None
    for fn in (f"{name}.c", f"{name}.h", f"{name}_clustered.tflite"):
        if not (out / fn).exists():
            raise TinyClusterError(f"{out}: {fn} is missing; run `tinycluster compile` again")
    return out, report, name


def make_inputs(shape, dtype, samples: int, seed: int, zero_point: int = 0, float_range=(-1.0, 1.0)):
    """Seeded random inputs plus the extremes. int8 models: uniform int8, all-min, all-max,
    all-zero-point. Float-input models (QUANTIZE first): uniform floats over 110% of the
    quantized range (so saturation is exercised), its two ends and zero."""
    rng = np.random.default_rng(seed)
    if dtype == np.int8:
        xs = [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(samples)]
        xs += [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8), np.full(shape, zero_point, np.int8)]
        return xs
    lo, hi = float_range
    pad = 0.05 * (hi - lo)
    xs = [rng.uniform(lo - pad, hi + pad, size=shape).astype(np.float32) for _ in range(samples)]
    xs += [np.full(shape, lo, np.float32), np.full(shape, hi, np.float32), np.zeros(shape, np.float32)]
    return xs


class TFLMReference:
    """TFLite Micro's interpreter on a model, with an arena sized for it: 4 MiB, or 64 MiB for
    models whose tensors need more (TFLite Micro plans its own arena inside that buffer)."""

    def __init__(self, tflite_bytes: bytes, arena_size: int = None, source: str = "model"):
        from tflite_micro.python.tflite_micro import runtime

        sizes = [arena_size] if arena_size else [4 << 20, 64 << 20]
        for i, size in enumerate(sizes):
            try:
                self.interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=size)
                return
            except (RuntimeError, ValueError) as e:
                if i + 1 == len(sizes):
                    why = " ".join(str(e).split()) or "no reason given"
                    raise VerificationError(f"{source}: TFLite Micro, the reference, cannot load this model ({why}); "
                                            "tinycluster should have refused it: please report the model") from None

    def invoke(self, x):
        self.interp.set_input(x, 0)
        t0 = time.perf_counter()
        self.interp.invoke()
        dt = time.perf_counter() - t0
        return self.interp.get_output(0).copy(), dt


def _input_quant(tflite_path):
    """(zero point of the int8 input, float range of the quantized input) of a model."""
    from .importers.tflite import load_tflite

    g = load_tflite(tflite_path)
    t = g.tensors[g.inputs[0]]
    if t.dtype == "int8":
        return (int(t.quant.zero_point[0]) if t.quant is not None else 0), (-1.0, 1.0)
    for n in g.nodes:  # float input: the QUANTIZE that consumes it gives the range
        if g.inputs[0] in n.inputs and n.op == "QUANTIZE":
            q = g.tensors[n.outputs[0]].quant
            s, z = float(q.scale[0]), int(q.zero_point[0])
            return 0, (s * (-128 - z), s * (127 - z))
    return 0, (-1.0, 1.0)


def verify(out_dir, samples: int = 200, seed: int = 0, quiet: bool = False) -> dict:
    from .api import HostModel

    out, report, name = load_output_dir(out_dir)
    host = HostModel.build(out, name, report)
    ref = TFLMReference((out / f"{name}_clustered.tflite").read_bytes(), source=f"{name}_clustered.tflite")
    in_zp, frange = _input_quant(out / f"{name}_clustered.tflite")
    xs = make_inputs(host.in_shape, host.in_dtype, samples, seed, in_zp, frange)
    mismatches, mismatch_bytes, max_diff = 0, 0, 0
    host_t, tflm_t = [], []
    first = None
    for i, x in enumerate(xs):
        y_ref, dt = ref.invoke(x)
        tflm_t.append(dt)
        t0 = time.perf_counter()
        y = host.invoke(x)
        host_t.append(time.perf_counter() - t0)
        y_ref = y_ref.reshape(y.shape)
        if y.tobytes() != y_ref.astype(y.dtype).tobytes():
            mismatches += 1
            if y.dtype == np.int8:
                diff = np.abs(y.astype(np.int64) - y_ref.astype(np.int64))
            else:  # float outputs (DEQUANTIZE): the largest difference in output steps
                with np.errstate(all="ignore"):
                    diff = np.nan_to_num(np.abs(y.astype(np.float64) - y_ref.astype(np.float64)), nan=np.inf)
                diff = np.ceil(np.minimum(diff, 1e9))
            mismatch_bytes += int(np.count_nonzero(y.view(np.uint8) != y_ref.astype(y.dtype).view(np.uint8)))
            max_diff = max(max_diff, int(diff.max()))
            if first is None:
                first = i
    # timing medians on the same input, after warm-up
    host_us = host.time_invoke(xs[0], repeat=30) * 1e6
    tf_ts = [ref.invoke(xs[0])[1] for _ in range(30)]
    result = {
        "reference": "tflm",
        "samples": len(xs),
        "mismatches": mismatches,
        "mismatching_bytes": mismatch_bytes,
        "max_abs_diff": max_diff,
        "first_mismatch_sample": first,
        "host_invoke_us": round(host_us, 2),
        "tflm_invoke_us": round(float(np.median(tf_ts)) * 1e6, 2),
        "speedup": round(float(np.median(tf_ts)) * 1e6 / host_us, 2) if host_us > 0 else None,
        "seed": seed,
    }
    (out / "verify.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def tflm_arena_head(tflite_bytes: bytes) -> int:
    """TFLite Micro's planned activation memory ("Arena allocation head", bytes) for a model."""
    return tflm_arena_sizes(tflite_bytes)["head"]


def tflm_arena_sizes(tflite_bytes: bytes) -> dict:
    """TFLite Micro's arena for a model, bytes: ``total`` (what a TFLM user must reserve),
    ``head`` (planned activations) and ``tail`` (persistent: tensor structs, kernel data)."""
    import os
    import re
    import sys
    import tempfile

    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=4 << 20)
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+b") as f:
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            interp.print_allocations()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, s in zip((1, 2), saved):
                os.dup2(s, fd)
                os.close(s)
        f.seek(0)
        text = f.read().decode(errors="replace")
    sizes = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise TinyClusterError("could not read TFLite Micro's arena allocation figures")
        sizes[key] = int(m.group(1))
    return sizes

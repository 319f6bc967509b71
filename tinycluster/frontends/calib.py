"""Calibration and training data for the front end.

Calibration (``--calib``): a ``.npy`` array, or a ``.npz`` whose array is under ``x`` (or
``calib``/``inputs``, or its only array), float, shaped ``(N, *model_input_shape)``.
``--calib-random N`` draws N uniform [0, 1) inputs instead and prints a warning: fine for a
smoke run, not for accuracy (activation ranges then describe noise).

Training data (``--heal``, pruning fine-tuning, ``evaluate --data``): ``.npz`` with ``x`` and
optionally ``y`` (integer class labels, or targets of the model's output shape). Without
``y`` healing distils the float model's outputs.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import TinyClusterError

_X_KEYS = ("x", "calib", "inputs", "input", "x_test", "x_train", "images", "data")
_Y_KEYS = ("y", "labels", "targets", "y_test", "y_train", "label")


def _load_arrays(path, what: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise TinyClusterError(f"{p}: no such {what} file (give a .npy or .npz)")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise TinyClusterError(f"{p}: {what} data must be a .npy or .npz file")
    if p.is_dir():
        raise TinyClusterError(f"{p}: is a directory, not a {what} file (give a .npy or .npz)")
    try:
        if p.suffix.lower() == ".npy":
            return {"x": np.load(p, allow_pickle=False)}
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise TinyClusterError(f"{p}: cannot read the {what} file ({_load_problem(p, e)})") from None


def _load_problem(p: Path, e: BaseException) -> str:
    """What is wrong with a file numpy cannot load, in our words (numpy's messages name its own
    keywords, e.g. allow_pickle, which are no help to a user of the command line)."""
    text = str(e).lower()
    if "pickle" in text or "object arrays" in text:
        return ("it is not a NumPy array file, or it holds Python objects, which tinycluster does not load; "
                "save a numeric array with numpy.save / numpy.savez")
    if isinstance(e, zipfile.BadZipFile) or "zip" in text:
        return "not a valid .npz (zip) archive"
    if isinstance(e, EOFError) or "read" in text or "header" in text:
        return "truncated, or not a NumPy array file"
    if isinstance(e, OSError):
        return e.strerror or "an I/O error"
    return "not a NumPy array file"


def _pick(arrays: dict, keys, path, what: str, required=True):
    for k in keys:
        if k in arrays:
            return arrays[k]
    if required:
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        raise TinyClusterError(f"{path}: {what} file has arrays {sorted(arrays)}; put the inputs under 'x'")
    return None


def _check_shape(x: np.ndarray, input_shape, path, what: str) -> np.ndarray:
    want = tuple(int(d) for d in input_shape[1:])
    if x.dtype.kind not in "fiu":
        raise TinyClusterError(f"{path}: {what} data has dtype {x.dtype}; expected float inputs")
    if x.ndim == len(want) and tuple(x.shape) == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise TinyClusterError(
            f"{path}: {what} data has shape {tuple(x.shape)} but the model input is "
            f"{('N',) + want}; expected an array of shape (N, {', '.join(map(str, want))})")
    if x.shape[0] == 0:
        raise TinyClusterError(f"{path}: {what} data holds no samples")
    if not np.isfinite(x).all():
        raise TinyClusterError(f"{path}: {what} data contains NaN or infinite values")
    return x.astype(np.float32)


def load_calibration(calib, input_shape, *, calib_random: Optional[int] = None, seed: int = 0,
                     max_samples: int = 500, quiet: bool = False) -> np.ndarray:
    """Return float32 calibration inputs of shape (N, *input_shape[1:])."""
    if calib is not None and calib_random is not None:
        raise TinyClusterError("give either --calib FILE or --calib-random N, not both")
    if calib is None and calib_random is None:
        raise TinyClusterError("a Keras or float model needs calibration inputs: give --calib FILE "
                               "(.npy/.npz of representative inputs) or --calib-random N for a smoke run")
    if calib is None:
        n = int(calib_random)
        if n <= 0:
            raise TinyClusterError(f"--calib-random must be a positive number of samples (got {calib_random})")
        print(f"warning: calibrating on {n} random inputs (--calib-random): activation ranges describe "
              "noise, so accuracy figures are meaningless; use --calib with real inputs", file=sys.stderr)
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, 1.0, size=(n,) + tuple(int(d) for d in input_shape[1:])).astype(np.float32)
    if isinstance(calib, np.ndarray):
        return _check_shape(calib, input_shape, "calibration array", "calibration")[:max_samples]
    arrays = _load_arrays(calib, "calibration")
    x = _pick(arrays, _X_KEYS, calib, "calibration")
    x = _check_shape(np.asarray(x), input_shape, calib, "calibration")
    if x.shape[0] > max_samples:  # the converter gains nothing from thousands of samples
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(x.shape[0], max_samples, replace=False))]
    return x


def load_dataset(path, input_shape, what: str = "training"):
    """(x float32, y or None) from a .npz (x under 'x', labels/targets under 'y')."""
    if isinstance(path, (tuple, list)) and len(path) == 2:
        x, y = path
        return _check_shape(np.asarray(x), input_shape, f"{what} array", what), (None if y is None else np.asarray(y))
    arrays = _load_arrays(path, what)
    x = _check_shape(np.asarray(_pick(arrays, _X_KEYS, path, what)), input_shape, path, what)
    y = _pick(arrays, _Y_KEYS, path, what, required=False)
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise TinyClusterError(f"{path}: {what} data has {x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y


# ------------------------------------------------------------------------------ int8 models
INT8_MAX_SAMPLES = 256


def sample_shape(input_shape) -> tuple:
    """The shape of one sample of a .tflite model's input: the input shape without its leading
    batch dimension of 1; an input without one (a batch of 2, or rank 1) is one sample as a whole."""
    shape = tuple(int(d) for d in input_shape)
    return shape[1:] if shape and shape[0] == 1 else shape


def load_int8_calibration(calib, graph, *, calib_random: Optional[int] = None, seed: int = 0,
                          max_samples: int = INT8_MAX_SAMPLES) -> Optional[np.ndarray]:
    """Calibration inputs of an int8 model (``graph``: its input tensor gives shape and
    quantization) as int8 [N, *sample shape], or None without data; the sample shape is the
    input's without a leading batch of 1 (the whole input shape otherwise). A model with a float
    input quantized by a QUANTIZE op gets float32 samples in real units (its QUANTIZE runs on them).

    ``calib``: a .npy/.npz path (arrays under ``x``, see :data:`_X_KEYS`) or an array, shaped
    (N, *input shape[1:]) (one sample may drop N). float arrays hold inputs in the model's real
    input range and are quantized with the input's scale and zero point (values beyond the int8
    range are clipped; a warning when many are); int8 arrays are taken as already quantized.
    More than ``max_samples`` inputs: an even, seeded subsample. Every error is one line naming
    the file and the shape and kind of data expected."""
    if calib is not None and calib_random is not None:
        raise TinyClusterError("give either --calib FILE or --calib-random N, not both")
    t = graph.tensors[graph.inputs[0]]
    # one sample is the input without its batch dimension of 1; an input without one (a batch of
    # 2, or rank 1) is one sample as a whole
    want = sample_shape(t.shape)
    if calib is None and calib_random is None:
        return None
    # the int8 domain of the input: its own quantization, or for a float input (an int8 model
    # with a float interface) that of the QUANTIZE op reading it; such a model gets float samples
    qt, float_in = t, False
    if t.dtype == "float32":
        qn = [n for n in graph.nodes if n.op == "QUANTIZE" and n.inputs and n.inputs[0] == graph.inputs[0]]
        if qn:
            qt, float_in = graph.tensors[qn[0].outputs[0]], True
    if qt.dtype != "int8" or qt.quant is None or qt.quant.scale.size != 1:
        raise TinyClusterError(f"{'--calib' if calib is not None else '--calib-random'}: the model's input "
                               f"'{t.name}' is {t.dtype} without a per-tensor int8 quantization; calibration "
                               "data needs an int8 input, or a float input the model quantizes (QUANTIZE)")
    scale, zp = float(qt.quant.scale[0]), int(qt.quant.zero_point[0])
    lo, hi = scale * (-128 - zp), scale * (127 - zp)
    expected = (f"expected float inputs in the model's real input range [{lo:.4g}, {hi:.4g}]"
                f"{'' if float_in else ' or int8 inputs already quantized'}, shaped (N, {', '.join(map(str, want))})")
    if calib is None:
        n = int(calib_random)
        if n <= 0:
            raise TinyClusterError(f"--calib-random must be a positive number of samples (got {calib_random})")
        print(f"warning: calibrating on {n} random inputs (--calib-random): codebooks then fit noise, not "
              "your data; use --calib with real inputs", file=sys.stderr)
        rng = np.random.default_rng(seed)
        if float_in:
            return rng.uniform(lo, hi, size=(n,) + want).astype(np.float32)
        return rng.integers(-128, 128, size=(n,) + want, dtype=np.int8)
    if isinstance(calib, np.ndarray):
        name, x = "calibration array", calib
    else:
        name = str(calib)
        p = Path(calib)
        if p.exists() and p.is_file() and p.stat().st_size == 0:
            raise TinyClusterError(f"{p}: the calibration file is empty; {expected}")
        try:
            arrays = _load_arrays(calib, "calibration")
        except TinyClusterError as e:
            raise TinyClusterError(f"{e}; {expected}") from None
        x = np.asarray(_pick(arrays, _X_KEYS, calib, "calibration"))
    if x.dtype.kind not in "fi" or (x.dtype.kind == "i" and (x.dtype != np.int8 or float_in)):
        raise TinyClusterError(f"{name}: calibration data has dtype {x.dtype}; {expected}")
    if x.ndim == len(want) and tuple(x.shape) == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise TinyClusterError(f"{name}: calibration data has shape {tuple(x.shape)} but the model input is "
                               f"{tuple(int(d) for d in t.shape)}; {expected}")
    if x.shape[0] == 0:
        raise TinyClusterError(f"{name}: calibration data holds no samples; {expected}")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise TinyClusterError(f"{name}: calibration data contains {bad} NaN or infinite values; {expected}")
        q = np.round(x.astype(np.float64) / scale) + zp
        out = float(np.mean((q < -128) | (q > 127)))
        if out > 0.05:
            print(f"warning: {name}: {100 * out:.0f} % of the calibration values lie outside the model's real "
                  f"input range [{lo:.4g}, {hi:.4g}] and are clipped; is the data scaled like the model's input?",
                  file=sys.stderr)
        # a float input stays float (the model's QUANTIZE quantizes it, as at run time)
        x = x.astype(np.float32) if float_in else np.clip(q, -128, 127).astype(np.int8)
    if x.shape[0] > max_samples:
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(x.shape[0], max_samples, replace=False))]
    return np.ascontiguousarray(x)

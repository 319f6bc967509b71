"""Accuracy of a compiled model: float vs int8 vs clustered, on labelled data.

``evaluate(out_dir, data_npz)`` reads the output folder of ``tinycluster compile``:

- ``<name>_clustered.tflite``: exactly what the generated C computes (run with TFLite Micro,
  the bit-exact reference);
- ``int8.tflite`` and ``float.tflite`` (written by the Keras front end, see
  :func:`tinycluster.frontends.pipeline.save_artifacts`): the unclustered int8 model and the
  float model. When the folder lacks them they are rebuilt from the source model recorded in
  ``report.json`` (``frontend.source``). For an int8 ``.tflite`` input there is no float model;
  the int8 reference is then the source model named in ``report.json`` when it still exists.

It reports float accuracy, int8 accuracy, clustered accuracy, top-1 agreement of the
clustered model with the int8 model, the output SNR of the clustered model against the int8
model (dequantized outputs: ``10 log10(sum y_int8^2 / sum (y_clustered - y_int8)^2)``) and the
index bits per weight; appends a section to ``report.md``, a key ``"evaluation"`` to
``report.json``, and draws ``weights_hist.png`` (each layer's weight histogram with its
centroids, when the front end saved them) and ``bytes_per_layer.png``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import TinyClusterError


# --------------------------------------------------------------------------------- running
class TFLiteRunner:
    """Run a .tflite on float inputs: quantize the input, invoke, dequantize the output.

    ``reference="tflm"`` uses the TFLite Micro interpreter (bit-exact reference of the C);
    ``"litert-ref"`` the LiteRT interpreter with its reference kernels (much faster on big
    batches, identical on most models); float models always run on LiteRT.
    """

    def __init__(self, model: bytes, reference: str = "tflm"):
        self.model = bytes(model)
        self._lit = self._tflm = None
        if reference == "tflm":
            # int8-input models run on TFLite Micro alone (a core dependency: evaluate works from
            # a plain install); float-input models go to LiteRT below
            from tflite_micro.python.tflite_micro import runtime

            tflm = runtime.Interpreter.from_bytes(self.model, arena_size=8 << 20)
            inp, out = tflm.get_input_details(0), tflm.get_output_details(0)
            if np.dtype(inp["dtype"]) != np.float32:
                self._tflm = tflm
                self.inp, self.out = self._details(inp), self._details(out)
        if self._tflm is None:
            try:
                from ai_edge_litert.interpreter import Interpreter, OpResolverType
            except ImportError:
                raise TinyClusterError("running a float model (or --reference litert-ref) needs LiteRT: "
                                       "pip install 'tinycluster[tf]'") from None
            lit = Interpreter(model_content=self.model,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            lit.allocate_tensors()
            self.inp = lit.get_input_details()[0]
            self.out = lit.get_output_details()[0]
            self._lit = lit
        self.in_dtype = self.inp["dtype"]
        self.quantized = self.in_dtype != np.float32
        self.reference = "tflm" if self._tflm is not None else "litert-ref"

    @staticmethod
    def _details(d: dict) -> dict:
        """TFLite Micro's tensor details in LiteRT's layout (shape, dtype, (scale, zero point))."""
        q = d["quantization_parameters"]
        scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
        zp = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
        return {"shape": np.asarray(d["shape"]), "dtype": np.dtype(d["dtype"]).type, "quantization": (scale, zp),
                "index": 0}

    def _q_in(self, x):
        if not self.quantized:
            return x.astype(np.float32)
        s, zp = self.inp["quantization"]
        info = np.iinfo(self.in_dtype)
        return np.clip(np.round(x / s) + zp, info.min, info.max).astype(self.in_dtype)

    def _dq_out(self, y):
        if self.out["dtype"] == np.float32:
            return y.astype(np.float32)
        s, zp = self.out["quantization"]
        return (y.astype(np.float32) - zp) * s

    def run(self, x: np.ndarray, raw: bool = False) -> np.ndarray:
        """Outputs for a batch of float inputs (N, *input shape[1:]); dequantized unless raw."""
        y = self.run_quantized(np.stack([self._q_in(xi) for xi in x]) if len(x) else x)
        return y if raw else self.dequantize(y)

    def run_quantized(self, xs: np.ndarray) -> np.ndarray:
        """Raw outputs [N, n_out] for a batch of inputs already in the model's input dtype."""
        shape = tuple(self.inp["shape"])
        outs = []
        for xi in xs:
            xi = np.ascontiguousarray(xi, dtype=self.in_dtype).reshape(shape)
            if self._tflm is not None:
                self._tflm.set_input(xi, 0)
                self._tflm.invoke()
                y = self._tflm.get_output(0).copy()
            else:
                self._lit.set_tensor(self.inp["index"], xi)
                self._lit.invoke()
                y = self._lit.get_tensor(self.out["index"]).copy()
            outs.append(y.reshape(-1))
        return np.stack(outs)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        """Real output values of raw outputs (float outputs as they are)."""
        return self._dq_out(np.asarray(y))

    @property
    def input_shape(self) -> tuple:
        return tuple(int(d) for d in self.inp["shape"])

    @property
    def input_zero_point(self) -> int:
        return int(self.inp["quantization"][1]) if self.quantized else 0

    @property
    def input_float_range(self) -> tuple:
        """Real values the quantized input covers (the range random float inputs are drawn from)."""
        s, zp = self.inp["quantization"] if self.quantized else (0.0, 0)
        if s > 0:
            info = np.iinfo(self.in_dtype)
            return (s * (info.min - zp), s * (info.max - zp))
        return (-1.0, 1.0)


def snr_db(y, ref) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.sum((np.asarray(y, dtype=np.float64) - ref) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0:
        return float("inf")
    return 10.0 * np.log10(max(sig, 1e-30) / err)


def accuracy(y, labels) -> Optional[float]:
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    return float(np.mean(np.argmax(y, axis=1) == labels))


def _top_classes(y) -> np.ndarray:
    """[N, classes] booleans: the classes holding each row's maximum (more than one on a tie)."""
    y = np.asarray(y).reshape(len(y), -1)
    return y == y.max(axis=1, keepdims=True)


def agrees(y, ref) -> np.ndarray:
    """[N] booleans: whether some class is top-ranked by both ``y`` and ``ref`` in each row. An int8
    model's output is quantized (a softmax in steps of 1/256), so two classes can tie for its top;
    ``argmax`` would then pick the lower class index, an artefact of the array order. A tie agrees
    with either of the tied classes. Without ties this is argmax equality."""
    return np.any(_top_classes(y) & _top_classes(ref), axis=1)


def agreement(y, ref) -> float:
    """Top-1 agreement: the fraction of rows on which the two agree (:func:`agrees`)."""
    return float(np.mean(agrees(y, ref)))


def agreement_argmax(y, ref) -> float:
    """Top-1 agreement by ``argmax`` equality (a tie goes to the lower class index)."""
    return float(np.mean(np.argmax(y, axis=1) == np.argmax(ref, axis=1)))


def top_ties(y) -> int:
    """How many rows of ``y`` have two or more classes tied for the top."""
    return int(np.sum(_top_classes(y).sum(axis=1) > 1))


# ------------------------------------------------------------------------------ evaluation
def _load_data(data, input_shape):
    from .frontends.calib import load_dataset

    if isinstance(data, (tuple, list)):
        return load_dataset(tuple(data), input_shape, "evaluation")
    return load_dataset(data, input_shape, "evaluation")


def evaluate(out_dir, data_npz, *, reference: str = "tflm", max_samples: Optional[int] = None,
             plots: bool = True, quiet: bool = False) -> dict:
    """Evaluate the compiled model in ``out_dir`` on ``data_npz`` (x float inputs, y int labels)."""
    from .verify import load_output_dir

    out, report, name = load_output_dir(out_dir)
    clustered = (out / f"{name}_clustered.tflite").read_bytes()
    cr = TFLiteRunner(clustered, reference)
    in_shape = (None,) + tuple(int(d) for d in cr.inp["shape"][1:])
    x, y = _load_data(data_npz, in_shape)
    if max_samples is not None:
        x, y = x[:max_samples], (None if y is None else y[:max_samples])
    if y is not None and y.dtype.kind not in "iu":
        raise TinyClusterError(f"{data_npz}: labels 'y' must be integer class indices (got {y.dtype})")
    int8_bytes = None
    float_bytes = (out / "float.tflite").read_bytes() if (out / "float.tflite").exists() else None
    if (out / "int8.tflite").exists():
        int8_bytes = (out / "int8.tflite").read_bytes()
    elif report.get("frontend"):
        float_bytes, int8_bytes = _rebuild_references(report["frontend"], in_shape, quiet)
    else:
        src = Path(str(report.get("source") or report.get("model") or ""))
        if src.suffix == ".tflite" and src.is_file():
            int8_bytes = src.read_bytes()
    res = {"samples": int(x.shape[0]), "reference": reference}
    y_c = cr.run(x)
    res["clustered_acc"] = accuracy(y_c, y)
    if int8_bytes is not None:
        y_i = TFLiteRunner(int8_bytes, reference).run(x)
        res["int8_acc"] = accuracy(y_i, y)
        res["top1_agreement_vs_int8"] = agreement(y_c, y_i)
        res["snr_db_vs_int8"] = snr_db(y_c, y_i)
    if float_bytes is not None:
        y_f = TFLiteRunner(float_bytes).run(x)
        res["float_acc"] = accuracy(y_f, y)
        res["top1_agreement_vs_float"] = agreement(y_c, y_f)
        res["snr_db_vs_float"] = snr_db(y_c, y_f)
    totals = report.get("totals", {})
    res["bits_per_weight"] = totals.get("bits_per_weight")
    if res["bits_per_weight"] is None:
        layers = report.get("layers", [])
        w = sum(int(l.get("weights", 0)) for l in layers)
        bsum = sum(int(l.get("weights", 0)) * int(l.get("index_bits", l.get("bits", 0)) or 0) for l in layers)
        res["bits_per_weight"] = round(bsum / w, 3) if w else None
    res["flash_bytes"] = totals.get("flash_bytes")
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            res["plots"] = []
            if not quiet:
                print("(plots skipped: install matplotlib, e.g. pip install 'tinycluster[plots]')")
        else:
            res["plots"] = _plots(out, report)
    _write(out, report, res)
    if not quiet:
        print(format_result(res))
    return res


def _rebuild_references(fe: dict, in_shape, quiet: bool):
    """(float tflite, int8 tflite) of a front-end model whose output folder lacks them: rebuilt from
    the source model recorded in the report (same calibration file, or the same seeded random
    inputs). (None, None) when the source is gone."""
    src = Path(str(fe.get("source") or ""))
    if not src.exists():
        return None, None
    from .frontends.calib import load_calibration
    from .frontends.keras import convert_to_float, convert_to_int8
    from .frontends.pipeline import load_model

    model = load_model(src)
    cal = fe.get("calibration")
    if cal and cal != "random" and Path(cal).exists():
        x_cal = load_calibration(cal, in_shape, seed=int(fe.get("seed", 0)))
    else:
        x_cal = load_calibration(None, in_shape, calib_random=int(fe.get("calibration_samples", 64)),
                                 seed=int(fe.get("seed", 0)), quiet=True)
    if not quiet:
        print(f"(float and int8 reference models rebuilt from {src})")
    return convert_to_float(model), convert_to_int8(model, x_cal)


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def format_result(res: dict) -> str:
    rows = [("samples", _fmt(res["samples"])),
            ("float accuracy", _fmt(res.get("float_acc"), True)),
            ("int8 accuracy", _fmt(res.get("int8_acc"), True)),
            ("clustered accuracy", _fmt(res.get("clustered_acc"), True)),
            ("top-1 agreement with int8", _fmt(res.get("top1_agreement_vs_int8"), True)),
            ("output SNR vs int8 (dB)", _fmt(res.get("snr_db_vs_int8"))),
            ("output SNR vs float (dB)", _fmt(res.get("snr_db_vs_float"))),
            ("bits/weight", _fmt(res.get("bits_per_weight"))),
            ("flash bytes", _fmt(res.get("flash_bytes")))]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def _write(out: Path, report: dict, res: dict):
    report = dict(report)
    report["evaluation"] = res
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = out / "report.md"
    text = md.read_text() if md.exists() else ""
    marker = "\n## Evaluation\n"
    if marker in text:
        text = text[:text.index(marker)]
    lines = [marker, f"Reference runtime: {res['reference']} ({res['samples']} samples).\n", "",
             "| metric | value |", "|---|---|"]
    for line in format_result(res).splitlines():
        k, v = line[:line.rindex("  ")].strip(), line[line.rindex("  "):].strip()
        lines.append(f"| {k} | {v} |")
    for p in res.get("plots", []):
        lines.append(f"\n![{Path(p).stem}]({Path(p).name})")
    md.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def _plots(out: Path, report: dict) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    pj = out / "frontend_plots.json"
    if pj.exists():
        data = json.loads(pj.read_text())
        names = list(data)
        n = len(names)
        if n:
            cols = min(4, n)
            rows = (n + cols - 1) // cols
            fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
            for ax, nm in zip(axes.ravel(), names):
                h = data[nm]["hist"]
                e = np.asarray(h["edges"])
                ax.bar(e[:-1], h["counts"], width=np.diff(e), align="edge", color="#8aa", label="float weights")
                cents = data[nm]["centroids"]
                if len(cents) <= 32:  # per-tensor codebook: one line per centroid
                    for c in cents:
                        ax.axvline(c, color="#c33", lw=0.6, alpha=0.7)
                elif cents:  # per-channel codebooks: distribution of all centroid values
                    ax2 = ax.twinx()
                    ax2.hist(cents, bins=e, histtype="step", color="#c33", lw=0.9)
                    ax2.set_yticks([])
                ax.set_title(nm, fontsize=8)
                ax.tick_params(labelsize=6)
            for ax in axes.ravel()[n:]:
                ax.axis("off")
            fig.suptitle("float weight histograms (grey) and centroid values (red; per-channel codebooks pooled)", fontsize=9)
            fig.tight_layout()
            p = out / "weights_hist.png"
            fig.savefig(p, dpi=90)
            plt.close(fig)
            files.append(str(p))
    layers = report.get("layers", [])
    if layers:
        names = [l.get("layer") or l.get("name") or str(i) for i, l in enumerate(layers)]
        fl = [int(l.get("flash_bytes", 0) or 0) for l in layers]
        i8 = [int(l.get("weights", 0) or 0) for l in layers]
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(names) + 2), 3.2))
        xs = np.arange(len(names))
        ax.bar(xs - 0.2, i8, 0.4, label="int8 weights (bytes)", color="#bbb")
        ax.bar(xs + 0.2, fl, 0.4, label="clustered flash (bytes)", color="#36c")
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=70, fontsize=6, ha="right")
        ax.set_ylabel("bytes")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "bytes_per_layer.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(str(p))
    return files


def model_inputs(x: np.ndarray, runner: "TFLiteRunner", source) -> np.ndarray:
    """Inputs for ``runner``'s model from a user array shaped (N, *sample shape) (the input shape
    without a batch of 1: :func:`~tinycluster.frontends.calib.sample_shape`; or one input without N), in the model's input dtype: float arrays hold real values and are quantized with the
    input's scale and zero point (:meth:`TFLiteRunner._q_in`, as TFLite does); int8 arrays are taken
    as already quantized. A float-input model takes float arrays as they are."""
    from .frontends.calib import sample_shape

    x = np.asarray(x)
    want = sample_shape(runner.input_shape)
    if x.ndim == len(want) and tuple(x.shape) == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or x.shape[0] == 0:
        raise TinyClusterError(f"{source}: inputs of shape {tuple(x.shape)} (dtype {x.dtype}) do not fit the model "
                               f"input; expected (N, {', '.join(map(str, want))}), float (real values) or int8 "
                               "(already quantized)")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise TinyClusterError(f"{source}: inputs contain NaN or infinite values")
        if runner.quantized and runner.inp["quantization"][0] <= 0:
            raise TinyClusterError(f"{source}: the model input has no quantization scale; give int8 inputs")
        return np.stack([runner._q_in(xi) for xi in x])
    if x.dtype == np.int8 and runner.in_dtype == np.int8:
        return x
    raise TinyClusterError(f"{source}: inputs have dtype {x.dtype}; expected float (real values) or int8 "
                           f"(already quantized) for a model with {np.dtype(runner.in_dtype).name} input")

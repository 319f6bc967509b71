"""The front end's one entry point: Keras / float model -> compressed full-integer int8 .tflite.

``compress_to_int8_tflite(model_path, ...) -> (tflite_bytes, info)``

Steps (each optional step only when asked for):

1. load the model (``.keras``/``.h5``/SavedModel with tf-keras; a float ``.tflite`` is rebuilt
   as a Keras model by :mod:`tinycluster.frontends.tflite_float`) and the calibration inputs;
2. prune (``prune=``: magnitude, one-shot or tfmot fine-tuning on the ``heal`` data);
3. choose k per layer: ``bits``/``clusters`` for every layer, or a sensitivity search under
   ``flash_budget`` (bytes) or ``mean_bits`` (:mod:`tinycluster.compress.sensitivity`);
4. cluster the float kernels (``method="kmeans"``: per-channel / per-tensor 1-D k-means;
   ``"tfmot"``: tfmot ``cluster_weights``, fine-tuned on ``heal`` data when given;
   ``"uniform"``: the uniform-grid baseline); zeros stay exact;
5. heal (``heal=`` training data: centroids fine-tuned with assignments fixed);
   ``affine=True`` applies the mean/variance-preserving correction of the centroids first;
6. convert to full-integer int8 with the TFLite converter (per-channel weights, int8 in/out);
   with ``weight_dtype="int4"`` rewrite each weight channel so its codebook values are int4.

The returned tflite holds, in every output channel of every weight tensor, at most k distinct
int8 values, so the core pipeline's lossless clustering packs it at the chosen width without
changing any weight.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import TinyClusterError

METHODS = ("kmeans", "tfmot", "uniform")
GRANULARITIES = ("per-channel", "per-tensor", "auto")
WEIGHT_DTYPES = ("int8", "int4")


def _check_options(bits, clusters, granularity, method, flash_budget, mean_bits, weight_dtype, heal_epochs):
    # --flash-budget / --mean-bits override a (default) --bits; two budgets or bits+clusters conflict
    given = [n for n, v in (("--bits", bits), ("--clusters", clusters)) if v is not None]
    budgets = [n for n, v in (("--flash-budget", flash_budget), ("--mean-bits", mean_bits)) if v is not None]
    if len(budgets) > 1:
        given = budgets
    if len(given) > 1:
        raise TinyClusterError(f"give only one of {', '.join(given)}")
    if bits is not None and (not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 8):
        raise TinyClusterError(f"--bits must be an integer from 1 to 8 (got {bits})")
    if clusters is not None and (not isinstance(clusters, (int, np.integer)) or not 2 <= int(clusters) <= 256):
        raise TinyClusterError(f"--clusters must be an integer from 2 to 256 (got {clusters})")
    if granularity not in GRANULARITIES:
        raise TinyClusterError(f"--granularity must be one of {', '.join(GRANULARITIES)} (got {granularity})")
    if method not in METHODS:
        raise TinyClusterError(f"--method must be one of {', '.join(METHODS)} (got {method})")
    if weight_dtype not in WEIGHT_DTYPES:
        raise TinyClusterError(f"--weight-dtype must be int8 or int4 (got {weight_dtype})")
    if weight_dtype == "int4" and method == "tfmot":
        raise TinyClusterError("--weight-dtype int4 works with --method kmeans or uniform, not tfmot")
    if int(heal_epochs) < 0:
        raise TinyClusterError(f"--heal-epochs must be >= 0 (got {heal_epochs})")


def load_model(model_path):
    """Keras model from a Keras file/folder or a float .tflite."""
    from .keras import is_keras_path, load_keras

    p = Path(model_path)
    if not p.exists():
        raise TinyClusterError(f"{p}: no such file")
    if p.suffix.lower() == ".tflite":
        from .tflite_float import tflite_to_keras

        return tflite_to_keras(p)
    if is_keras_path(p):
        return load_keras(p)
    raise TinyClusterError(f"{p}: unknown model format (expected .keras, .h5, a SavedModel folder or .tflite)")


def _kernel_cl(layer, var):
    from .keras import kernel_to_channels_last

    return kernel_to_channels_last(layer, var.numpy())


def cluster_kernel(layer, w: np.ndarray, k: int, *, per_channel=True, method="kmeans", init="auto",
                   int4=False, seed=0, importance=None):
    """Cluster one Keras kernel (its own shape); returns (clustered kernel, FloatClustering)."""
    from ..compress.kmeans_float import cluster_array
    from .keras import kernel_to_channels_last

    wcl = kernel_to_channels_last(layer, w)
    fc = cluster_array(wcl, k, per_channel=per_channel, method=method, init=init, keep_zero=True,
                       int4_grid=int4, seed=seed, importance=importance)
    return fc.values().reshape(w.shape).astype(w.dtype), fc


def _refit(layer, w_orig, new, H, snap_only=False):
    """Output-aware refit of a clustered kernel onto the int8 grid the converter will use
    (:mod:`tinycluster.compress.output_aware`); returns (kernel, FloatClustering)."""
    from ..compress.kmeans_float import FloatClustering
    from ..compress.output_aware import refit_int8
    from .keras import kernel_to_channels_last

    w0 = kernel_to_channels_last(layer, w_orig)
    v = kernel_to_channels_last(layer, new)
    C = w0.shape[-1]
    out = refit_int8(w0.reshape(-1, C), v.reshape(-1, C), H, snap_only=snap_only).reshape(w0.shape)
    return out.reshape(w_orig.shape).astype(w_orig.dtype), FloatClustering.from_values(out.astype(np.float32))


def compress_to_int8_tflite(model_path, *, calib=None, calib_random=None, bits=None, clusters=None,
                            granularity="per-channel", method="kmeans", prune=None, prune_structured=False,
                            heal=None, heal_epochs=1, flash_budget=None, mean_bits=None, weight_dtype="int8",
                            quiet=False, seed=0, init="auto", affine=False, heal_lr=1e-3,
                            sensitivity_samples=128, artifacts=True, activation_aware=True):
    """Compress a Keras model (or float .tflite) into a full-integer int8 .tflite with clustered weights.

    Returns ``(tflite_bytes, info)``; ``info`` is a JSON-friendly dict (a :class:`FrontendInfo`) with
    per-layer k/bits (``info["layers"]``, ``info["per_layer_bits"]``), the sensitivity table and
    choice, pruning and healing figures; ``info.artifacts`` holds the files for :func:`save_artifacts`.
    ``bits``/``clusters`` apply to every layer; ``flash_budget``/``mean_bits`` take precedence over
    them (per-layer widths from the sensitivity search). ``activation_aware``: weight each kernel
    value's squared error in k-means by the mean squared input activation it multiplies
    (measured on the calibration inputs), which minimises the layer's output error rather than
    the weight error.
    """
    from tqdm.auto import tqdm

    from ..compress import sensitivity as sens
    from .calib import load_calibration, load_dataset
    from .keras import clone_model, convert_to_float, convert_to_int8, tf, weighted_layers

    t0 = time.time()
    _check_options(bits, clusters, granularity, method, flash_budget, mean_bits, weight_dtype, heal_epochs)
    if flash_budget is not None:
        flash_budget = sens.parse_bytes(flash_budget)
    t = tf()
    t.random.set_seed(seed)
    model = load_model(model_path)
    input_shape = model.input_shape
    x_cal = load_calibration(calib, input_shape, calib_random=calib_random, seed=seed, quiet=quiet)
    train = load_dataset(heal, input_shape, "healing") if heal is not None else None
    per_channel = granularity != "per-tensor"
    float_model = clone_model(model)  # the reference: teacher for healing, artifacts for evaluate
    info = {"source": str(Path(model_path).resolve()) if not isinstance(model_path, (bytes,)) else "",
            "method": method, "granularity": "per-channel" if per_channel else "per-tensor",
            "weight_dtype": weight_dtype, "calibration_samples": int(x_cal.shape[0]),
            "calibration": "random" if calib is None else str(calib), "seed": seed}

    # 2. pruning
    if prune is not None:
        from ..compress.prune import prune_model

        model, sp = prune_model(model, prune, structured=prune_structured, train=train, epochs=heal_epochs,
                                teacher=float_model, quiet=quiet, seed=seed)
        info["prune"] = {"target": float(prune), "structured": bool(prune_structured),
                         "fine_tuned": train is not None, "sparsity": sp}

    wl = weighted_layers(model)
    if not wl:
        raise TinyClusterError(f"{model_path}: the model has no Conv2D, DepthwiseConv2D or Dense layer to cluster")
    infos = sens.layer_infos(model, per_channel)
    int4 = weight_dtype == "int4"

    # 3. k per layer
    int8_ref = None
    importance = {}
    moments = {}
    if activation_aware and method == "kmeans":
        from .keras import activation_importance, layer_input_moments

        importance = activation_importance(model, x_cal[:sensitivity_samples])
        if per_channel and not int4:
            moments = layer_input_moments(model, x_cal[:1024])
    info["activation_aware"] = bool(importance)
    info["output_aware_refit"] = bool(moments)

    def cluster_layer(layer, w, k, fit=True):
        """Clustered kernel (Keras shape) and its FloatClustering, or (None, None) when the
        layer is left to plain int8 quantization."""
        if k >= 256 and not int4 and method == "kmeans":
            if layer.name not in moments:
                return None, None  # int8 quantization alone gives <= 256 values per channel
            new, fc = w, None
        else:
            new, fc = cluster_kernel(layer, w, k, per_channel=per_channel,
                                     method="uniform" if method == "uniform" else "kmeans",
                                     init=init, int4=int4, seed=seed, importance=importance.get(layer.name))
        if layer.name in moments:
            new, fc2 = _refit(layer, w, new, moments[layer.name], snap_only=not fit)
            fc = fc2 if fc is not None else None  # an unclustered (8 bit) layer is not healed
        return new, fc

    def cfn(layer, w, k):
        new = cluster_layer(layer, w, k)[0]
        return w if new is None else new

    originals = {layer.name: var.numpy().copy() for layer, var in wl}
    budgeted = flash_budget is not None or mean_bits is not None
    if budgeted:
        opts = sens.DEFAULT_K if not int4 else sens.INT4_K
        rng = np.random.default_rng(seed)
        xs = x_cal if x_cal.shape[0] <= sensitivity_samples else \
            x_cal[np.sort(rng.choice(x_cal.shape[0], sensitivity_samples, replace=False))]
        overhead = 0
        if flash_budget is not None:
            # check the floor before the (slow) measurement
            int8_ref = convert_to_int8(float_model, x_cal)
            overhead = core_flash_overhead(int8_ref)
            fl = sens.floor_bytes(infos, opts) + overhead
            if flash_budget < fl:
                raise TinyClusterError(sens.below_floor_message(flash_budget, fl, opts[0]))
        cache = {}
        sens.measure(model, infos, xs, cfn, opts, quiet=quiet, cache=cache)
    else:
        if clusters is not None:
            kk = int(clusters)
        else:
            kk = 2 ** (int(bits) if bits is not None else 8)
        if int4 and kk > 16:
            kk = 16
        layer_k = {i.name: kk for i in infos}
    if budgeted:
        bits = clusters = None

    base_model = model
    attempts = 4 if (flash_budget is not None and method != "tfmot") else 1
    for attempt in range(attempts):
        if budgeted:
            choice = sens.choose(infos, flash_budget=flash_budget, mean_bits=mean_bits, k_options=opts,
                                 overhead=overhead)
            choice = sens.refine(model, infos, xs, cache, choice, opts, quiet=quiet)
            layer_k = {n: int(k) for n, k in choice["k"].items()}
            flash_chosen = sum(i.flash_bytes(layer_k[i.name]) for i in infos) + overhead
            info["sensitivity"] = {
                "metric": "relative output MSE (mean((y - y_float)^2) / mean(y_float^2)) on calibration inputs, "
                          "one layer clustered at a time",
                "samples": int(xs.shape[0]),
                "table": {i.name: {str(b): e for b, e in sorted(i.errors.items())} for i in infos},
                "budget": choice["budget"], "budget_unit": choice["cost_unit"], "floor": choice["floor"],
                "overhead_bytes": choice["overhead"],
                "predicted_error": choice["error"], "joint_error": choice["joint_error"],
                "candidates": choice["candidates"], "flash_bytes": int(flash_chosen),
                "why": _why(infos, layer_k, choice)}

        # 4. clustering
        clusterings = {}
        model = base_model
        for layer, var in wl:
            var.assign(originals[layer.name])
        if method == "tfmot":
            model, clusterings = _cluster_tfmot(model, layer_k, per_channel, train, heal_epochs, float_model,
                                                quiet, seed)
        else:
            for layer, var in tqdm(wl, desc="clustering", unit="layer", disable=quiet, leave=False):
                w = var.numpy()
                new, fc = cluster_layer(layer, w, layer_k[layer.name], fit=not affine)
                if new is None:
                    continue
                if affine and method == "kmeans" and fc is not None:
                    from ..compress.kmeans_float import affine_correct

                    fc = affine_correct(_kernel_cl(layer, var), fc)
                    new = fc.values().reshape(w.shape).astype(w.dtype)
                    if layer.name in moments:  # keep the affine centroids, choose their grid points
                        new, fc = _refit(layer, w, new, moments[layer.name], snap_only=True)
                var.assign(new)
                if fc is not None:
                    clusterings[layer.name] = fc

        # 5. healing
        if train is not None and heal_epochs > 0 and clusterings and method != "tfmot":
            from ..compress.heal import heal_centroids

            healed = heal_centroids(model, clusterings, train, epochs=heal_epochs, teacher=float_model,
                                    lr=heal_lr, seed=seed, quiet=quiet)
            info["heal"] = {"epochs": int(heal_epochs), "samples": int(train[0].shape[0]),
                            "loss_before": healed["_history"][0], "loss_after": healed["_history"][-1],
                            "loss_history": healed["_history"],
                            "loss": "labels" if train[1] is not None else "distillation (MSE to the float model)"}
            clusterings = {n: v for n, v in healed.items() if n != "_history"}
            if moments:  # healing moved the centroids off the int8 grid: choose their grid points
                for layer, var in wl:
                    if layer.name in clusterings and layer.name in moments:
                        new, fc = _refit(layer, originals[layer.name], var.numpy(), moments[layer.name],
                                         snap_only=True)
                        var.assign(new)
                        clusterings[layer.name] = fc
            if int4:  # healing moved the centroids off the int4 grid: snap them back
                for layer, var in wl:
                    if layer.name in clusterings:
                        new, fc = cluster_kernel(layer, var.numpy(), layer_k[layer.name], per_channel=per_channel,
                                                 int4=True, seed=seed)
                        var.assign(new)
                        clusterings[layer.name] = fc

        # 6. conversion
        with tqdm(total=1, desc="int8 conversion", disable=quiet, leave=False) as bar:
            tfl = convert_to_int8(model, x_cal)
            bar.update(1)
        if int4:
            from .int4 import rewrite_int4_codebooks

            tfl, int4_info = rewrite_int4_codebooks(tfl)
            info["int4"] = int4_info

        # 7. budget check with the core's own accounting (a few bytes per layer can differ from the
        # model, e.g. kernel tables that depend on the index width): shrink and retry when over
        if flash_budget is None:
            break
        actual = core_flash_total(tfl)
        info["sensitivity"]["core_flash_bytes"] = actual
        if actual is None or actual <= flash_budget:
            break
        if attempt == attempts - 1:
            raise TinyClusterError(f"could not fit the flash budget {flash_budget} B (the closest assignment "
                                   f"found needs {actual} B); raise --flash-budget a little")
        # the chooser works on costs rounded to ~1/4000 of the budget: a few bytes less can give the
        # same choice again, so tighten by at least that step, more on every retry
        overhead += max(actual - flash_budget, flash_budget // 4000 + 1) * (attempt + 1)
    if budgeted:
        del cache
    wl = weighted_layers(model)

    # info per layer
    layers = []
    for (layer, var), li in zip(wl, infos):
        w0 = originals[layer.name]
        w1 = var.numpy()
        rel = float(np.sqrt(np.mean((w1 - w0) ** 2) / max(np.mean(w0 ** 2), 1e-30)))
        k = layer_k[li.name]
        fc = clusterings.get(layer.name)
        hist, edges = np.histogram(w0, bins=64)
        cents = np.unique(fc.centroids) if fc is not None else np.array([])
        entry = {"name": layer.name, "class": li.cls, "weights": li.weights, "channels": li.channels,
                 "k": int(li.eff_k(k)), "bits": int(li.eff_bits(k)),
                 "flash_bytes": int(li.flash_bytes(k)),
                 "sparsity": float((w1 == 0).mean()), "weight_rel_rmse": rel,
                 "max_distinct_per_group": int(_max_distinct(layer, w1, per_channel)),
                 "hist": {"counts": hist.tolist(), "edges": edges.tolist()},
                 "centroids_sample": cents[:: max(1, cents.size // 256)].tolist()}
        if "sensitivity" in info:
            entry["why"] = info["sensitivity"]["why"][li.name]
        layers.append(entry)
    info["layers"] = layers
    info["flash_bytes_estimate"] = int(sum(e["flash_bytes"] for e in layers)) + int(
        info.get("sensitivity", {}).get("overhead_bytes", 0))
    tw = sum(e["weights"] for e in layers)
    info["weights"] = int(tw)
    info["mean_bits"] = float(sum(e["bits"] * e["weights"] for e in layers) / max(tw, 1))
    info["seconds"] = round(time.time() - t0, 2)
    info["per_layer_bits"] = {e["name"]: e["bits"] for e in layers}
    plots = {e["name"]: {"hist": e.pop("hist"), "centroids": e.pop("centroids_sample")} for e in layers}
    result = FrontendInfo(info)
    result.artifacts["frontend_plots.json"] = json.dumps(plots)
    if artifacts:
        result.artifacts["float.tflite"] = convert_to_float(float_model)
        result.artifacts["int8.tflite"] = int8_ref if int8_ref is not None else convert_to_int8(float_model, x_cal)
    info = result
    return tfl, info


def _why(infos, layer_k, choice) -> dict:
    """One line per layer: its error at the chosen k and what the next smaller k would cost."""
    from ..compress.sensitivity import bits_of

    unit = choice["cost_unit"]
    cost = choice["cost_table"]
    out = {}
    for i in infos:
        k = layer_k[i.name]
        opts = sorted(i.errors)
        parts = [f"k={i.eff_k(k)} ({bits_of(i.eff_k(k))} bit): relative output error {i.errors[k]:.2e}"]
        j = opts.index(k)
        if j > 0:
            lo = opts[j - 1]
            parts.append(f"k={lo} would add {i.errors[lo] - i.errors[k]:.2e} to save "
                         f"{cost[i.name][k] - cost[i.name][lo]} {unit}")
        if i.errors[k] == 0.0 and i.max_distinct <= k:
            parts.append(f"lossless (<= {i.max_distinct} distinct values per channel)")
        out[i.name] = "; ".join(parts)
    return out


def core_flash_total(tfl: bytes):
    """``totals.flash_bytes`` the core reports for this int8 model packed losslessly (None when the
    core is unavailable)."""
    import tempfile

    try:
        from ..api import compile as core_compile
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="tc_fe_") as d:
        p = Path(d) / "model_int8.tflite"
        p.write_bytes(tfl)
        return int(core_compile(p, lossless=True, granularity="per-channel", quiet=True).report["totals"]["flash_bytes"])


def core_flash_overhead(int8_tflite: bytes) -> int:
    """Flash bytes the core's report counts beyond the per-layer cost model (indices + codebooks +
    9 bytes per output channel): operator parameter structs, non-weighted layers, tables. Measured
    by compiling the unclustered int8 model with the core (``lossless``); 0 if the core is absent."""
    import tempfile

    try:
        from ..api import compile as core_compile
    except ImportError:
        return 0
    with tempfile.TemporaryDirectory(prefix="tc_fe_") as d:
        p = Path(d) / "model_int8.tflite"
        p.write_bytes(int8_tflite)
        rep = core_compile(p, lossless=True, granularity="per-channel", quiet=True).report
    modelled = 0
    for layer in rep.get("layers", []):
        if layer.get("weights"):
            modelled += int(layer.get("indices_bytes", 0)) + int(layer.get("codebook_bytes", 0)) + \
                9 * int(layer.get("output_channels", 0))
    return max(0, int(rep["totals"]["flash_bytes"]) - modelled)


def _max_distinct(layer, w, per_channel):
    from .keras import kernel_to_channels_last

    wcl = kernel_to_channels_last(layer, w)
    flat = wcl.reshape(-1, wcl.shape[-1])
    if not per_channel:
        return np.unique(flat).size
    return max(np.unique(flat[:, c]).size for c in range(flat.shape[1]))


def _cluster_tfmot(model, layer_k, per_channel, train, epochs, teacher, quiet, seed):
    """tfmot cluster_weights on every weighted layer, fine-tuned when data is given."""
    import tensorflow_model_optimization as tfmot

    from ..compress.heal import loss_and_targets
    from .keras import WEIGHTED_LAYERS, keras, tf, weighted_layers

    t = tf()
    k = keras()
    t.random.set_seed(seed)
    CI = tfmot.clustering.keras.CentroidInitialization

    def wrap(layer):
        if layer.__class__.__name__ in WEIGHTED_LAYERS and layer_k.get(layer.name, 256) < 256:
            kw = {}
            if per_channel and layer.__class__.__name__ == "Conv2D":
                kw["cluster_per_channel"] = True
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=int(layer_k[layer.name]),
                cluster_centroids_init=CI.KMEANS_PLUS_PLUS, **kw)
        return layer

    try:
        cm = k.models.clone_model(model, clone_function=wrap)
    except Exception as e:
        raise TinyClusterError(f"tfmot cluster_weights failed on this model ({str(e).splitlines()[0][:160]}); "
                               "use --method kmeans") from None
    if train is not None and epochs > 0:
        x, y = train
        loss, targets = loss_and_targets(model, x, y, teacher)
        cm.compile(optimizer=k.optimizers.Adam(1e-4), loss=loss)
        cm.fit(x, targets, batch_size=32, epochs=int(epochs), verbose=0 if quiet else 1)
    stripped = tfmot.clustering.keras.strip_clustering(cm)
    # tfmot skips layers it finds too small (and clusters Dense/depthwise per tensor only); make sure
    # every layer holds at most k values per channel, so the requested widths hold
    for layer, var in weighted_layers(stripped):
        kk = layer_k.get(layer.name, 256)
        if kk < 256 and _max_distinct(layer, var.numpy(), per_channel) > kk:
            var.assign(cluster_kernel(layer, var.numpy(), kk, per_channel=per_channel, seed=seed)[0])
    return stripped, {layer.name: None for layer, _ in weighted_layers(stripped) if layer_k.get(layer.name, 256) < 256}


class FrontendInfo(dict):
    """The front end's report (a JSON-friendly dict) plus ``.artifacts``: files for the output
    folder that ``evaluate`` reads (kept out of the dict so that it serialises cleanly)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.artifacts = {}


def artifact_files(info) -> dict:
    """Relative path -> bytes/str of the files :func:`save_artifacts` writes (for an atomic writer):
    ``frontend.json`` (this info), ``frontend_plots.json`` (weight histograms and centroids),
    ``float.tflite`` (the float model) and ``int8.tflite`` (the unclustered int8 model)."""
    files = dict(getattr(info, "artifacts", {}) or {})
    files["frontend.json"] = json.dumps(dict(info), indent=1, default=_json_default) + "\n"
    return files


def save_artifacts(out_dir, info) -> None:
    """Write what ``evaluate`` needs into the output folder (see :func:`artifact_files`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in artifact_files(info).items():
        if isinstance(data, bytes):
            (out / name).write_bytes(data)
        else:
            (out / name).write_text(data)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

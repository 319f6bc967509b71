"""Magnitude pruning of a Keras model's kernels (Conv2D, DepthwiseConv2D, Dense).

- one-shot (no training data): in every weighted layer, zero the ``sparsity`` fraction of
  weights with the smallest magnitude (unstructured), or the ``sparsity`` fraction of output
  channels with the smallest L2 norm (``structured=True``; the last weighted layer, whose
  channels are the model's outputs, is pruned unstructured);
- with training data: tfmot ``prune_low_magnitude`` (polynomial decay to the target over
  the fine-tuning steps) for unstructured pruning; structured pruning is one-shot and then
  fine-tuned with the channel masks held fixed.

Zeros stay exact through clustering: :func:`tinycluster.compress.kmeans_float.cluster_array`
gives zeros their own zero centroid (``keep_zero``), and int8 quantization maps 0.0 to the
zero point of a symmetric weight tensor, 0.
"""
from __future__ import annotations

import numpy as np

from ..errors import TinyClusterError


def _mask_unstructured(w: np.ndarray, sparsity: float) -> np.ndarray:
    n = w.size
    n_zero = int(round(sparsity * n))
    mask = np.ones(n, dtype=bool)
    if n_zero > 0:
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        mask[order[:n_zero]] = False
    return mask.reshape(w.shape)


def _mask_structured(w_cl: np.ndarray, sparsity: float) -> np.ndarray:
    """w_cl: [..., C] (channels last). Zero whole output channels by L2 norm."""
    flat = w_cl.reshape(-1, w_cl.shape[-1])
    C = flat.shape[1]
    n_zero = min(C - 1, int(round(sparsity * C)))  # keep at least one channel alive
    mask = np.ones(flat.shape, dtype=bool)
    if n_zero > 0:
        norms = np.sqrt((flat.astype(np.float64) ** 2).sum(axis=0))
        order = np.argsort(norms, kind="stable")
        mask[:, order[:n_zero]] = False
    return mask.reshape(w_cl.shape)


def magnitude_masks(model, sparsity: float, structured: bool = False) -> dict:
    """layer name -> boolean keep-mask of the kernel's shape."""
    from ..frontends.keras import kernel_to_channels_last, weighted_layers

    masks = {}
    wl = weighted_layers(model)
    for li, (layer, var) in enumerate(wl):
        w = var.numpy()
        if structured and li == len(wl) - 1:
            # the last weighted layer's output channels are the model's outputs (classes): removing
            # them removes outputs, so it is pruned unstructured instead
            m = _mask_unstructured(w, sparsity)
        elif structured:
            m = _mask_structured(kernel_to_channels_last(layer, w), sparsity).reshape(w.shape)
        else:
            m = _mask_unstructured(w, sparsity)
        masks[layer.name] = m
    return masks


def apply_masks(model, masks: dict):
    from ..frontends.keras import weighted_layers

    for layer, var in weighted_layers(model):
        m = masks.get(layer.name)
        if m is not None:
            var.assign(np.where(m, var.numpy(), 0.0).astype(var.dtype.as_numpy_dtype))


def sparsity_of(model) -> dict:
    from ..frontends.keras import weighted_layers

    return {layer.name: float((var.numpy() == 0).mean()) for layer, var in weighted_layers(model)}


def check_sparsity(sparsity) -> float:
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise TinyClusterError(f"--prune must be a fraction in [0, 1) (got {sparsity!r})") from None
    if not 0.0 <= s < 1.0:
        raise TinyClusterError(f"--prune must be a fraction in [0, 1) (got {sparsity}); e.g. --prune 0.5")
    return s


def prune_model(model, sparsity: float, *, structured: bool = False, train=None, epochs: int = 1,
                teacher=None, quiet: bool = False, seed: int = 0, batch_size: int = 32):
    """Prune ``model`` (in place when possible); returns (model, per-layer sparsity dict).

    ``train``: (x, y or None) for fine-tuning; None for one-shot.
    """
    sparsity = check_sparsity(sparsity)
    if sparsity == 0.0:
        return model, sparsity_of(model)
    if train is None or structured:
        masks = magnitude_masks(model, sparsity, structured)
        apply_masks(model, masks)
        if train is not None:  # structured: fine-tune with the channel masks held fixed
            from .heal import finetune_masked

            finetune_masked(model, masks, train, epochs=epochs, teacher=teacher, quiet=quiet,
                            seed=seed, batch_size=batch_size)
        return model, sparsity_of(model)
    return _prune_tfmot(model, sparsity, train, epochs, teacher, quiet, seed, batch_size)


def _prune_tfmot(model, sparsity, train, epochs, teacher, quiet, seed, batch_size):
    from ..frontends.keras import WEIGHTED_LAYERS, keras, tf
    from .heal import loss_and_targets

    t = tf()
    k = keras()
    import tensorflow_model_optimization as tfmot

    x, y = train
    loss, targets = loss_and_targets(model, x, y, teacher)
    steps = max(1, int(np.ceil(x.shape[0] / batch_size)) * max(1, epochs))
    sched = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                 begin_step=0, end_step=max(1, steps - 1), frequency=1)

    def wrap(layer):
        if layer.__class__.__name__ in WEIGHTED_LAYERS:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched)
        return layer

    t.random.set_seed(seed)
    # the wrappers hold the model's own layer objects, so the weights carry over
    pm = k.models.clone_model(model, clone_function=wrap)
    pm.compile(optimizer=k.optimizers.Adam(1e-4), loss=loss)
    pm.fit(x, targets, batch_size=batch_size, epochs=max(1, epochs), shuffle=True,
           verbose=0 if quiet else 1, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pm)
    # the polynomial schedule reaches the target at the last step; enforce it exactly
    apply_masks(stripped, magnitude_masks(stripped, sparsity, False))
    return stripped, sparsity_of(stripped)


"""Healing: fine-tune only the centroids of clustered layers, assignments fixed.

Each clustered kernel is ``W = gather(centroids, idx)`` with the centroids trainable and the
indices constant. The training loop computes the loss gradient with respect to the kernel
``dL/dW`` (one forward/backward pass of the Keras model in inference mode: batch-norm
statistics and dropout frozen) and applies the chain rule of the gather, which is a segment
sum: ``dL/dc[g, j] = sum of dL/dW over the weights of group g assigned to centroid j``.
Adam updates the centroids; the kernel is then rewritten as the gather. Nothing else
changes (biases, batch-norm, assignments), so after healing every group still holds at most
k distinct values and the core still packs it losslessly. Zero centroids of pruned layers
stay fixed at zero, so the sparsity survives healing.

Loss: with integer labels, (sparse) cross-entropy (from logits unless the model ends in a
softmax); with float targets of the output shape, mean squared error; with no labels,
distillation: mean squared error to the float (teacher) model's outputs.
"""
from __future__ import annotations

import numpy as np

from ..errors import TinyClusterError
from .kmeans_float import FloatClustering


def _ends_in_softmax(model) -> bool:
    from ..frontends.keras import iter_layers

    last = list(iter_layers(model))[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", "") if act is not None else ""
    return last.__class__.__name__ == "Softmax" or name == "softmax"


def loss_and_targets(model, x, y, teacher=None):
    """(keras loss, targets) for fine-tuning ``model`` on (x, y)."""
    from ..frontends.keras import keras

    k = keras()
    out_shape = tuple(int(d) for d in model.output_shape[1:])
    if y is None:
        if teacher is None:
            raise TinyClusterError("fine-tuning data has no labels ('y') and there is no float model to distil")
        return k.losses.MeanSquaredError(), teacher.predict(x, verbose=0, batch_size=256)
    y = np.asarray(y)
    if y.dtype.kind in "iu" and (y.ndim == 1 or y.shape[1:] == (1,)) and len(out_shape) == 1:
        if y.max() >= out_shape[0] or y.min() < 0:
            raise TinyClusterError(f"labels range over [{y.min()}, {y.max()}] but the model has {out_shape[0]} outputs")
        return k.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model)), y.reshape(-1)
    if tuple(y.shape[1:]) == out_shape:
        return k.losses.MeanSquaredError(), y.astype(np.float32)
    raise TinyClusterError(f"training targets have shape {tuple(y.shape)}; expected integer class labels (N,) "
                           f"or targets of the model's output shape (N, {', '.join(map(str, out_shape))})")


def _batches(n, batch_size, rng):
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def heal_centroids(model, clusterings: dict, train, *, epochs: int = 1, teacher=None, lr: float = 1e-3,
                   batch_size: int = 32, seed: int = 0, quiet: bool = False) -> dict:
    """Fine-tune the centroids of ``clusterings`` (layer name -> FloatClustering of the kernel
    viewed channels-last) on ``train`` = (x, y or None). Writes the healed kernels into
    ``model`` and returns the updated clusterings plus a loss history under key ``"_history"``.
    """
    from tqdm.auto import tqdm

    from ..frontends.keras import kernel_to_channels_last, tf, weighted_layers

    t = tf()
    x, y = train
    loss_fn, targets = loss_and_targets(model, x, y, teacher)
    layers = [(layer, var) for layer, var in weighted_layers(model) if layer.name in clusterings]
    if not layers:
        return dict(clusterings, _history=[])
    state = []
    for layer, var in layers:
        fc = clusterings[layer.name]
        shape_cl = kernel_to_channels_last(layer, var.numpy()).shape
        G, K = fc.centroids.shape
        if fc.channel_axis is None:
            seg = fc.indices.reshape(-1).astype(np.int64)
        else:
            ch = np.broadcast_to(np.arange(shape_cl[-1]), shape_cl).reshape(-1)
            seg = ch * K + fc.indices.reshape(-1).astype(np.int64)
        cvar = t.Variable(fc.centroids.reshape(-1).astype(np.float32))
        frozen = (fc.centroids.reshape(-1) == 0.0)
        state.append((layer, var, fc, t.constant(seg), cvar, t.constant(~frozen, dtype=t.float32), G * K))
    opt = t.keras.optimizers.Adam(lr)
    kernels = [s[1] for s in state]

    @t.function(reduce_retracing=True)
    def step(xb, yb):
        with t.GradientTape() as tape:
            out = model(xb, training=False)
            loss = loss_fn(yb, out)
        grads = tape.gradient(loss, kernels)
        cgrads = []
        for (layer, var, fc, seg, cvar, keep, n), g in zip(state, grads):
            gf = t.reshape(g, [-1])
            cgrads.append(t.math.unsorted_segment_sum(gf, seg, n) * keep)
        opt.apply_gradients(zip(cgrads, [s[4] for s in state]))
        for (layer, var, fc, seg, cvar, keep, n) in state:
            var.assign(t.reshape(t.gather(cvar, seg), var.shape))
        return loss

    # start from the clustered kernels
    for (layer, var, fc, seg, cvar, keep, n) in state:
        var.assign(t.reshape(t.gather(cvar, seg), var.shape))
    rng = np.random.default_rng(seed)
    history = [float(eval_loss(model, loss_fn, x, targets))]
    bar = tqdm(range(max(0, int(epochs))), desc="healing", unit="epoch", disable=quiet, leave=False)
    for _ in bar:
        for b in _batches(x.shape[0], batch_size, rng):
            step(t.constant(x[b]), t.constant(targets[b]))
        history.append(float(eval_loss(model, loss_fn, x, targets)))
        bar.set_postfix(loss=f"{history[-1]:.4g}")
    out = dict(clusterings)
    for (layer, var, fc, seg, cvar, keep, n) in state:
        out[layer.name] = FloatClustering(cvar.numpy().reshape(fc.centroids.shape), fc.indices,
                                          fc.channel_axis, fc.k)
    out["_history"] = history
    return out


def eval_loss(model, loss_fn, x, targets, batch_size: int = 256) -> float:
    tot, n = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        out = model(x[i:i + batch_size], training=False)
        tot += float(loss_fn(targets[i:i + batch_size], out)) * out.shape[0]
        n += out.shape[0]
    return tot / max(n, 1)


def finetune_masked(model, masks: dict, train, *, epochs: int = 1, teacher=None, lr: float = 1e-4,
                    batch_size: int = 32, seed: int = 0, quiet: bool = False):
    """Fine-tune all trainable weights, re-applying the pruning masks after every step."""
    from tqdm.auto import tqdm

    from ..frontends.keras import tf, weighted_layers

    t = tf()
    x, y = train
    loss_fn, targets = loss_and_targets(model, x, y, teacher)
    mvars = [(var, t.constant(masks[layer.name], dtype=var.dtype)) for layer, var in weighted_layers(model)
             if layer.name in masks]
    opt = t.keras.optimizers.Adam(lr)
    tv = model.trainable_variables

    @t.function(reduce_retracing=True)
    def step(xb, yb):
        with t.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=False))
        opt.apply_gradients(zip(tape.gradient(loss, tv), tv))
        for var, m in mvars:
            var.assign(var * m)
        return loss

    rng = np.random.default_rng(seed)
    for _ in tqdm(range(max(0, int(epochs))), desc="pruning fine-tune", unit="epoch", disable=quiet, leave=False):
        for b in _batches(x.shape[0], batch_size, rng):
            step(t.constant(x[b]), t.constant(targets[b]))

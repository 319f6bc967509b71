"""Graph IR: the one data structure every pass reads and writes.

import (importers/) -> Graph -> compress/ passes -> ops/*.resolve (quantized params)
-> planner -> emit -> build -> verify/report

A Graph is a list of Tensors and a topologically ordered list of Nodes.
Weight tensors carry their int8 data (``Tensor.data``) and, after clustering,
a :class:`Clustering` (indices + codebooks). Activation tensors have no data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    ``scale`` and ``zero_point`` are 1-D arrays; length 1 for per-tensor,
    length shape[axis] for per-channel (``axis`` then names the channel axis).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """Per-tensor scale (error if per-channel)."""
        assert self.scale.size == 1, "per-tensor scale requested of a per-channel tensor"
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        assert self.zero_point.size >= 1
        return int(self.zero_point[0])


@dataclass
class Clustering:
    """Weight sharing for one weight tensor.

    indices:  int array, same shape as the tensor, values in [0, k)
    codebooks: int8 array [n_codebooks, k]; row c is the codebook of channel group c
    channel_axis: axis of the tensor whose index selects the codebook (None: one codebook)
    codebook_of_channel: for per-channel layouts, which codebook row each channel uses
        (identity for plain per-channel; may repeat when codebooks are shared)
    bits: index width in bits (1..8); k <= 2**bits
    """

    indices: np.ndarray
    codebooks: np.ndarray
    bits: int
    channel_axis: Optional[int]
    codebook_of_channel: Optional[np.ndarray] = None
    granularity: str = "per-tensor"  # "per-tensor" | "per-channel"
    unique_before: int = 0
    unique_after: int = 0

    @property
    def k(self) -> int:
        return int(self.codebooks.shape[1])

    def values(self) -> np.ndarray:
        """The int8 weight tensor this clustering stands for (codebook lookup)."""
        if self.channel_axis is None:
            return self.codebooks[0][self.indices].astype(np.int8)
        idx = np.moveaxis(self.indices, self.channel_axis, 0)
        cmap = self.codebook_of_channel
        if cmap is None:
            cmap = np.arange(idx.shape[0])
        out = np.empty(idx.shape, dtype=np.int8)
        for c in range(idx.shape[0]):
            out[c] = self.codebooks[cmap[c]][idx[c]]
        return np.moveaxis(out, 0, self.channel_axis)


@dataclass
class Tensor:
    id: int
    name: str
    shape: tuple
    dtype: str  # numpy dtype name: "int8", "int32", "float32", ...
    quant: Optional[QuantParams] = None
    data: Optional[np.ndarray] = None  # constant tensors only
    buffer_index: Optional[int] = None  # index of the flatbuffer buffer (importer bookkeeping)
    clustering: Optional[Clustering] = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    """One operator.

    op: TFLite builtin name, e.g. "CONV_2D"
    inputs/outputs: tensor ids (-1 for an optional input that is absent)
    attrs: the op's options as parsed from the model (padding, strides, fused activation, ...)
    params: integer-only parameters computed by the op's resolve step (multipliers,
        shifts, offsets, clamp ranges, geometry). Kernels see only these.
    """

    index: int
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class Graph:
    tensors: list
    nodes: list
    inputs: list
    outputs: list
    source: str = ""  # file the graph came from (for messages)
    name: str = "model"
    meta: dict = field(default_factory=dict)

    def tensor(self, tid: int) -> Tensor:
        return self.tensors[tid]

    def consumers(self, tid: int) -> list:
        return [n for n in self.nodes if tid in n.inputs]

    def producer(self, tid: int) -> Optional[Node]:
        for n in self.nodes:
            if tid in n.outputs:
                return n
        return None

    def weight_tensors(self):
        """(node, tensor) pairs for the clusterable weight tensor of each weighted op."""
        from .ops import get_handler

        for n in self.nodes:
            h = get_handler(n.op)
            wi = h.weight_input
            if wi is not None and wi < len(n.inputs) and n.inputs[wi] >= 0:
                t = self.tensors[n.inputs[wi]]
                if t.is_const:
                    yield n, t

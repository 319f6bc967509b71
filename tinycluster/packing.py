"""Bit-packing of cluster indices: the one layout the C runtime reads.

Layout (also documented in runtime_c/include/tc_kernels.h): index i occupies bits
[i*bits, (i+1)*bits) of an LSB-first bitstream; bit j of the stream is bit (j % 8)
of byte j // 8. No padding between rows: a layer's indices are one contiguous stream.
"""
from __future__ import annotations

import numpy as np


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_indices(indices, bits: int) -> bytes:
    """Pack a flat sequence of indices (each < 2**bits) into bytes."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1..8, got {bits}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= (1 << bits)):
        raise ValueError(f"index out of range for {bits} bits")
    # bit matrix [n, bits], LSB first, then flatten to the stream
    bitmat = ((idx[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.uint8).reshape(-1)
    nbytes = packed_size(idx.size, bits)
    pad = nbytes * 8 - bitmat.size
    if pad:
        bitmat = np.concatenate([bitmat, np.zeros(pad, dtype=np.uint8)])
    return np.packbits(bitmat.reshape(-1, 8), axis=1, bitorder="little").reshape(-1).tobytes()


def unpack_indices(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_indices."""
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    bitstream = np.unpackbits(raw, bitorder="little")[: count * bits].reshape(count, bits)
    return (bitstream.astype(np.int64) << np.arange(bits)[None, :]).sum(axis=1).astype(np.int64)

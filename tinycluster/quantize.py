"""Prepare-time integer arithmetic shared by every op (the only place float math happens).

Mirrors TFLite's QuantizeMultiplier / CalculateActivationRangeQuantized so that the
int32 multipliers and shifts handed to the C kernels are exactly those TFLite Micro
computes in its Prepare step.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import TinyClusterError

INT8_MIN, INT8_MAX = -128, 127


def _tflite_round(x: float) -> float:
    """std::round: half away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real: float, max_shift: int = 30):
    """TFLite QuantizeMultiplier: real ~= mult * 2**(shift - 31), mult in [2**30, 2**31).

    Returns (int32 multiplier, int shift) with TFLite's sign convention
    (shift > 0: left shift, shift < 0: right shift). Tiny multipliers (shift < -31) flush to 0
    as in TFLite. Multipliers that are negative, not finite, or need a left shift beyond 30
    bits (``max_shift``; softmax's input scaling allows 31) are refused: TFLite Micro's
    double-rounding build aborts on the first two and shifts the accumulator out of the int32
    range on the last (no result to be bit-exact with).
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise TinyClusterError(f"requantization multiplier {real} is not finite: the model's scales are invalid")
    if real < 0:
        raise TinyClusterError(f"negative requantization multiplier {real}: the model's scales are invalid")
    q, shift = math.frexp(real)
    q_fixed = int(_tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    if shift > max_shift:
        raise TinyClusterError(f"requantization multiplier {real:.6g} is >= 2^{max_shift} (the scales give a left "
                               f"shift of {shift} bits; TFLite's int32 arithmetic supports at most {max_shift}): "
                               "the model's scales are inconsistent")
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(real: float):
    """TFLite QuantizeMultiplierSmallerThanOneExp (shift <= 0)."""
    m, s = quantize_multiplier(real)
    if s > 0:
        raise TinyClusterError(f"multiplier {real} must be < 1")
    return m, s


def activation_range(act: str, scale: float, zero_point: int, qmin: int = INT8_MIN, qmax: int = INT8_MAX):
    """CalculateActivationRangeQuantized for a fused activation name.

    act is one of NONE, RELU, RELU6, RELU_N1_TO_1. Computed in float32 as TFLite does.
    """
    s = np.float32(scale)

    def q(f):
        # TFLite's Quantize(): float32 division and rounding, refused outside int32 (TF_LITE_ENSURE)
        with np.errstate(all="ignore"):
            d = float(np.float32(f) / s)
        tmp = _tflite_round(d) if math.isfinite(d) else None
        v = int(zero_point) + int(tmp) if tmp is not None else None
        if v is None or not -(1 << 31) <= tmp < (1 << 31) or not -(1 << 31) <= v < (1 << 31):
            raise TinyClusterError(f"the {act} activation bound {f} does not fit int32 in the output's scale "
                                   f"{float(s):.6g} (TFLite Micro refuses this model)")
        return v

    if act in (None, "NONE"):
        return qmin, qmax
    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise TinyClusterError(f"unsupported fused activation {act}")


def multiply_by_quantized_multiplier(x, mult, shift):
    """Numpy reference of TFLite's MultiplyByQuantizedMultiplier (double rounding, gemmlowp).

    x: int array (int32 range), mult: int32 scalar or array, shift: int scalar or array.
    """
    x = np.asarray(x, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    a = x * (np.int64(1) << left)
    # int32 wrap of x << left (TFLite does this in int32; inputs keep it in range in practice)
    a = ((a + (1 << 31)) % (1 << 32)) - (1 << 31)
    # SaturatingRoundingDoublingHighMul
    overflow = (a == -(1 << 31)) & (mult == -(1 << 31))
    ab = a * mult
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    hi = (ab + nudge)
    # integer division truncating toward zero by 2**31
    hi = np.where(hi >= 0, hi >> 31, -((-hi) >> 31))
    hi = np.where(overflow, (1 << 31) - 1, hi)
    # RoundingDivideByPOT
    mask = (np.int64(1) << right) - 1
    remainder = hi & mask
    threshold = (mask >> 1) + np.where(hi < 0, 1, 0)
    return (hi >> right) + np.where(remainder > threshold, 1, 0)


def requantize(acc, mult, shift, out_zp, act_min=INT8_MIN, act_max=INT8_MAX):
    """acc (int32) -> int8: MultiplyByQuantizedMultiplier, add zero point, clamp."""
    v = multiply_by_quantized_multiplier(acc, mult, shift) + int(out_zp)
    return np.clip(v, act_min, act_max).astype(np.int8)

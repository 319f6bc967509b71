"""Prepare math shared by LOGISTIC and TANH (TFLite Micro's logistic_common.cc and tanh.cc:
input in Q4.27 via a frexp multiplier, saturation radius)."""
from __future__ import annotations

import math

from ._common import f32, op_error
from .softmax import input_radius

INPUT_INTEGER_BITS = 4


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def sigmoid_params(node, graph, size: int, scale, zero_point: int) -> dict:
    real = f32(scale) * float(1 << (31 - INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    mult = _round_half_away(q * (1 << 31))
    if shift < 0:
        raise op_error(node, graph, f"input scale {f32(scale):.3g} is too small (TFLite's int8 kernel needs "
                                    "scale >= 2^-28)")
    if shift > 62:
        # TFLite Micro's CalculateInputRadius computes 1LL << shift: undefined from 63 bits on (x86
        # masks the count and the installed interpreter then gets another radius)
        raise op_error(node, graph, f"input scale {f32(scale):.3g} is too large (TFLite's int8 kernel shifts by "
                                    f"{shift} bits, undefined beyond 62: the scale must be below 2^35)")
    radius = input_radius(INPUT_INTEGER_BITS, shift)
    if mult >= 1 << 31:  # not reachable for float32 scales (24-bit mantissa); keep int32 range
        raise op_error(node, graph, "input multiplier overflows int32")
    if radius > 0 and shift > 30:
        raise op_error(node, graph, "input shift out of range")
    return dict(size=size, input_zero_point=zero_point, input_range_radius=radius, input_multiplier=mult,
                input_left_shift=min(shift, 30) if radius == 0 else shift)

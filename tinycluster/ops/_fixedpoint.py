"""Numpy models (bit-exact, vectorized) of the gemmlowp fixed-point routines in
runtime_c/include/tc_fixedpoint.h, used by the SOFTMAX, LOGISTIC and TANH references.
All values are int64 arrays holding int32 values."""
from __future__ import annotations

import numpy as np

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1


def wrap32(x):
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def trunc_div(a, d):
    """C integer division (truncation toward zero), d > 0."""
    a = np.asarray(a, dtype=np.int64)
    return np.where(a >= 0, a // d, -((-a) // d))


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    v = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    r = np.where(v >= 0, v >> 31, -((-v) >> 31))
    return np.where((a == I32_MIN) & (b == I32_MIN), I32_MAX, r)


def rdbpot(x, e):
    """RoundingDivideByPOT (e >= 0, scalar or array)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mul_pot(x, e: int):
    """SaturatingRoundingMultiplyByPOT<e> (compile-time exponent)."""
    x = np.asarray(x, dtype=np.int64)
    if e > 0:
        thr = (1 << (31 - e)) - 1
        return np.where(x > thr, I32_MAX, np.where(x < -thr, I32_MIN, x << e))
    if e < 0:
        return rdbpot(x, -e)
    return x


def rounding_half_sum(a, b):
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    return trunc_div(s + np.where(s >= 0, 1, -1), 2)


def exp_quarter(a):
    ct, third = 1895147668, 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4q = mul_pot(x4, -2)
    poly = mul_pot(wrap32(srdhm(wrap32(x4q + x3), third) + x2), -1)
    return wrap32(ct + srdhm(ct, wrap32(x + poly)))


_EXP_MULTS = [1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242]


def exp_on_negative_values(a, ib: int):
    a = np.asarray(a, dtype=np.int64)
    fb = 31 - ib
    quarter = 1 << (fb - 2)
    amq = wrap32((a & (quarter - 1)) - quarter)
    rem = wrap32(amq - a)
    result = exp_quarter(mul_pot(amq, ib))
    for k, m in enumerate(_EXP_MULTS):
        ex = k - 2
        if ib > ex:
            bit = (rem >> (fb + ex)) & 1
            result = np.where(bit == 1, srdhm(result, m), result)
    if ib > 5:
        result = np.where(a < -(1 << (36 - ib)), 0, result)
    return np.where(a == 0, I32_MAX, result)


def _newton(hd):
    x = wrap32(1515870810 + srdhm(hd, -1010580540))
    for _ in range(3):
        hdx = srdhm(hd, x)
        om = wrap32((1 << 29) - hdx)
        x = wrap32(x + mul_pot(srdhm(x, om), 2))
    return x


def one_over_one_plus_x(a):
    return mul_pot(_newton(rounding_half_sum(a, I32_MAX)), 1)


def one_minus_x_over_one_plus_x(a):
    return mul_pot(wrap32(_newton(rounding_half_sum(a, I32_MAX)) - (1 << 29)), 2)


def logistic(a, ib: int):
    a = np.asarray(a, dtype=np.int64)
    absa = np.abs(a)
    pos = one_over_one_plus_x(exp_on_negative_values(-absa, ib))
    r = np.where(a > 0, pos, wrap32(I32_MAX - pos))
    return np.where(a == 0, 1 << 30, r)


def tanh(a, ib: int):
    a = np.asarray(a, dtype=np.int64)
    n = np.where(a < 0, a, -a)
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, ib + 1))
    r = np.where(a < 0, -t, t)
    return np.where(a == 0, 0, r)


def clz32(x):
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    bl = np.zeros(x.shape, dtype=np.int64)
    y = x.copy()
    for s in (16, 8, 4, 2, 1):
        big = y >= (1 << s)
        bl = bl + np.where(big, s, 0)
        y = np.where(big, y >> s, y)
    bl = bl + (y > 0)
    return 32 - bl


def get_reciprocal(x, integer_digits: int):
    x = np.asarray(x, dtype=np.int64)
    hp1 = clz32(x)
    shifted = wrap32(((x & 0xFFFFFFFF) << hp1) - (1 << 31))
    return one_over_one_plus_x(shifted), integer_digits - hp1

/*
 * tinycluster runtime: gemmlowp-style fixed-point helpers for the transcendental int8 kernels
 * (SOFTMAX, LOGISTIC, TANH). Internal to the runtime: not part of the public kernel API.
 *
 * A Qm value is an int32 with m integer bits and 31 - m fractional bits. Products use
 * tc_sat_rounding_doubling_high_mul() (tc_common.h); additions wrap like gemmlowp's
 * (the algorithms keep them in range). Semantics match gemmlowp/fixedpoint.h as used by
 * TensorFlow Lite Micro's reference kernels, bit for bit.
 */
#ifndef TC_FIXEDPOINT_H
#define TC_FIXEDPOINT_H

#include "tc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_FP_ONE_Q0 INT32_MAX /* "one" in Q0 is the largest raw value */

TC_INLINE int32_t tc_fp_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

TC_INLINE int32_t tc_fp_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

TC_INLINE int32_t tc_fp_mul(int32_t a, int32_t b)
{
    return tc_sat_rounding_doubling_high_mul(a, b);
}

/* x * 2^exponent: saturating for exponent > 0, rounding (RoundingDivideByPOT) for < 0. */
TC_INLINE int32_t tc_fp_mul_pot(int32_t x, int exponent)
{
    if (exponent > 0) {
        const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
        if (x > threshold) {
            return INT32_MAX;
        }
        if (x < -threshold) {
            return INT32_MIN;
        }
        return (int32_t)((uint32_t)x << exponent);
    }
    if (exponent < 0) {
        return tc_rounding_divide_by_pot(x, -exponent);
    }
    return x;
}

/* (a + b) / 2 rounded to nearest, ties away from zero. */
TC_INLINE int32_t tc_fp_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* exp(a) for a (Q0) in [-1/4, 0). */
TC_INLINE int32_t tc_fp_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668; /* exp(-1/8) in Q0 */
    const int32_t one_third = 715827883;      /* 1/3 in Q0 */
    const int32_t x = tc_fp_add(a, (int32_t)1 << 28);
    const int32_t x2 = tc_fp_mul(x, x);
    const int32_t x3 = tc_fp_mul(x2, x);
    const int32_t x4 = tc_fp_mul(x2, x2);
    const int32_t x4_over_4 = tc_fp_mul_pot(x4, -2);
    const int32_t poly = tc_fp_mul_pot(
        tc_fp_add(tc_fp_mul(tc_fp_add(x4_over_4, x3), one_third), x2), -1);
    return tc_fp_add(constant_term, tc_fp_mul(constant_term, tc_fp_add(x, poly)));
}

/* exp(a) for a <= 0 given in Q(integer_bits) (integer_bits 1..6); result in Q0. */
TC_INLINE int32_t tc_fp_exp_on_negative_values(int32_t a, int integer_bits)
{
    static const int32_t multipliers[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1)   */
        290630308,  /* exp(-2)   */
        39332535,   /* exp(-4)   */
        720401,     /* exp(-8)   */
        242         /* exp(-16)  */
    };
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_quarter = tc_fp_sub(a & mask, one_quarter);
    const int32_t remainder = tc_fp_sub(a_mod_quarter_minus_quarter, a);
    int32_t result = tc_fp_exp_quarter(tc_fp_mul_pot(a_mod_quarter_minus_quarter, integer_bits));
    int k;
    for (k = 0; k < 7; ++k) {
        const int exponent = k - 2;
        if (integer_bits > exponent) {
            const int shift = fractional_bits + exponent;
            if ((uint32_t)remainder & ((uint32_t)1 << shift)) {
                result = tc_fp_mul(result, multipliers[k]);
            }
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits)); /* -32.0 */
        if (a < clamp) {
            result = 0;
        }
    }
    if (a == 0) {
        result = TC_FP_ONE_Q0;
    }
    return result;
}

/* Newton-Raphson 1 / (1 + x) for x in [0, 1) (Q0 in); returns x of the iteration in Q2. */
TC_INLINE int32_t tc_fp_newton_half_reciprocal(int32_t half_denominator)
{
    const int32_t c48_17 = 1515870810;      /* 48/17 in Q2 */
    const int32_t cneg32_17 = -1010580540;  /* -32/17 in Q2 */
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = tc_fp_add(c48_17, tc_fp_mul(half_denominator, cneg32_17));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t hd_x = tc_fp_mul(half_denominator, x);
        const int32_t one_minus = tc_fp_sub(one_q2, hd_x);
        x = tc_fp_add(x, tc_fp_mul_pot(tc_fp_mul(x, one_minus), 2));
    }
    return x;
}

/* 1 / (1 + a) for a (Q0) in [0, 1); result Q0. */
TC_INLINE int32_t tc_fp_one_over_one_plus_x(int32_t a)
{
    const int32_t x = tc_fp_newton_half_reciprocal(tc_fp_rounding_half_sum(a, TC_FP_ONE_Q0));
    return tc_fp_mul_pot(x, 1);
}

/* (1 - a) / (1 + a) for a (Q0) in [0, 1); result Q0. */
TC_INLINE int32_t tc_fp_one_minus_x_over_one_plus_x(int32_t a)
{
    const int32_t x = tc_fp_newton_half_reciprocal(tc_fp_rounding_half_sum(a, TC_FP_ONE_Q0));
    return tc_fp_mul_pot(tc_fp_sub(x, (int32_t)1 << 29), 2);
}

/* logistic(a) for a in Q(integer_bits); result Q0. */
TC_INLINE int32_t tc_fp_logistic(int32_t a, int integer_bits)
{
    int32_t abs_a, pos;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    abs_a = a > 0 ? a : (int32_t)(0u - (uint32_t)a);
    pos = tc_fp_one_over_one_plus_x(
        tc_fp_exp_on_negative_values((int32_t)(0u - (uint32_t)abs_a), integer_bits));
    return a > 0 ? pos : tc_fp_sub(TC_FP_ONE_Q0, pos);
}

/* tanh(a) for a in Q(integer_bits); result Q0. */
TC_INLINE int32_t tc_fp_tanh(int32_t a, int integer_bits)
{
    int32_t n, t;
    if (a == 0) {
        return 0;
    }
    n = a < 0 ? a : (int32_t)(0u - (uint32_t)a);
    /* exp(2n): the same raw value read with one more integer bit */
    t = tc_fp_one_minus_x_over_one_plus_x(tc_fp_exp_on_negative_values(n, integer_bits + 1));
    return a < 0 ? (int32_t)(0u - (uint32_t)t) : t;
}

/* Number of leading zero bits of x (32 for 0). */
TC_INLINE int tc_clz32(uint32_t x)
{
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* TFLite GetReciprocal: 1 / x for x > 0 in Q(integer_digits); returns Q0 scaled by
 * 2^-num_bits_over_unit. */
TC_INLINE int32_t tc_fp_get_reciprocal(int32_t x, int integer_digits, int *num_bits_over_unit)
{
    const int headroom_plus_one = tc_clz32((uint32_t)x);
    const int32_t shifted_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
    *num_bits_over_unit = integer_digits - headroom_plus_one;
    return tc_fp_one_over_one_plus_x(shifted_minus_one);
}

#ifdef __cplusplus
}
#endif
#endif /* TC_FIXEDPOINT_H */

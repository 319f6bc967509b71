/*
 * tinycluster runtime: common types and the single requantization routine.
 *
 * Integer semantics follow TensorFlow Lite Micro's reference kernels exactly
 * (gemmlowp-style double rounding in MultiplyByQuantizedMultiplier).
 * C99, no malloc, no float.
 */
#ifndef TC_COMMON_H
#define TC_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Version of the runtime's ABI: kernel signatures, params structs, documented value ranges and
 * the packed stream format. It changes with any of them; every generated model checks it at
 * compile time (#error on a mismatch). */
#define TC_RUNTIME_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TC_INLINE static inline __attribute__((always_inline))
#else
#define TC_INLINE static inline
#endif

#define TC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TC_MAX(a, b) ((a) > (b) ? (a) : (b))

/* gemmlowp SaturatingRoundingDoublingHighMul. */
TC_INLINE int32_t tc_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    int64_t ab;
    int32_t nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT, exponent in [0, 31]. */
TC_INLINE int32_t tc_rounding_divide_by_pot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((((int64_t)1) << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier: x * mult * 2^(shift-31), shift in [-31, 30]. */
TC_INLINE int32_t tc_mul_by_quant_mult(int32_t x, int32_t mult, int32_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return tc_rounding_divide_by_pot(
        tc_sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left), mult), right);
}

/* The one requantize used by every kernel: scale, add output offset, clamp. */
TC_INLINE int8_t tc_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset,
                               int32_t act_min, int32_t act_max)
{
    int32_t v = tc_mul_by_quant_mult(acc, mult, shift) + out_offset;
    v = TC_MAX(v, act_min);
    v = TC_MIN(v, act_max);
    return (int8_t)v;
}

#ifdef __cplusplus
}
#endif
#endif /* TC_COMMON_H */

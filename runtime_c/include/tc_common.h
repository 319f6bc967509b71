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

#include "tc_arch.h"

/* Version of the runtime's ABI: kernel signatures, params structs, documented value ranges and
 * the packed stream format. It changes with any of them; every generated model checks it at
 * compile time (#error on a mismatch).
 * 2: tc_fully_connected_packed() takes caller scratch (pair tables, *_get_buffer_size).
 * 3: conv / depthwise scratch sizes (*_get_buffer_size): two decoded filters for deep conv
 *    layers, the Arm form of shallow conv layers, prepared requantization in both.
 * 4: tc_fc_packed_params.tables (the pair-table level the caller's scratch holds: full,
 *    compact, none); tc_fully_connected_packed() accepts scratch == NULL (no tables): the
 *    generated code grants the tables only where the arena has room for them.
 * 5: tc_fully_connected_packed() takes `pair_tables` (precomputed pair tables in flash, one
 *    per codebook, or NULL): the generated code passes them where the arena has no room for
 *    the run-time table, under the model's flash-table budget; pair tables (scratch levels)
 *    for widths 1..6, for every layout of >= 4 weights per table entry.
 * 6: packed kernels take `const void *bias` stored 16, 24 or 32 bits wide (the params' new
 *    bias_bits field; read through tc_bias_at()): the generator stores each layer's biases in
 *    the narrowest width that holds them all. tc_add_params / tc_mul_params: narrow fields
 *    and one broadcast mask per input (a_bcast, b_bcast) instead of eight int32 strides. */
#define TC_RUNTIME_ABI_VERSION 6

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

/* TFLite MultiplyByQuantizedMultiplier: x * mult * 2^(shift-31), shift in [-31, 30]. The
 * reference form, written as gemmlowp writes it; tc_mul_by_quant_mult() below is the same
 * function, per core. */
TC_INLINE int32_t tc_mul_by_quant_mult_ref(int32_t x, int32_t mult, int32_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return tc_rounding_divide_by_pot(
        tc_sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left), mult), right);
}

/* Per-core forms of the same function (bit-exact with the reference for every x, every shift
 * in [-31, 30] and every mult in [0, 2^31); tests/test_requantize.py checks them against it).
 *
 * Both use that gemmlowp's nudge-and-truncate, (ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31
 * rounded toward zero, equals floor((ab + 2^30) / 2^31) for either sign of ab (for ab = -n:
 * -floor((n - 1 + 2^30) / 2^31) == floor((2^30 - n) / 2^31)), so the high product needs no
 * sign-dependent nudge; the one saturating case (INT32_MIN * INT32_MIN) is kept. */

/* Cores with a 32x32 -> 64 multiply-accumulate (ARMv7-M / ARMv8-M Mainline SMLAL, x86-64). */
TC_INLINE int32_t tc_mul_by_quant_mult_smlal(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = left - shift;
    const int32_t xs = (int32_t)((uint32_t)x << left);
    const int64_t ab = (int64_t)xs * mult + ((int64_t)1 << 30);
    int32_t h = (int32_t)(uint32_t)(uint64_t)(ab >> 31);
    if (mult == INT32_MIN && xs == INT32_MIN) {
        h = INT32_MAX;
    }
    return tc_rounding_divide_by_pot(h, right);
}

/* ARMv6-M (no 64-bit multiply instruction: GCC would call __aeabi_lmul): the high product
 * from four 16 x 16 MULS. With x = xh*2^16 + xl, mult = mh*2^16 + ml (xl, ml, mh unsigned),
 * floor((x*mult + 2^30) / 2^31) = 2*xh*mh + floor(S / 2^15), where
 * S = xh*ml + (xl*mh + (xl*ml >> 16) + 2^14); the first term is in [-2^31, 2^31), the second
 * in [0, 2^31), so S (33 bits) is halved exactly first: floor(S/2) = (a>>1) + (b>>1) + (a&b&1).
 * mult < 0 (outside the documented range) takes the reference path. */
TC_INLINE int32_t tc_mul_by_quant_mult_v6m(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = left - shift;
    const int32_t xs = (int32_t)((uint32_t)x << left);
    const int32_t xh = xs >> 16;
    const uint32_t xl = (uint32_t)xs & 0xFFFFu;
    const int32_t mh = mult >> 16;
    const uint32_t ml = (uint32_t)mult & 0xFFFFu;
    const int32_t a = xh * (int32_t)ml;
    const int32_t b = (int32_t)(xl * (uint32_t)mh + ((xl * ml) >> 16) + (1u << 14));
    const int32_t half_s = (a >> 1) + (b >> 1) + (a & b & 1);
    const int32_t h = (int32_t)((uint32_t)(2 * xh * mh) + (uint32_t)(half_s >> 14));
    if (mult < 0) {
        return tc_mul_by_quant_mult_ref(x, mult, shift);
    }
    return tc_rounding_divide_by_pot(h, right);
}

/* The function every kernel calls. */
TC_INLINE int32_t tc_mul_by_quant_mult(int32_t x, int32_t mult, int32_t shift)
{
#if defined(TC_ARCH_ARMV6M)
    return tc_mul_by_quant_mult_v6m(x, mult, shift);
#elif defined(TC_ARCH_ARM_DSP)
    return tc_mul_by_quant_mult_smlal(x, mult, shift);
#else
    return tc_mul_by_quant_mult_ref(x, mult, shift);
#endif
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

/* Element strides of an ADD / MUL input over the output dims d[0..3]: 0 along the dims whose
 * bit is set in `bcast` (the input has size 1 there), else the product of the input's later
 * dims (tc_kernels.h, tc_add_params). */
TC_INLINE void tc_bcast_strides(const int32_t d[4], uint32_t bcast, int32_t s[4])
{
    int32_t acc = 1, k;
    for (k = 3; k >= 0; --k) {
        if ((bcast >> k) & 1u) {
            s[k] = 0;
        } else {
            s[k] = acc;
            acc *= d[k];
        }
    }
}

/* The broadcast walk of ADD / MUL (tc_kernels.h, tc_add_params), in one place for every
 * two-input elementwise kernel: the output's d[0]*d[1]*d[2] rows of d[3] elements, in output
 * order, each with the start of the matching row of in1 and of in2. The caller keeps its own
 * inner loop, with its per-element op inlined (no call per element):
 *     tc_bcast_rows r;
 *     tc_bcast_rows_init(&r, d, a_bcast, b_bcast, in1, in2);
 *     while (tc_bcast_rows_next(&r))
 *         for (i = 0; i < d[3]; ++i) *out++ = op(r.a[i * r.as[3]], r.b[i * r.bs[3]]);
 * Row (i0, i1, i2) starts at in1 + i0*as[0] + i1*as[1] + i2*as[2] (strides from
 * tc_bcast_strides(), 0 along broadcast dims; the same for in2 with bs); as[3] / bs[3] step
 * along d[3]. No multiply or divide per row: the offsets advance by as[2] / bs[2] and by a
 * precomputed step where i2 or i1 wraps; every offset held stays in [0, input size]. */
typedef struct {
    const int8_t *a, *b;            /* the row tc_bcast_rows_next() returned: its start in in1 / in2 */
    const int8_t *in1, *in2;
    int32_t as[4], bs[4];           /* element strides of in1 / in2 over the output dims */
    int32_t rows;                   /* rows not yet returned */
    int32_t d1, d2, left1, left2;   /* output dims 1, 2; rows left before i1 / i2 wrap */
    int32_t a_wrap2, b_wrap2;       /* offset step where i2 wraps: as[1] - d[2]*as[2] */
    int32_t a_wrap1, b_wrap1;       /* ... and where i1 wraps too: as[0] - d[1]*as[1] */
    int32_t ao, bo;                 /* the next row's offsets in in1 / in2 */
} tc_bcast_rows;

TC_INLINE void tc_bcast_rows_init(tc_bcast_rows *r, const int32_t d[4], uint32_t a_bcast, uint32_t b_bcast,
                                  const int8_t *in1, const int8_t *in2)
{
    tc_bcast_strides(d, a_bcast, r->as);
    tc_bcast_strides(d, b_bcast, r->bs);
    r->a = r->in1 = in1;
    r->b = r->in2 = in2;
    r->rows = d[0] * d[1] * d[2];
    r->left1 = r->d1 = d[1];
    r->left2 = r->d2 = d[2];
    r->a_wrap2 = r->as[1] - d[2] * r->as[2];
    r->b_wrap2 = r->bs[1] - d[2] * r->bs[2];
    r->a_wrap1 = r->as[0] - d[1] * r->as[1];
    r->b_wrap1 = r->bs[0] - d[1] * r->bs[1];
    r->ao = r->bo = 0;
}

/* 1 with the next row's starts in r->a and r->b; 0 after the last row. */
TC_INLINE int tc_bcast_rows_next(tc_bcast_rows *r)
{
    if (r->rows == 0) {
        return 0;
    }
    --r->rows;
    r->a = r->in1 + r->ao;
    r->b = r->in2 + r->bo;
    r->ao += r->as[2];
    r->bo += r->bs[2];
    if (--r->left2 == 0) {
        r->left2 = r->d2;
        r->ao += r->a_wrap2;
        r->bo += r->b_wrap2;
        if (--r->left1 == 0) {
            r->left1 = r->d1;
            r->ao += r->a_wrap1;
            r->bo += r->b_wrap1;
        }
    }
    return 1;
}

/* The bias of output channel c, as the packed kernels store it (`bias_bits` wide):
 *  16: int16_t[] (every bias of the layer in [-32768, 32767]);
 *  24: three bytes per bias, little-endian two's complement ([-2^23, 2^23));
 *  32: int32_t[] (any int32; also any other bias_bits value).
 * bias == NULL (no bias): 0. Every packed kernel reads its biases through this one accessor. */
TC_INLINE int32_t tc_bias_at(const void *bias, uint32_t bias_bits, int32_t c)
{
    if (bias == NULL) {
        return 0;
    }
    if (bias_bits == 16) {
        return ((const int16_t *)bias)[c];
    }
    if (bias_bits == 24) {
        const uint8_t *b = (const uint8_t *)bias + 3 * c;
        const uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16);
        return (int32_t)(u ^ 0x800000u) - 0x800000; /* sign-extend 24 bits */
    }
    return ((const int32_t *)bias)[c];
}

/* out[j] = tc_bias_at(bias, bias_bits, c + j) for j < n, the width dispatched once (hot loops
 * read a group of biases per output position through this). */
TC_INLINE void tc_bias_n(const void *bias, uint32_t bias_bits, int32_t c, int32_t n, int32_t *out)
{
    int32_t j;
    if (bias == NULL) {
        for (j = 0; j < n; j++) {
            out[j] = 0;
        }
    } else if (bias_bits == 16) {
        const int16_t *b = (const int16_t *)bias + c;
        for (j = 0; j < n; j++) {
            out[j] = b[j];
        }
    } else if (bias_bits == 24) {
        for (j = 0; j < n; j++) {
            out[j] = tc_bias_at(bias, 24, c + j);
        }
    } else {
        const int32_t *b = (const int32_t *)bias + c;
        for (j = 0; j < n; j++) {
            out[j] = b[j];
        }
    }
}

#ifdef __cplusplus
}
#endif
#endif /* TC_COMMON_H */

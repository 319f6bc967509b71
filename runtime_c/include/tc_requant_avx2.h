/*
 * Internal (x86 hosts, TC_HOST_X86_SIMD): tc_requantize() on eight int32 lanes with AVX2,
 * bit for bit (TFLite's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, the output
 * offset and the activation clamp), split into a prepare step (per-lane multiplier and shift:
 * once per block of channels) and an inline apply step, so that kernels keep the prepared
 * parameters in registers across output positions. tc_requantize_lanes() is built on it and
 * tested against tc_requantize(). Relies on the kernels' multiplier range [0, 2^31) (rules out
 * the single overflow case of the doubling high multiply, both operands INT32_MIN). Functions
 * are compiled for AVX2: callers check the CPU first (__builtin_cpu_supports("avx2")).
 */
#ifndef TC_REQUANT_AVX2_H
#define TC_REQUANT_AVX2_H

#include "tc_packed_internal.h"

#ifdef TC_HOST_X86_SIMD
#include <immintrin.h>

typedef struct {
    __m256i m;     /* multiplier per lane */
    __m256i left;  /* max(shift, 0) */
    __m256i right; /* max(-shift, 0) */
    __m256i mask;  /* 2^right - 1 */
    __m256i half;  /* mask >> 1 */
} tc_rq8;

/* lane j takes mult[j], shift[j] (per_channel) or mult[0], shift[0] */
__attribute__((target("avx2"), always_inline)) static inline void tc_rq8_prepare(
    tc_rq8 *r, const int32_t *mult, const int8_t *shift, int per_channel)
{
    const __m256i zero = _mm256_setzero_si256();
    const __m256i sh = per_channel
                           ? _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)shift))
                           : _mm256_set1_epi32(shift[0]);
    r->m = per_channel ? _mm256_loadu_si256((const __m256i *)(const void *)mult) : _mm256_set1_epi32(mult[0]);
    r->left = _mm256_max_epi32(sh, zero);
    r->right = _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero);
    r->mask = _mm256_sub_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), r->right), _mm256_set1_epi32(1));
    r->half = _mm256_srli_epi32(r->mask, 1);
}

/* the requantized lanes as int32 in [act_min, act_max] */
__attribute__((target("avx2"), always_inline)) static inline __m256i tc_rq8_apply(
    const tc_rq8 *r, __m256i x, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    const __m256i zero = _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i pos_nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i neg_nudge = _mm256_set1_epi64x(1 - ((int64_t)1 << 30));
    const __m256i trunc = _mm256_set1_epi64x(((int64_t)1 << 31) - 1);
    const __m256i a = _mm256_sllv_epi32(x, r->left); /* (uint32_t)x << left */
    __m256i ab_e, ab_o, v_e, v_o, hi, rem, thr, res;
    /* SaturatingRoundingDoublingHighMul: even and odd lanes as 64-bit products */
    ab_e = _mm256_mul_epi32(a, r->m);
    ab_o = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(r->m, 32));
    v_e = _mm256_add_epi64(ab_e, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, ab_e)));
    v_o = _mm256_add_epi64(ab_o, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, ab_o)));
    /* division by 2^31 truncating toward zero; the quotient fits int32 */
    v_e = _mm256_add_epi64(v_e, _mm256_and_si256(_mm256_cmpgt_epi64(zero, v_e), trunc));
    v_o = _mm256_add_epi64(v_o, _mm256_and_si256(_mm256_cmpgt_epi64(zero, v_o), trunc));
    hi = _mm256_blend_epi32(_mm256_srli_epi64(v_e, 31), _mm256_slli_epi64(_mm256_srli_epi64(v_o, 31), 32),
                            0xAA);
    /* RoundingDivideByPOT(hi, right) */
    rem = _mm256_and_si256(hi, r->mask);
    thr = _mm256_sub_epi32(r->half, _mm256_cmpgt_epi32(zero, hi));
    res = _mm256_add_epi32(_mm256_srav_epi32(hi, r->right), _mm256_and_si256(_mm256_cmpgt_epi32(rem, thr), one));
    res = _mm256_add_epi32(res, _mm256_set1_epi32(out_offset));
    res = _mm256_max_epi32(res, _mm256_set1_epi32(act_min));
    return _mm256_min_epi32(res, _mm256_set1_epi32(act_max));
}

/* eight int32 lanes in [-128, 127] -> eight int8 at out */
__attribute__((target("avx2"), always_inline)) static inline void tc_rq8_store8(__m256i v, int8_t *out)
{
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)(void *)out, _mm_packs_epi16(w16, w16));
}

/* sixteen int32 lanes (a: 0..7, b: 8..15) in [-128, 127] -> sixteen int8 at out */
__attribute__((target("avx2"), always_inline)) static inline void tc_rq8_store16(__m256i a, __m256i b, int8_t *out)
{
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8); /* 0..15 as int16 */
    const __m128i lo = _mm256_castsi256_si128(w16), hi = _mm256_extracti128_si256(w16, 1);
    _mm_storeu_si128((__m128i *)(void *)out, _mm_packs_epi16(lo, hi));
}

/* the biases of channels c0..c0+7 (tc_bias_at(bias, bias_bits, c0 + j)) as eight int32 lanes */
__attribute__((target("avx2"), always_inline)) static inline __m256i tc_bias8_avx2(
    const void *bias, uint32_t bias_bits, int32_t c0)
{
    if (bias == NULL) {
        return _mm256_setzero_si256();
    }
    if (bias_bits == 16) {
        return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(const void *)((const int16_t *)bias + c0)));
    }
    if (bias_bits == 24) {
        return _mm256_setr_epi32(tc_bias_at(bias, 24, c0), tc_bias_at(bias, 24, c0 + 1),
                                 tc_bias_at(bias, 24, c0 + 2), tc_bias_at(bias, 24, c0 + 3),
                                 tc_bias_at(bias, 24, c0 + 4), tc_bias_at(bias, 24, c0 + 5),
                                 tc_bias_at(bias, 24, c0 + 6), tc_bias_at(bias, 24, c0 + 7));
    }
    return _mm256_loadu_si256((const __m256i *)(const void *)((const int32_t *)bias + c0));
}

#endif /* TC_HOST_X86_SIMD */
#endif /* TC_REQUANT_AVX2_H */

/*
 * tc_requantize_lanes: tc_requantize() over a block of consecutive output channels (internal
 * helper of the packed kernels, declared in tc_packed_internal.h).
 *
 * Portable code: the scalar tc_requantize() per lane. x86 hosts with AVX2 (run-time check):
 * the same arithmetic, eight lanes at a time, bit for bit (tested against tc_requantize over
 * extreme multipliers, shifts and accumulators). It relies on the kernels' documented
 * multiplier range [0, 2^31), which rules out SaturatingRoundingDoublingHighMul's single
 * overflow case (both operands INT32_MIN).
 */
#include "tc_packed_internal.h"

#ifdef TC_HOST_X86_SIMD
#include <immintrin.h>

__attribute__((target("avx2"))) static void requant8_avx2(const int32_t *acc, const int32_t *mult,
                                                          const int8_t *shift, int per_channel,
                                                          int32_t out_offset, int32_t act_min,
                                                          int32_t act_max, int8_t *out)
{
    const __m256i zero = _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)acc);
    const __m256i m = per_channel ? _mm256_loadu_si256((const __m256i *)(const void *)mult)
                                  : _mm256_set1_epi32(mult[0]);
    const __m256i sh = per_channel
                           ? _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)shift))
                           : _mm256_set1_epi32(shift[0]);
    const __m256i left = _mm256_max_epi32(sh, zero);
    const __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero);
    const __m256i a = _mm256_sllv_epi32(x, left); /* (uint32_t)x << left */
    const __m256i pos_nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i neg_nudge = _mm256_set1_epi64x(1 - ((int64_t)1 << 30));
    const __m256i trunc = _mm256_set1_epi64x(((int64_t)1 << 31) - 1);
    __m256i ab_e, ab_o, v_e, v_o, hi, mask, rem, thr, res;
    /* SaturatingRoundingDoublingHighMul: even and odd lanes as 64-bit products */
    ab_e = _mm256_mul_epi32(a, m);
    ab_o = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(m, 32));
    v_e = _mm256_add_epi64(ab_e, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, ab_e)));
    v_o = _mm256_add_epi64(ab_o, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, ab_o)));
    /* division by 2^31 truncating toward zero; the quotient fits int32 */
    v_e = _mm256_add_epi64(v_e, _mm256_and_si256(_mm256_cmpgt_epi64(zero, v_e), trunc));
    v_o = _mm256_add_epi64(v_o, _mm256_and_si256(_mm256_cmpgt_epi64(zero, v_o), trunc));
    hi = _mm256_blend_epi32(_mm256_srli_epi64(v_e, 31), _mm256_slli_epi64(_mm256_srli_epi64(v_o, 31), 32),
                            0xAA);
    /* RoundingDivideByPOT(hi, right) */
    mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    rem = _mm256_and_si256(hi, mask);
    thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_cmpgt_epi32(zero, hi));
    res = _mm256_add_epi32(_mm256_srav_epi32(hi, right), _mm256_and_si256(_mm256_cmpgt_epi32(rem, thr), one));
    res = _mm256_add_epi32(res, _mm256_set1_epi32(out_offset));
    res = _mm256_max_epi32(res, _mm256_set1_epi32(act_min));
    res = _mm256_min_epi32(res, _mm256_set1_epi32(act_max));
    {
        /* values are in [-128, 127] now: narrow without saturation effects */
        const __m128i lo4 = _mm256_castsi256_si128(res), hi4 = _mm256_extracti128_si256(res, 1);
        const __m128i w16 = _mm_packs_epi32(lo4, hi4);
        _mm_storel_epi64((__m128i *)(void *)out, _mm_packs_epi16(w16, w16));
    }
}
#endif

void tc_requantize_lanes(const int32_t *acc, int32_t n, const int32_t *mult, const int8_t *shift,
                         int per_channel, int32_t c0, int32_t out_offset, int32_t act_min,
                         int32_t act_max, int8_t *out)
{
    int32_t j = 0;
    const int32_t *m = per_channel ? mult + c0 : mult;
    const int8_t *s = per_channel ? shift + c0 : shift;
#ifdef TC_HOST_X86_SIMD
    if (n >= 8 && __builtin_cpu_supports("avx2")) {
        for (; j + 8 <= n; j += 8) {
            requant8_avx2(acc + j, per_channel ? m + j : m, per_channel ? s + j : s, per_channel,
                          out_offset, act_min, act_max, out + j);
        }
    }
#endif
    for (; j < n; j++) {
        const int32_t q = per_channel ? j : 0;
        out[j] = tc_requantize(acc[j], m[q], s[q], out_offset, act_min, act_max);
    }
}

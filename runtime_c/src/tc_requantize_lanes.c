/*
 * tc_requantize_lanes: tc_requantize() over a block of consecutive output channels (internal
 * helper of the packed kernels, declared in tc_packed_internal.h).
 *
 * Portable code: the scalar tc_requantize() per lane. x86 hosts with AVX2 (run-time check):
 * the same arithmetic, eight lanes at a time, bit for bit (tc_requant_avx2.h, which the host
 * kernels also use inline; tested against tc_requantize over extreme multipliers, shifts and
 * accumulators).
 */
#include "tc_packed_internal.h"
#include "tc_requant_avx2.h"

#ifdef TC_HOST_X86_SIMD
__attribute__((target("avx2"))) static void requant8_avx2(const int32_t *acc, const int32_t *mult,
                                                          const int8_t *shift, int per_channel,
                                                          int32_t out_offset, int32_t act_min,
                                                          int32_t act_max, int8_t *out)
{
    tc_rq8 r;
    tc_rq8_prepare(&r, mult, shift, per_channel);
    tc_rq8_store8(tc_rq8_apply(&r, _mm256_loadu_si256((const __m256i *)(const void *)acc), out_offset,
                               act_min, act_max),
                  out);
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
